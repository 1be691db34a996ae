"""Prediction latency with event logging on vs off, in the same run.

Two model servers on the same artifact, one logging to a live broker (which delivers to a logger),
one with no sink. Requests alternate between them in chunks of the same closed loop, so both see the
same machine load; the figures are the ratios of their p50 and p99, and the model server's own CPU
time per prediction (from /proc) with logging on and off.

Two layouts:
- shared: every process on every core (on a 2-core machine the broker and logger take CPU from the
  model server, which is what a laptop running `seismo up` sees);
- pinned: each model server alone on core 0, everything else on the other cores, as in production
  where the broker and logger run in their own pods. On this machine's two vCPUs that still is not
  isolation: the load generator shares the other core with the broker and the logger, and their work
  slows the model server's core down too (in one py-spy run the same TensorFlow Lite calls took 2.5x
  the samples with logging on);
- sink: pinned, but the logged model server posts to `bench.null_sink` (takes every request, does
  nothing) instead of a broker: what logging costs the model server itself, the broker's and the
  logger's CPU being measured in `bench.throughput`.

    python -m bench.logging_overhead [--requests 1000] [--concurrency 1] [--layout shared|pinned|sink|all]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import closed_loop, cpu_seconds, example_bodies, percentiles, save
from seismo.local import LocalStack, free_ports
from seismo.probes import free_port, wait_until

PIPELINE = ("logger", "broker", "model")  # the logged-inference path; detectors have their own benchmarks


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def measure(layout: str, requests: int, concurrency: int) -> dict:
    sink = None
    if layout == "sink":
        port = free_port()
        sink = subprocess.Popen([sys.executable, "-m", "bench.null_sink", str(port)])
        wait_until(lambda: _listening(port), 10, message="the null sink")
    with tempfile.TemporaryDirectory() as tmp:
        logged = (LocalStack(Path(tmp) / "on", ports=free_ports(), services=("model",),
                             env={"SEISMO_MODEL_SINK_URL": f"http://127.0.0.1:{port}/", "SEISMO_MODEL_LOG_BATCH_SIZE": "64"})
                  if sink else LocalStack(Path(tmp) / "on", ports=free_ports(), services=PIPELINE))
        unlogged = LocalStack(Path(tmp) / "off", ports=free_ports(),
                              services=("model",), env={"SEISMO_MODEL_SINK_URL": ""})
        logged.start()
        unlogged.start()
        cores = sorted(os.sched_getaffinity(0))
        if layout in ("pinned", "sink"):
            if len(cores) < 2:
                raise SystemExit(f"the {layout} layout needs at least 2 cores")
            rest = set(cores[1:])
            for stack in (logged, unlogged):
                for name, service in stack.processes.items():
                    os.sched_setaffinity(service.process.pid, {cores[0]} if name == "model" else rest)
            if sink:
                os.sched_setaffinity(sink.pid, rest)
            os.sched_setaffinity(0, rest)  # the load generator too
        try:
            bodies = example_bodies(200)
            for stack in (logged, unlogged):  # warm-up
                asyncio.run(closed_loop(stack.url("model"), bodies[:50], concurrency))
            on, off = [], []
            cpu_on = cpu_off = 0.0
            for _ in range(max(1, requests // len(bodies))):
                pid = logged.processes["model"].process.pid
                before = cpu_seconds(pid)
                on += asyncio.run(closed_loop(logged.url("model"), bodies, concurrency))
                cpu_on += cpu_seconds(pid) - before
                pid = unlogged.processes["model"].process.pid
                before = cpu_seconds(pid)
                off += asyncio.run(closed_loop(unlogged.url("model"), bodies, concurrency))
                cpu_off += cpu_seconds(pid) - before
        finally:
            os.sched_setaffinity(0, set(cores))
            unlogged.stop()
            logged.stop()
            if sink:
                sink.kill()
                sink.wait()
    p_on, p_off = percentiles(on), percentiles(off)
    return {
        "layout": layout,
        "requests_each": len(on),
        "concurrency": concurrency,
        "logging_on": p_on,
        "logging_off": p_off,
        "p50_ratio_on_vs_off": round(p_on["p50_ms"] / p_off["p50_ms"], 3),
        "p99_ratio_on_vs_off": round(p_on["p99_ms"] / p_off["p99_ms"], 3),
        "model_cpu_ms_per_prediction_on": round(1000 * cpu_on / len(on), 3),
        "model_cpu_ms_per_prediction_off": round(1000 * cpu_off / len(off), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--layout", choices=("shared", "pinned", "sink", "both", "all"), default="all",
                        help="both: shared and pinned; all: the three")
    args = parser.parse_args()
    layouts = {"both": ("shared", "pinned"), "all": ("shared", "pinned", "sink")}.get(args.layout, (args.layout,))
    save("logging_overhead", {"runs": [measure(layout, args.requests, args.concurrency) for layout in layouts]})


if __name__ == "__main__":
    main()
