"""Feedback handled per second by the metrics server, joined by prediction id through the SQLite store.

The store holds 1 million records (a binary model's small V1 requests and responses). The metrics
server runs as a real process (`seismo serve metrics`); 16 clients post `{"prediction_id", "truth"}`
for random stored predictions in a closed loop. Baselines in the same run: the same join against a
store of 50,000 records (does the store's size matter?), and self-contained feedback that carries the
response (what the join by id costs). Last, the same feedback through the 1,000,000-record store as
JSON arrays of `--per-request` items (ground truth arriving in bulk from a labelling job; each item
answered on its own).

    python -m bench.feedback_join [--records 1000000] [--feedback 20000] [--per-request 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from bench.common import closed_loop, cpu_seconds, percentiles, save
from seismo.local import LocalStack, free_ports
from seismo.protocol.types import KSERVE_REQUEST, KSERVE_RESPONSE
from seismo.store import Record, SQLiteRecordStore
from seismo.store.sqlite import _COLUMNS, _record_to_row

MODEL = "credit"
CONFIG = f"models:\n  {MODEL}:\n    type: binary\n    features: [income, fico]\n"


def build_store(path: Path, n: int, rng: np.random.Generator) -> list[float]:
    """n complete records written straight into the store's table (the logger would take hours)."""
    SQLiteRecordStore(path).close()  # the schema
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    scores = rng.random(n)
    start = time.time() - 86400
    chunk = 50_000
    for first in range(0, n, chunk):
        rows = []
        for i in range(first, min(n, first + chunk)):
            t = start + i * 0.05
            rows.append(_record_to_row(Record(
                prediction_id=f"p{i}", model=MODEL, created_at=t, updated_at=t, request_time=t, response_time=t,
                request=orjson.dumps({"instances": [[int(20000 + i % 150000), int(500 + i % 350)]]}), request_content_type="application/json",
                response=orjson.dumps({"predictions": [round(float(scores[i]), 4)]}), response_content_type="application/json",
                status=200, extensions={"inferenceservicename": MODEL}, event_types=(KSERVE_REQUEST, KSERVE_RESPONSE),
            )))
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO records ({_COLUMNS}) VALUES ({', '.join('?' * 15)})", rows)
        db.execute("COMMIT")
        print(f"  store: {min(n, first + chunk):,} / {n:,} records", flush=True)
    db.close()
    return scores.tolist()


def run(records_db: Path, work: Path, bodies: list[tuple[str, bytes]], concurrency: int, per_body: int = 1) -> dict:
    """Post `bodies` (each `per_body` feedback) to a fresh metrics server; the first 200 feedback warm it up."""
    warm = max(1, 200 // per_body)
    (work / "metrics.yaml").write_text(CONFIG)
    env = {"SEISMO_METRICS_CONFIG_FILE": str(work / "metrics.yaml"), "SEISMO_METRICS_STATE_PATH": str(work / "metrics.db"),
           "SEISMO_METRICS_SQLITE_PATH": str(records_db), "SEISMO_METRICS_SCAN_INTERVAL_SECONDS": "3600",
           "SEISMO_LOG_LEVEL": "WARNING"}
    stack = LocalStack(work, ports=free_ports(("metrics",)), services=("metrics",), env=env)
    stack.start()
    try:
        asyncio.run(closed_loop(stack.url("metrics"), bodies[:warm], concurrency))  # warm up
        pid = stack.processes["metrics"].process.pid
        server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
        started = time.perf_counter()
        latencies = asyncio.run(closed_loop(stack.url("metrics"), bodies[warm:], concurrency))
        seconds = time.perf_counter() - started
        # The load generator shares the two cores: what each side spent says what the server could do alone.
        server_cpu, client_cpu = cpu_seconds(pid) - server_cpu, time.process_time() - client_cpu
        import httpx

        report = httpx.get(f"{stack.url('metrics')}/v1/performance", params={"model": MODEL, "window": "all"}, timeout=30).json()
    finally:
        stack.stop()
    n = (len(bodies) - warm) * per_body
    return {"feedback_per_request": per_body, "per_second": round(n / seconds, 1), **{k: round(v, 2) for k, v in percentiles(latencies).items()},
            "metrics_server_cpu_seconds": round(server_cpu, 2), "per_metrics_server_cpu_second": round(n / server_cpu, 1) if server_cpu else None,
            "load_generator_cpu_seconds": round(client_cpu, 2),
            "scored": report["realized"]["n"], "joined": report["counts"]["joined"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--feedback", type=int, default=20000)  # enough for the ledger size to show
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-request", type=int, default=50, help="feedback per JSON array in the bulk case")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"building a store of {args.records:,} records ...", flush=True)
        scores = build_store(tmp / "big.db", args.records, rng)
        build_store(tmp / "small.db", args.small, rng)
        truths = rng.integers(0, 2, args.feedback + 200)

        def by_id(n_records: int) -> list[tuple[str, bytes]]:
            ids = rng.choice(n_records, args.feedback + 200, replace=False)
            return [("/feedback", orjson.dumps({"prediction_id": f"p{i}", "truth": int(t)})) for i, t in zip(ids, truths)]

        def in_arrays(single: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
            k = args.per_request
            return [("/feedback", b"[" + b",".join(body for _, body in single[i:i + k]) + b"]") for i in range(0, len(single) - k + 1, k)]

        contained = [("/feedback", orjson.dumps({"model": MODEL, "response": {"predictions": [scores[i]]}, "truth": int(t)}))
                     for i, t in zip(range(args.feedback + 200), truths)]
        results = {}
        big_ids = by_id(args.records)
        for name, db, bodies, per_body in (("joined_by_id_1m_store", tmp / "big.db", big_ids, 1),
                                           ("joined_by_id_small_store", tmp / "small.db", by_id(args.small), 1),
                                           ("self_contained", tmp / "small.db", contained, 1),
                                           ("joined_by_id_1m_store_in_arrays", tmp / "big.db", in_arrays(big_ids), args.per_request)):
            work = tmp / name
            work.mkdir()
            print(f"{name}: {args.feedback} feedback, {per_body} per request, {args.concurrency} clients ...", flush=True)
            results[name] = run(db, work, bodies, args.concurrency, per_body)
            print(f"  {results[name]}", flush=True)
    big, small, contained_result = results["joined_by_id_1m_store"], results["joined_by_id_small_store"], results["self_contained"]
    save("feedback_join", {
        "records_in_store": args.records, "feedback": args.feedback, "concurrency": args.concurrency, **results,
        "ratio_1m_vs_small_store": round(big["per_second"] / small["per_second"], 2),
        "ratio_joined_vs_self_contained": round(big["per_second"] / contained_result["per_second"], 2),
        "ratio_arrays_vs_single": round(results["joined_by_id_1m_store_in_arrays"]["per_second"] / big["per_second"], 2),
    })


if __name__ == "__main__":
    main()
