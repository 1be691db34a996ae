"""Events per second and CPU per event for 1, 2 and 4 replicas of each stateful service, sharing one real
PostgreSQL server (`seismo up --replicas` shape: each replica its own process, the broker spreading
deliveries over them).

- logger: request and response events of each prediction, posted to the broker; done when every event is
  folded into its record.
- drift: request events (one tabular row each, windows of 100) through the broker; done when every row is
  in a window.
- metrics: truth for predictions already stored, posted straight to the replicas in turn; done when every
  instance is scored.

Each figure: events over the seconds from the first post until the last event is done, and CPU seconds
per 1,000 events of the service's replicas together, of PostgreSQL, and of the broker. The load
generator, the broker, the replicas and the database share this machine's cores, so on two cores more
replicas cannot mean more throughput: what the figures show is what a replica costs and whether the
shared state (locks, one database) adds work per event as replicas are added. Sizing for a cluster
divides the target rate by the events per CPU-second measured here.

    python -m bench.scale [--events 2000] [--replicas 1,2,4] [--services logger,drift,metrics] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.common import cpu_seconds, save
from bench.postgres_server import PostgresServer, new_database, server_cpu_seconds
from seismo.detect import KSDrift, save_detector
from seismo.local import LocalStack, free_ports
from seismo.probes import metric_values, scrape_text
from seismo.protocol.types import EventKind
from seismo.store import RecordUpdate
from seismo.topology import EXAMPLE_TABULAR_MODEL

MODEL = "tabular-classifier"
REQUEST, RESPONSE = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"
DONE = {"logger": "seismo_logger_events_stored_total", "drift": "seismo_drift_instances_total",
        "metrics": "seismo_metrics_instances_scored_total"}
NEEDS = {"logger": ("logger", "broker"), "drift": ("drift", "broker"), "metrics": ("metrics",)}


def event(kind: str, pid: str, body: dict) -> tuple[dict[str, str], bytes]:
    headers = {"ce-specversion": "1.0", "ce-id": pid, "ce-source": "http://bench/", "ce-type": kind, "ce-inferenceservicename": MODEL,
               "ce-namespace": "default", "ce-endpoint": "default", "content-type": "application/json"}
    return headers, orjson.dumps(body)


def workload(service: str, n: int, reference: np.ndarray) -> list[tuple[str, dict[str, str], bytes]]:
    """(path, headers, body) of each request the load generator sends; `path` is relative to a target."""
    rows = [reference[i % len(reference)].tolist() for i in range(n)]
    if service == "metrics":
        return [("/feedback", {"content-type": "application/json"}, orjson.dumps({"prediction_id": f"b{i}", "truth": i % 3}))
                for i in range(n)]
    out = []
    for i in range(n if service == "drift" else n // 2):
        out.append(("/", *event(REQUEST, f"b{i}", {"instances": [rows[i]]})))
        if service == "logger":
            out.append(("/", *event(RESPONSE, f"b{i}", {"predictions": [[0.8, 0.1, 0.1]]})))
    return out


async def send(targets: list[str], requests: list[tuple[str, dict[str, str], bytes]], concurrency: int) -> None:
    queue = list(reversed(requests))
    async with httpx.AsyncClient(timeout=60) as client:
        async def worker(k: int) -> None:
            turn = k
            while queue:
                path, headers, body = queue.pop()
                r = await client.post(targets[turn % len(targets)] + path, headers=headers, content=body)
                if r.status_code >= 300:
                    raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
                turn += 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))


def done(stack: LocalStack, names: list[str], metric: str) -> float:
    return sum(sum(metric_values(scrape_text(stack.url(name), timeout=10), metric).values()) for name in names)


def measure(service: str, replicas: int, server_url: str, events: int, concurrency: int, work: Path) -> dict:
    reference = np.load(EXAMPLE_TABULAR_MODEL / "reference.npy")
    database = new_database(server_url)
    save_detector(KSDrift().fit(reference), work / "drift")
    env = {"SEISMO_DRIFT_MODEL": MODEL, "SEISMO_DRIFT_DETECTOR_PATH": str(work / "drift"), "SEISMO_DRIFT_WINDOW_SIZE": "100",
           "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH": "", "SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH": "",
           "SEISMO_METRICS_SCAN_INTERVAL_SECONDS": "3600", "SEISMO_METRICS_DIAGNOSIS_INTERVAL_SECONDS": "0"}
    if service == "metrics":  # the predictions the truth is for, stored before the clock starts
        from seismo.store.postgres import PostgresRecordStore

        store = PostgresRecordStore(database)
        for start in range(0, events, 500):
            store.apply([RecordUpdate(f"b{i}", kind, kind_type, MODEL, 1.0, body, "application/json")
                         for i in range(start, min(events, start + 500))
                         for kind, kind_type, body in ((EventKind.REQUEST, REQUEST, b'{"instances": [[0]]}'),
                                                       (EventKind.RESPONSE, RESPONSE, b'{"predictions": [[0.8, 0.1, 0.1]]}'))])
        store.close()
    services = NEEDS[service]
    stack = LocalStack(work / f"{service}-{replicas}", ports=free_ports(services), services=services, env=env)
    stack.add_replicas({service: replicas}, database)
    with stack:
        names = [name for name in stack.services if name.split("-")[0] == service]
        targets = [stack.url(name) for name in names] if service == "metrics" else [stack.url("broker")]
        watched = [*names, *(["broker"] if "broker" in stack.processes else [])]
        cpu = {name: cpu_seconds(stack.processes[name].process.pid) for name in watched}
        database_cpu = server_cpu_seconds()
        started = time.perf_counter()
        asyncio.run(send(targets, workload(service, events, reference), concurrency))
        deadline = time.perf_counter() + 600
        while done(stack, names, DONE[service]) < events and time.perf_counter() < deadline:
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        finished = done(stack, names, DONE[service])
        spent = {name: cpu_seconds(stack.processes[name].process.pid) - cpu[name] for name in watched}
        database_spent = server_cpu_seconds() - database_cpu
    service_cpu = sum(spent[name] for name in names)
    return {"replicas": replicas, "events": int(finished), "seconds": round(seconds, 2), "events_per_s": round(finished / seconds, 1),
            "cpu_ms_per_event": {"service (all replicas)": round(1000 * service_cpu / finished, 3),
                                 "postgresql": round(1000 * database_spent / finished, 3),
                                 **({"broker": round(1000 * spent["broker"] / finished, 3)} if "broker" in spent else {})},
            "events_per_service_cpu_second": round(finished / service_cpu, 1) if service_cpu else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--services", default="logger,drift,metrics")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    result: dict = {"events": args.events, "concurrency": args.concurrency, "services": {}}
    server = PostgresServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for service in args.services.split(","):
                rows = []
                for replicas in counts:
                    rows.append(measure(service, replicas, server.url, args.events, args.concurrency, Path(tmp)))
                    print(f"{service} x{replicas}: {rows[-1]}", flush=True)
                result["services"][service] = rows
    finally:
        server.stop()
    save("scale", result)


if __name__ == "__main__":
    main()
