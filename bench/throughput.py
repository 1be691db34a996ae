"""Predictions per second end to end: model -> broker -> logger (with outlier and drift consuming the
image model's requests too), counted once every one is stored, and again once the detectors have seen
every one (they may lag behind the logger: the broker keeps their backlog), and each component's
events per CPU-second so replicas can be sized.

The load generator runs on the same machine (closed loop, pre-encoded single-instance requests, V1 and
V2 alternating). The baseline in the same run is the model server alone with logging off: the ratio is
how much of the serving throughput survives with every prediction logged and stored. Both stacks run
for the whole benchmark and the load alternates between them in `--rounds` chunks (model alone, then
the pipeline until every prediction of the chunk is stored), so that a slow or fast minute of a shared
VM falls on both; the ratio is of the totals, and each round's ratio is kept to show the spread.

    python -m bench.throughput [--model image|tabular] [--predictions 3000] [--rounds 3] [--concurrency 32] [--batch-size 64]
                                 [--encoding json|binary] [--input-detectors]

`cpu_ms_per_prediction` is the cost table: each component's CPU over the same predictions, the model
server's extra work with logging on (its CPU in the pipeline minus alone), and Seismo's own (that extra,
logger, outlier, drift, metrics server) against the model server alone. As under `seismo up`, the image
model's detectors score the embedding its responses carry (adversarial check, embedding drift);
`--input-detectors` adds every request image (a VAE, an autoencoder + KS on the pixels).
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
# What each component does per event, read from its own metrics: the work a replica of it does. A detector
# handles each prediction's request (input detectors) and response (embedding checks), or leaves it out of
# its sample: every one of these counts one single-instance event.
COMPONENT_EVENTS = {
    "broker": ("seismo_broker_events_received_total",),
    "logger": ("seismo_logger_events_stored_total",),
    "outlier": ("seismo_outlier_instances_total", "seismo_adversarial_instances_total", "seismo_outlier_events_sampled_out_total"),
    "drift": ("seismo_drift_instances_total", "seismo_embedding_drift_instances_total", "seismo_drift_events_sampled_out_total"),
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


def counted(url: str, metrics: tuple[str, ...]) -> float:
    text = scrape_text(url, timeout=10)
    return sum(sum(metric_values(text, metric).values()) for metric in metrics)


def run(stack: LocalStack, model_service: str, bodies, concurrency: int, wait_stored: bool, per_prediction: int = 2) -> dict:
    """One chunk of the load through one stack: raw counts and seconds, summed over rounds by `combine`.
    `per_prediction`: the events each detector handles per prediction (2 with the input detectors, else 1)."""
    components = [name for name in COMPONENT_EVENTS if name in stack.processes] if wait_stored else []
    events_before = {name: counted(stack.url(name), COMPONENT_EVENTS[name]) for name in components}
    watched = [*components, *(["metrics"] if wait_stored and "metrics" in stack.processes else []), model_service]
    cpu_before = {name: cpu_seconds(stack.processes[name].process.pid) for name in watched}
    started = time.perf_counter()
    asyncio.run(closed_loop(stack.url(model_service), bodies, concurrency))
    chunk: dict = {"predictions": len(bodies), "answered_s": time.perf_counter() - started}
    if not wait_stored:
        chunk["cpu_seconds"] = {model_service: cpu_seconds(stack.processes[model_service].process.pid) - cpu_before[model_service]}
        return chunk
    target = events_before["logger"] + 2 * len(bodies)
    deadline = time.perf_counter() + 600
    while counted(stack.url("logger"), COMPONENT_EVENTS["logger"]) < target and time.perf_counter() < deadline:
        time.sleep(0.05)
    chunk["stored_s"] = time.perf_counter() - started
    if model_service == "model":  # the detectors watch the image model: wait until they have seen every prediction too
        for name in ("outlier", "drift"):
            while (counted(stack.url(name), COMPONENT_EVENTS[name]) - events_before[name] < per_prediction * len(bodies)
                   and time.perf_counter() < deadline):
                time.sleep(0.05)
        chunk["consumed_s"] = time.perf_counter() - started
    time.sleep(1.0)  # the last events, so that their CPU is counted with them
    chunk["cpu_seconds"] = {name: cpu_seconds(stack.processes[name].process.pid) - cpu_before[name] for name in watched}
    chunk["events"] = {name: (counted(stack.url(name), COMPONENT_EVENTS[name]) - events_before[name]) if name in COMPONENT_EVENTS
                       else len(bodies) for name in watched}
    return chunk


def combine(chunks: list[dict]) -> dict:
    """Rates over all rounds: total predictions over total seconds (not a mean of per-round rates)."""
    predictions = sum(c["predictions"] for c in chunks)
    result: dict = {"predictions": predictions, "answered_per_s": round(predictions / sum(c["answered_s"] for c in chunks), 1)}
    if "stored_s" not in chunks[0]:
        cpu = sum(sum(c["cpu_seconds"].values()) for c in chunks)
        result["model_server_predictions_per_cpu_second"] = round(predictions / cpu, 1) if cpu else None
        return result
    stored = sum(c["stored_s"] for c in chunks)
    result["stored_per_s"] = round(predictions / stored, 1)
    result["seconds_until_all_stored"] = round(stored, 2)
    if "consumed_s" in chunks[0]:
        consumed = sum(c["consumed_s"] for c in chunks)
        result["consumed_by_every_subscriber_per_s"] = round(predictions / consumed, 1)
        result["seconds_until_all_consumed"] = round(consumed, 2)
    per_core = {}
    for name in chunks[0]["cpu_seconds"]:
        cpu = sum(c["cpu_seconds"][name] for c in chunks)
        events = sum(c["events"][name] for c in chunks)
        per_core[name] = {"events": events, "cpu_seconds": round(cpu, 2), "events_per_cpu_second": round(events / cpu, 1) if cpu else None}
    result["per_component"] = per_core
    return result


def cpu_per_prediction(alone_chunks: list[dict], pipeline: dict, model_service: str) -> dict:
    """Milliseconds of CPU per prediction, by component, over the same predictions (the cost table)."""
    predictions = sum(c["predictions"] for c in alone_chunks)
    alone = sum(c["cpu_seconds"][model_service] for c in alone_chunks) / predictions * 1000
    per = {name: row["cpu_seconds"] / predictions * 1000 for name, row in pipeline["per_component"].items()}
    extra = per.pop(model_service) - alone
    own = extra + sum(per.get(name, 0.0) for name in ("logger", "outlier", "drift", "metrics"))
    table = {"model_server_alone": alone, "model_server_extra_with_logging": extra, **per, "seismo_own": own}
    return {**{name: round(value, 3) for name, value in table.items()}, "seismo_own_vs_model_alone": round(own / alone, 2)}


def pipeline_extras(stack: LocalStack, model_service: str) -> dict:
    """What the pipeline's own metrics say at the end: drops, and how full the broker's batched deliveries were
    (per-request overhead is paid once per batch)."""
    broker_text = scrape_text(stack.url("broker"), timeout=10)
    sums = metric_values(broker_text, "seismo_broker_batch_events_sum")
    counts = metric_values(broker_text, "seismo_broker_batch_events_count")
    return {
        "events_dropped": counted(stack.url(model_service), "seismo_model_events_dropped_total"),
        "events_per_batched_delivery": {dict(labels)["trigger"]: round(sums[labels] / counts[labels], 1)
                                        for labels in counts if counts[labels] and labels in sums},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("image", "tabular"), default="image")
    parser.add_argument("--predictions", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="the predictions are split into this many chunks, alternating model alone / pipeline, so that "
                             "both see the same minutes of this VM (its speed drifts by tens of percent)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--broker-synchronous", choices=("full", "normal"), default="full",
                        help="the broker journal's SQLite synchronous mode (full: survives power loss)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="SEISMO_MODEL_LOG_BATCH_SIZE: events per request from the model server to the broker (1: single events)")
    parser.add_argument("--encoding", choices=("json", "binary"), default="json",
                        help="image requests as JSON (V1 and V2 alternating) or V2 with the OIP binary tensor extension")
    parser.add_argument("--sample-share", type=float, default=1.0,
                        help="SEISMO_{OUTLIER,DRIFT}_SAMPLE_SHARE: the share of predictions the detectors watch (1: all)")
    parser.add_argument("--input-detectors", action=argparse.BooleanOptionalAction, default=False,
                        help="the image model's input detectors too (a VAE, an autoencoder + KS on the pixels of every request)")
    args = parser.parse_args()
    if args.rounds < 1 or args.predictions < args.rounds:
        raise SystemExit("--rounds must be at least 1 and at most --predictions")
    if not 0 < args.sample_share <= 1:
        raise SystemExit("--sample-share must be in (0, 1]")
    per_prediction = 2 if args.input_detectors else 1
    model_service = "model" if args.model == "image" else "tabular"
    bodies = example_bodies(args.predictions, args.encoding) if args.model == "image" else tabular_bodies(args.predictions)
    size = len(bodies) // args.rounds
    chunks = [bodies[i * size:(i + 1) * size] for i in range(args.rounds)]
    with tempfile.TemporaryDirectory() as tmp:
        env = {"SEISMO_BROKER_SYNCHRONOUS": args.broker_synchronous, "SEISMO_MODEL_LOG_BATCH_SIZE": str(args.batch_size)}
        env["SEISMO_BROKER_INPUT_DETECTORS"] = "true" if args.input_detectors else "false"
        if args.sample_share < 1:
            env["SEISMO_OUTLIER_SAMPLE_SHARE"] = env["SEISMO_DRIFT_SAMPLE_SHARE"] = str(args.sample_share)
        alone = LocalStack(Path(tmp) / "alone", ports=free_ports(), services=(model_service,), env={"SEISMO_MODEL_SINK_URL": ""})
        # Every consumer of the model's events runs, as under `seismo up` (the detectors watch the image model).
        services = ("logger", "outlier", "drift", "metrics", "broker", model_service)
        stack = LocalStack(Path(tmp) / "stack", ports=free_ports(), services=services, env=env)
        alone.start()
        try:
            stack.start()
            try:
                # Warm-up; the pipeline's until its events are stored, so none of them is counted in the first round.
                run(alone, model_service, bodies[:100], args.concurrency, wait_stored=False)
                run(stack, model_service, bodies[:100], args.concurrency, wait_stored=True, per_prediction=per_prediction)
                alone_chunks, pipeline_chunks = [], []
                for number, chunk in enumerate(chunks, 1):
                    alone_chunks.append(run(alone, model_service, chunk, args.concurrency, wait_stored=False))
                    pipeline_chunks.append(run(stack, model_service, chunk, args.concurrency, wait_stored=True, per_prediction=per_prediction))
                    print(f"round {number}/{args.rounds}: alone {len(chunk) / alone_chunks[-1]['answered_s']:.0f}/s, "
                          f"stored {len(chunk) / pipeline_chunks[-1]['stored_s']:.0f}/s", flush=True)
                baseline = combine(alone_chunks)
                pipeline = {**combine(pipeline_chunks), **pipeline_extras(stack, model_service)}
            finally:
                stack.stop()
        finally:
            alone.stop()
    per_round = [round(a["answered_s"] / p["stored_s"], 3) for a, p in zip(alone_chunks, pipeline_chunks, strict=True)]
    for component, ms in cpu_per_prediction(alone_chunks, pipeline, model_service).items():
        print(f"  {component:34} {ms}")
    name = f"throughput-{args.model}" + ("-binary" if args.model == "image" and args.encoding == "binary" else "")
    name += "-input-detectors" if args.model == "image" and args.input_detectors else ""
    save(name + (f"-sample{args.sample_share:g}" if args.sample_share < 1 else ""), {
        "model": args.model,
        "encoding": args.encoding if args.model == "image" else "json",
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "broker_synchronous": args.broker_synchronous,
        "model_log_batch_size": args.batch_size,
        "input_detectors": args.input_detectors if args.model == "image" else None,
        "sample_share": args.sample_share,
        "cpu_ms_per_prediction": cpu_per_prediction(alone_chunks, pipeline, model_service),
        "model_alone_logging_off": baseline,
        "pipeline_every_prediction_stored": pipeline,
        "stored_vs_unlogged_serving": round(pipeline["stored_per_s"] / baseline["answered_per_s"], 3),
        "stored_vs_unlogged_serving_per_round": per_round,
        **({"consumed_vs_unlogged_serving": round(pipeline["consumed_by_every_subscriber_per_s"] / baseline["answered_per_s"], 3)}
           if "consumed_by_every_subscriber_per_s" in pipeline else {}),
    })


if __name__ == "__main__":
    main()
