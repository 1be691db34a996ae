"""What the benchmarks share: example payloads, a closed-loop load generator, result files."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson

from seismo.topology import EXAMPLE_MODEL

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "image-classifier"


def example_bodies(n: int, encoding: str = "json") -> list[tuple]:
    """Pre-encoded single-image requests, so the load generator stays cheap.

    encoding "json": V1 and V2 JSON alternating; "binary": V2 in the OIP binary tensor extension
    (path, body, headers)."""
    images = np.load(EXAMPLE_MODEL / "reference.npy")
    bodies: list[tuple] = []
    for i in range(n):
        image = images[i % len(images)]
        if encoding == "binary":
            raw = image.astype("<f4").tobytes()
            header = orjson.dumps({"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3],
                                               "parameters": {"binary_data_size": len(raw)}}]})
            headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}
            bodies.append((f"/v2/models/{MODEL}/infer", header + raw, headers))
        elif i % 2 == 0:
            bodies.append((f"/v1/models/{MODEL}:predict", orjson.dumps({"instances": [image.tolist()]})))
        else:
            doc = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": image.ravel().tolist()}]}
            bodies.append((f"/v2/models/{MODEL}/infer", orjson.dumps(doc)))
    return bodies


async def closed_loop(base_url: str, bodies: list[tuple], concurrency: int) -> list[float]:
    """Send every body with `concurrency` clients in a closed loop; per-request latencies in seconds.

    aiohttp rather than httpx: on a 2-core machine the load generator shares the CPU with what it
    measures, and aiohttp spends about a third of httpx's CPU per request.
    """
    latencies: list[float] = [0.0] * len(bodies)
    next_index = 0
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker():
            nonlocal next_index
            while next_index < len(bodies):
                i = next_index
                next_index += 1
                path, body, *own_headers = bodies[i]  # (path, body) or (path, body, headers)
                started = time.perf_counter()
                async with session.post(path, data=body, headers=own_headers[0] if own_headers else headers) as r:
                    content = await r.read()
                latencies[i] = time.perf_counter() - started
                if r.status != 200:
                    raise RuntimeError(f"prediction failed: {r.status} {content[:200]!r}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(latencies: list[float]) -> dict[str, float]:
    a = np.asarray(latencies) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def save(name: str, result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), flush=True)


ALIBI_PYTHON = Path(__file__).resolve().parents[1] / ".venv-alibi" / "bin" / "python"


def alibi_available() -> bool:
    return ALIBI_PYTHON.exists()


def run_alibi(task: str, timeout: float = 1800, runner: str = "alibi_runner.py", **arrays) -> dict:
    """Run bench/<runner> TASK under the alibi interpreter on these arrays (alibi_explain_runner.py for explainers)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.npz"
        np.savez(path, **arrays)
        result = subprocess.run([str(ALIBI_PYTHON), str(Path(__file__).with_name(runner)), task, str(path)],
                                capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"alibi task {task} ({runner}) failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_alibi_many(tasks: list[tuple[str, dict]], timeout: float = 1800) -> list[dict]:
    """Several alibi_runner.py tasks in one interpreter (alibi-detect's import costs seconds each time):
    each (task, arrays) gives what run_alibi(task, **arrays) would."""
    arrays = {f"{i}__{name}": value for i, (_, given) in enumerate(tasks) for name, value in given.items()}
    plan = json.dumps([{"task": task} for task, _ in tasks])
    return run_alibi("many", timeout=timeout, plan=np.array(plan), **arrays)  # type: ignore[return-value]

