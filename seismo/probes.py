"""Looking at services from outside: free ports, waiting on a condition, scraping `/metrics`.

What the local stack, the demo, the benchmarks and the tests share, so each waits and scrapes the same way.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (another process may still take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = "condition",
               error: type[Exception] = TimeoutError) -> T:
    """Poll `predicate` until it returns something truthy (returned), else raise `error` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise error(f"timed out after {timeout}s waiting for {message}")


def metric_values(text: str, name: str) -> dict[tuple, float]:
    """Samples of one metric from Prometheus text, keyed by their sorted label items."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def scrape_text(url: str, timeout: float = 5.0) -> str:
    """The Prometheus text a service exposes at `<url>/metrics`."""
    return httpx.get(f"{url}/metrics", timeout=timeout).text


def scrape_samples(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a service's `/metrics`, keyed by (name, sorted label items)."""
    samples = {}
    for family in text_string_to_metric_families(scrape_text(url)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sum_by(samples: dict[tuple[str, tuple], float], name: str, label: str) -> dict[str, float]:
    """One metric's samples summed by the value of one label."""
    out: dict[str, float] = {}
    for (metric, labels), value in samples.items():
        if metric == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0) + value
    return out
