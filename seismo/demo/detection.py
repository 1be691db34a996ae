"""The demo's detection scenario: clean traffic, corrupted traffic (4 corruptions x 5 severities), outliers.

Each scenario sends exactly one drift window of predictions through the running stack, then waits
until the drift window's result is in the logger's drift log and the outlier detector has scored every
instance, so each table row shows what the services themselves decided for that traffic.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from seismo.demo.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from seismo.probes import scrape_samples, sum_by, wait_until

MODEL = "image-classifier"


def _outlier_counts(outlier_url: str) -> tuple[float, float]:
    by_outcome = sum_by(scrape_samples(outlier_url), "seismo_outlier_instances_total", "outcome")
    return by_outcome.get("outlier", 0.0), by_outcome.get("inlier", 0.0)


def _drift_windows(logger_url: str) -> list[dict]:
    return httpx.get(f"{logger_url}/v1/drift", params={"model": MODEL}, timeout=10).json()["windows"]


def scenarios(images: np.ndarray, window: int, rng: np.random.Generator):
    """(label, severity, images) per scenario; clean first, outliers last."""
    # Without replacement: a window that repeats images makes any two-sample test over-reject.
    pick = lambda: images[rng.choice(len(images), window, replace=window > len(images))]  # noqa: E731
    yield "clean", "-", pick()
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            yield name, str(severity), corrupt(pick(), name, severity, seed=int(rng.integers(1 << 30)))
    noise = rng.uniform(0, 1, size=(window // 2, *images.shape[1:])).astype(np.float32)
    inverted = 1.0 - pick()[: window - len(noise)]
    yield "outliers (noise, inverted)", "-", np.concatenate([noise, inverted])


def run_detection_scenario(stack, images: np.ndarray, window: int, say, send_predictions) -> list[tuple]:
    """Send every scenario through the stack; returns and prints the table rows."""
    rng = np.random.default_rng(0)
    logger_url, outlier_url = stack.url("logger"), stack.url("outlier")
    # Align with the drift service's windows: fill the window left open by earlier traffic with clean images.

    pending = int(sum(v for (name, _), v in scrape_samples(stack.url("drift")).items() if name == "seismo_drift_window_fill"))
    if pending:
        asyncio.run(send_predictions(stack.url("model"), images[rng.choice(len(images), window - pending, replace=False)], quiet=True))
        _wait(lambda: len(_drift_windows(logger_url)) >= 1, 120, "the first drift window")
    rows = []
    say(f"  {'traffic':28} {'severity':>8} {'drift':>6} {'p-value':>10} {'outlier rate':>13}")
    for label, severity, batch in scenarios(images, window, rng):
        windows_before = len(_drift_windows(logger_url))
        out_before, in_before = _outlier_counts(outlier_url)
        asyncio.run(send_predictions(stack.url("model"), batch, quiet=True))
        _wait(lambda before=windows_before: len(_drift_windows(logger_url)) > before, 180, "the scenario's drift window")
        _wait(lambda seen=out_before + in_before, n=len(batch): sum(_outlier_counts(outlier_url)) - seen >= n, 120, "the outlier scores")
        result = _drift_windows(logger_url)[-1]
        outliers = _outlier_counts(outlier_url)[0] - out_before
        row = (label, severity, "yes" if result["is_drift"] else "no", result["p_val"], outliers / len(batch))
        rows.append(row)
        say(f"  {row[0]:28} {row[1]:>8} {row[2]:>6} {row[3]:>10.2e} {row[4]:>12.0%}")
    return rows


def _wait(predicate, timeout: float, what: str) -> None:
    wait_until(predicate, timeout, 0.2, f"{what}: the detectors did not report in time; see the services' logs")
