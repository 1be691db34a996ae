"""Predictions per second end to end: model -> broker -> logger (with outlier and drift consuming the
image model's requests too), counted once every one is stored, and again once the detectors have seen
every one (they may lag behind the logger: the broker keeps their backlog), and each component's
events per CPU-second so replicas can be sized.

The load generator runs on the same machine (closed loop, pre-encoded single-instance requests, V1 and
V2 alternating). The baseline in the same run is the model server alone with logging off: the ratio is
how much of the serving throughput survives with every prediction logged and stored.

    python -m bench.throughput [--model image|tabular] [--predictions 3000] [--concurrency 32] [--batch-size 64]
                                 [--encoding json|binary]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from bench.common import closed_loop, cpu_seconds, example_bodies, save
from seismo.local import LocalStack, free_ports
from seismo.probes import metric_values, scrape_text
from seismo.topology import EXAMPLE_TABULAR_MODEL

TABULAR = "tabular-classifier"
# What each component does per event, read from its own metrics: the work a replica of it does.
COMPONENT_EVENTS = {
    "broker": "seismo_broker_events_received_total",
    "logger": "seismo_logger_events_stored_total",
    "outlier": "seismo_outlier_instances_total",
    "drift": "seismo_drift_instances_total",
}


def tabular_bodies(n: int) -> list[tuple[str, bytes]]:
    rows = np.load(EXAMPLE_TABULAR_MODEL / "reference.npy")
    bodies = []
    for i in range(n):
        row = rows[i % len(rows)]
        if i % 2 == 0:
            bodies.append((f"/v1/models/{TABULAR}:predict", orjson.dumps({"instances": [row.tolist()]})))
        else:
            doc = {"inputs": [{"name": "input_1", "datatype": "FP64", "shape": [1, len(row)], "data": row.tolist()}]}
            bodies.append((f"/v2/models/{TABULAR}/infer", orjson.dumps(doc)))
    return bodies


def counted(url: str, metric: str) -> float:
    return sum(metric_values(scrape_text(url, timeout=10), metric).values())


def run(stack: LocalStack, model_service: str, bodies, concurrency: int, wait_stored: bool) -> dict:
    asyncio.run(closed_loop(stack.url(model_service), bodies[:100], concurrency))  # warm-up
    components = [name for name in COMPONENT_EVENTS if name in stack.processes] if wait_stored else []
    events_before = {name: counted(stack.url(name), COMPONENT_EVENTS[name]) for name in components}
    watched = [*components, model_service]
    cpu_before = {name: cpu_seconds(stack.processes[name].process.pid) for name in watched}
    started = time.perf_counter()
    asyncio.run(closed_loop(stack.url(model_service), bodies, concurrency))
    answered = time.perf_counter() - started
    result: dict = {"predictions": len(bodies), "answered_per_s": round(len(bodies) / answered, 1)}
    if wait_stored:
        target = events_before["logger"] + 2 * len(bodies)
        deadline = time.perf_counter() + 600
        while counted(stack.url("logger"), COMPONENT_EVENTS["logger"]) < target and time.perf_counter() < deadline:
            time.sleep(0.05)
        stored = time.perf_counter() - started
        result["stored_per_s"] = round(len(bodies) / stored, 1)
        result["seconds_until_all_stored"] = round(stored, 2)
        result["events_dropped"] = counted(stack.url(model_service), "seismo_model_events_dropped_total")
        if model_service == "model":  # the detectors watch the image model: wait until they have seen every prediction too
            for name in ("outlier", "drift"):
                while (counted(stack.url(name), COMPONENT_EVENTS[name]) - events_before[name] < len(bodies)
                       and time.perf_counter() < deadline):
                    time.sleep(0.05)
            consumed = time.perf_counter() - started
            result["consumed_by_every_subscriber_per_s"] = round(len(bodies) / consumed, 1)
            result["seconds_until_all_consumed"] = round(consumed, 2)
        time.sleep(1.0)  # the last events
        per_core = {}
        for name in watched:
            cpu = cpu_seconds(stack.processes[name].process.pid) - cpu_before[name]
            events = (counted(stack.url(name), COMPONENT_EVENTS[name]) - events_before[name]) if name in COMPONENT_EVENTS else len(bodies)
            per_core[name] = {"events": events, "cpu_seconds": round(cpu, 2), "events_per_cpu_second": round(events / cpu, 1) if cpu else None}
        result["per_component"] = per_core
        # How full the broker's batched deliveries were: per-request overhead is paid once per batch.
        broker_text = scrape_text(stack.url("broker"), timeout=10)
        sums = metric_values(broker_text, "seismo_broker_batch_events_sum")
        counts = metric_values(broker_text, "seismo_broker_batch_events_count")
        result["events_per_batched_delivery"] = {dict(labels)["trigger"]: round(sums[labels] / counts[labels], 1)
                                                 for labels in counts if counts[labels] and labels in sums}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("image", "tabular"), default="image")
    parser.add_argument("--predictions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--broker-synchronous", choices=("full", "normal"), default="full",
                        help="the broker journal's SQLite synchronous mode (full: survives power loss)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="SEISMO_MODEL_LOG_BATCH_SIZE: events per request from the model server to the broker (1: single events)")
    parser.add_argument("--encoding", choices=("json", "binary"), default="json",
                        help="image requests as JSON (V1 and V2 alternating) or V2 with the OIP binary tensor extension")
    args = parser.parse_args()
    model_service = "model" if args.model == "image" else "tabular"
    bodies = example_bodies(args.predictions, args.encoding) if args.model == "image" else tabular_bodies(args.predictions)
    with tempfile.TemporaryDirectory() as tmp:
        alone = LocalStack(Path(tmp) / "alone", ports=free_ports(), services=(model_service,), env={"SEISMO_MODEL_SINK_URL": ""})
        alone.start()
        try:
            baseline = run(alone, model_service, bodies, args.concurrency, wait_stored=False)
        finally:
            alone.stop()
        # Every consumer of the model's events runs, as under `seismo up` (the detectors watch the image model).
        services = ("logger", "outlier", "drift", "metrics", "broker", model_service)
        stack = LocalStack(Path(tmp) / "stack", ports=free_ports(), services=services,
                           env={"SEISMO_BROKER_SYNCHRONOUS": args.broker_synchronous, "SEISMO_MODEL_LOG_BATCH_SIZE": str(args.batch_size)})
        stack.start()
        try:
            pipeline = run(stack, model_service, bodies, args.concurrency, wait_stored=True)
        finally:
            stack.stop()
    save(f"throughput-{args.model}" + ("-binary" if args.model == "image" and args.encoding == "binary" else ""), {
        "model": args.model,
        "encoding": args.encoding if args.model == "image" else "json",
        "concurrency": args.concurrency,
        "broker_synchronous": args.broker_synchronous,
        "model_log_batch_size": args.batch_size,
        "model_alone_logging_off": baseline,
        "pipeline_every_prediction_stored": pipeline,
        "stored_vs_unlogged_serving": round(pipeline["stored_per_s"] / baseline["answered_per_s"], 3),
        **({"consumed_vs_unlogged_serving": round(pipeline["consumed_by_every_subscriber_per_s"] / baseline["answered_per_s"], 3)}
           if "consumed_by_every_subscriber_per_s" in pipeline else {}),
    })


if __name__ == "__main__":
    main()
