"""Predictions per second end to end: model -> broker -> logger, counted only once every one is stored.

The load generator runs on the same machine (closed loop, pre-encoded single-image requests, V1 and
V2 alternating). The baseline in the same run is the model server alone with logging off: the figure
is how much of the serving throughput survives with every prediction logged and stored.

    python -m bench.throughput [--predictions 3000] [--concurrency 32] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.common import closed_loop, example_bodies, save
from seismo.local import LocalStack, free_ports


def stored_events(logger_url: str) -> float:
    text = httpx.get(f"{logger_url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "seismo_logger_events_stored_total")


def run(stack: LocalStack, bodies, concurrency: int, wait_stored: bool) -> dict:
    asyncio.run(closed_loop(stack.url("model"), bodies[:100], concurrency))  # warm-up
    base = stored_events(stack.url("logger")) if wait_stored else 0
    started = time.perf_counter()
    asyncio.run(closed_loop(stack.url("model"), bodies, concurrency))
    answered = time.perf_counter() - started
    result = {"predictions": len(bodies), "answered_per_s": round(len(bodies) / answered, 1)}
    if wait_stored:
        target = base + 2 * len(bodies)
        deadline = time.perf_counter() + 600
        while stored_events(stack.url("logger")) < target and time.perf_counter() < deadline:
            time.sleep(0.05)
        stored = time.perf_counter() - started
        result["stored_per_s"] = round(len(bodies) / stored, 1)
        result["seconds_until_all_stored"] = round(stored, 2)
        text = httpx.get(f"{stack.url('model')}/metrics", timeout=10).text
        result["events_dropped"] = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                                       if s.name == "seismo_model_events_dropped_total")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--predictions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--broker-synchronous", choices=("full", "normal"), default="full",
                        help="the broker journal's SQLite synchronous mode (full: survives power loss)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="SEISMO_MODEL_LOG_BATCH_SIZE: events per request from the model server to the broker (1: single events)")
    args = parser.parse_args()
    bodies = example_bodies(args.predictions)
    with tempfile.TemporaryDirectory() as tmp:
        alone = LocalStack(Path(tmp) / "alone", ports=free_ports(),
                           services=("model",), env={"SEISMO_MODEL_SINK_URL": ""})
        alone.start()
        try:
            baseline = run(alone, bodies, args.concurrency, wait_stored=False)
        finally:
            alone.stop()
        stack = LocalStack(Path(tmp) / "stack", ports=free_ports(), services=("logger", "broker", "model"),
                           env={"SEISMO_BROKER_SYNCHRONOUS": args.broker_synchronous, "SEISMO_MODEL_LOG_BATCH_SIZE": str(args.batch_size)})
        stack.start()
        try:
            pipeline = run(stack, bodies, args.concurrency, wait_stored=True)
        finally:
            stack.stop()
    save("throughput", {
        "concurrency": args.concurrency,
        "broker_synchronous": args.broker_synchronous,
        "model_log_batch_size": args.batch_size,
        "model_alone_logging_off": baseline,
        "pipeline_every_prediction_stored": pipeline,
        "stored_vs_unlogged_serving": round(pipeline["stored_per_s"] / baseline["answered_per_s"], 3),
    })


if __name__ == "__main__":
    main()
