"""The model server's own speed, logging off: single-image latency unloaded, and images/s under load.

Aims (issue 12): single-image p50 <= 3 ms unloaded; >= 2,000 images/s under concurrency with batching.
Baselines in the same run, so the figures say what the server adds: the forward pass alone in this
process (the server's own runtime, on one image and per image in a batch of 64), and the HTTP floor
(the server's readiness probe, same kind of client). Each case runs twice, with the default engine
(TensorFlow Lite) and with TensorFlow (`SEISMO_MODEL_ENGINE=tensorflow`, what served before).

Cases: one client, closed loop (unloaded), V2 JSON and V2 binary tensors; 32 clients with single-image
requests (the server batches concurrent requests, up to 64 rows, waiting at most 2 ms under load); 32 clients
sending 8 images per binary request (the client batches too).

    python -m bench.model_server [--requests 600]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson

from bench.common import MODEL, closed_loop, percentiles, save
from seismo.local import LocalStack, free_ports
from seismo.topology import EXAMPLE_MODEL


def v2_bodies(n: int, per_request: int, encoding: str) -> list[tuple]:
    """V2 requests of `per_request` images each: JSON or the binary tensor extension (path, body, headers)."""
    images = np.load(EXAMPLE_MODEL / "reference.npy").astype("<f4")
    bodies: list[tuple] = []
    for i in range(n):
        batch = np.stack([images[(i * per_request + k) % len(images)] for k in range(per_request)])
        shape = [per_request, 32, 32, 3]
        if encoding == "binary":
            raw = batch.tobytes()
            header = orjson.dumps({"inputs": [{"name": "input_1", "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": len(raw)}}]})
            bodies.append((f"/v2/models/{MODEL}/infer", header + raw,
                           {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}))
        else:
            doc = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": shape, "data": batch.ravel().tolist()}]}
            bodies.append((f"/v2/models/{MODEL}/infer", orjson.dumps(doc), {"content-type": "application/json"}))
    return bodies


async def probe_latencies(base_url: str, n: int) -> list[float]:
    """The HTTP floor: GET /v2/health/ready from the same kind of client, one at a time."""
    latencies = []
    async with aiohttp.ClientSession(base_url=base_url) as session:
        for _ in range(n):
            started = time.perf_counter()
            async with session.get("/v2/health/ready") as r:
                await r.read()
            latencies.append(time.perf_counter() - started)
    return latencies


def forward_pass_ms(engine: str, repeats: int = 300) -> dict[str, float]:
    """The server's own runtime (the embedding output included) on one image and on 64 at once, in this
    process: what no server can go below."""
    from seismo.serving.runtimes import load_runtime

    runtime = load_runtime(EXAMPLE_MODEL, engine=engine)  # type: ignore[arg-type]
    run = runtime.predict_with_embedding if runtime.embedding is not None else runtime.predict
    images = np.load(EXAMPLE_MODEL / "reference.npy").astype("float32")
    one, batch = images[:1], images[:64]
    timings = []
    for i in range(repeats + 20):
        started = time.perf_counter()
        run(one)
        if i >= 20:
            timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(repeats // 10):
        run(batch)
    per_image = (time.perf_counter() - started) / (repeats // 10) / 64 * 1000
    return {"one_image_p50_ms": round(float(np.percentile(timings, 50)) * 1000, 3), "per_image_in_a_batch_of_64_ms": round(per_image, 3)}


def loaded(base_url: str, bodies: list[tuple], concurrency: int, per_request: int) -> dict:
    asyncio.run(closed_loop(base_url, bodies[:50], concurrency))  # warm-up
    started = time.perf_counter()
    latencies = asyncio.run(closed_loop(base_url, bodies, concurrency))
    seconds = time.perf_counter() - started
    return {"requests": len(bodies), "images_per_request": per_request, "concurrency": concurrency,
            "images_per_s": round(len(bodies) * per_request / seconds, 1), **{k: round(v, 2) for k, v in percentiles(latencies).items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=600, help="requests per case")
    args = parser.parse_args()
    parser.add_argument("--engines", nargs="+", default=["tflite", "tensorflow"], choices=["tflite", "tensorflow"],
                        help="forward-pass engines to serve with (SEISMO_MODEL_ENGINE); the first is the default's, "
                             "the second the baseline TensorFlow ran before")
    args = parser.parse_args()
    result: dict = {}
    for engine in args.engines:
        print(f"engine {engine}", flush=True)
        result[engine] = serve_and_measure(engine, args.requests)
    first = result[args.engines[0]]
    best = max(v["images_per_s"] for k, v in first.items() if k.startswith("loaded_"))
    result["aims"] = {"engine": args.engines[0], "unloaded_p50_binary_ms": first["unloaded_single_image_binary"]["p50_ms"],
                      "p50_at_most_ms": 3.0, "best_images_per_s": best, "images_per_s_at_least": 2000}
    save("model_server", result)


def serve_and_measure(engine: str, n: int) -> dict:
    result: dict = {"forward_pass_in_process": forward_pass_ms(engine)}
    print(f"  forward pass in process: {result['forward_pass_in_process']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp), ports=free_ports(), services=("model",),
                           env={"SEISMO_MODEL_SINK_URL": "", "SEISMO_MODEL_ENGINE": engine})
        stack.start()
        try:
            url = stack.url("model")
            asyncio.run(probe_latencies(url, 50))
            result["http_floor_readiness_probe"] = {k: round(v, 2) for k, v in percentiles(asyncio.run(probe_latencies(url, n))).items()}
            for encoding in ("json", "binary"):
                bodies = v2_bodies(n + 50, 1, encoding)
                asyncio.run(closed_loop(url, bodies[:50], 1))
                result[f"unloaded_single_image_{encoding}"] = {k: round(v, 2) for k, v in
                                                              percentiles(asyncio.run(closed_loop(url, bodies[50:], 1))).items()}
                print(f"  unloaded {encoding}: {result[f'unloaded_single_image_{encoding}']}", flush=True)
            result["loaded_single_image_json"] = loaded(url, v2_bodies(n * 2, 1, "json"), 32, 1)
            result["loaded_single_image_binary"] = loaded(url, v2_bodies(n * 4, 1, "binary"), 32, 1)
            result["loaded_8_images_per_request_binary"] = loaded(url, v2_bodies(n, 8, "binary"), 32, 8)
            for case in ("loaded_single_image_json", "loaded_single_image_binary", "loaded_8_images_per_request_binary"):
                print(f"  {case}: {result[case]}", flush=True)
        finally:
            stack.stop()
    return result


if __name__ == "__main__":
    main()
