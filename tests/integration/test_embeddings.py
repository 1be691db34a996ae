"""Embeddings through the running pipeline: stored with their version, drift windows, the guard, the report.

One small stack (model, broker, logger, drift) with embedding windows of 100, the example classifier's
penultimate layer and the example EmbeddingDrift (fitted by `make model`).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys

import httpx
import numpy as np
import orjson
import pytest
from helpers import metric_sum, wait_until

from seismo.demo.corruptions import image_issue
from seismo.local import LocalStack, free_ports

pytestmark = pytest.mark.integration
MODEL = "image-classifier"
VERSION = "image-classifier/penultimate@1.0.1"
SERVICES = ("logger", "drift", "broker", "model")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("embeddings")
    env = {"SEISMO_DRIFT_EMBEDDING_WINDOW_SIZE": "100", "SEISMO_DRIFT_WINDOW_SIZE": "1000"}
    running = LocalStack(folder, ports=free_ports(SERVICES), services=SERVICES, env=env)
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def send(model_url: str, images: np.ndarray) -> list[str]:
    async with httpx.AsyncClient(timeout=60) as client:
        async def one(i, image):
            body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": image.ravel().tolist()}]}
            r = await client.post(f"{model_url}/v2/models/{MODEL}/infer", json=body)
            r.raise_for_status()
            return r.json()["id"]

        semaphore = asyncio.Semaphore(8)

        async def limited(i, image):
            async with semaphore:
                return await one(i, image)

        return await asyncio.gather(*(limited(i, im) for i, im in enumerate(images)))


def embedding_windows(stack) -> list[dict]:
    return httpx.get(f"{stack.url('logger')}/v1/drift", params={"model": f"{MODEL}/embedding"}, timeout=10).json()["windows"]


def test_stored_embeddings_drift_windows_and_the_version_guard(stack, example_images, tmp_path):
    ids = asyncio.run(send(stack.url("model"), example_images[:100]))
    wait_until(lambda: len(embedding_windows(stack)) == 1, 120, message="the clean embedding window")
    record = httpx.get(f"{stack.url('logger')}/v1/records/{ids[0]}").json()
    assert record["embedding_version"] == VERSION and np.shape(record["embedding"]) == (1, 64)
    clean = embedding_windows(stack)[0]
    assert clean["is_drift"] is False and clean["reference_version"] == VERSION and clean["size"] == 100

    # Objects not in the training set: two digits in every image.
    asyncio.run(send(stack.url("model"), image_issue(example_images[100:200], "new_objects", 5, seed=1)))
    wait_until(lambda: len(embedding_windows(stack)) == 2, 120, message="the drifted embedding window")
    drifted = embedding_windows(stack)[1]
    assert drifted["is_drift"] is True and drifted["euclidean_distance"] > drifted["distance_threshold"]
    versions = httpx.get(f"{stack.url('logger')}/v1/embeddings/versions", params={"model": MODEL}).json()["versions"]
    assert versions[0]["version"] == VERSION and versions[0]["count"] == 200

    # Another major version through the broker: the drift service refuses it and the broker dead-letters it.
    event = {"specversion": "1.0", "id": "major-1", "source": "http://elsewhere/", "type": "org.kubeflow.serving.inference.response",
             "datacontenttype": "application/json", "inferenceservicename": MODEL, "embeddingversion": "image-classifier/penultimate@2.0.0",
             "embeddingoutput": "embedding", "data": {"outputs": [{"name": "embedding", "datatype": "FP32", "shape": [1, 64],
                                                                    "data": [0.0] * 64}]}}
    r = httpx.post(stack.url("broker") + "/", content=orjson.dumps(event), headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 202
    wait_until(lambda: metric_sum(httpx.get(stack.url("drift") + "/metrics").text, "seismo_drift_events_rejected_total",
                                  reason="embedding_version") == 1, 30, message="the refused major version")
    wait_until(lambda: metric_sum(httpx.get(stack.url("broker") + "/metrics").text, "seismo_broker_dead_letters_total",
                                  trigger="drift-kserve-response") == 1, 30, message="the dead letter")


def chromium() -> str | None:
    return shutil.which("chromium-headless-shell") or shutil.which("chromium")


@pytest.mark.slow  # UMAP's first projection compiles with numba, then a browser opens the page: about 40 s
def test_the_report_renders_every_point_in_headless_chromium(stack, example_images, tmp_path):
    out = tmp_path / "report.html"
    if not embedding_windows(stack):  # run alone (`make test-slow`): the first test's traffic, without its checks
        asyncio.run(send(stack.url("model"), example_images[:100]))
        asyncio.run(send(stack.url("model"), image_issue(example_images[100:200], "new_objects", 5, seed=1)))
    wait_until(lambda: len(embedding_windows(stack)) >= 2, 120, message="two embedding windows (the first test's traffic)")
    made = subprocess.run([sys.executable, "-m", "seismo", "report", "embeddings", "--model", MODEL, "--out", str(out),
                           "--logger-url", stack.url("logger")], capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr
    assert "projecting 700 points (500 reference, 200 production)" in made.stderr  # progress is shown
    page = out.read_text()
    # Nothing fetched at view time: no external sources, no requests from the script.
    assert re.search(r"""(src|href)=["']?(https?:|//)""", page) is None and "fetch(" not in page and "XMLHttpRequest" not in page
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium here (.ci/run installs chromium-headless-shell); the page was written but not opened")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    status = re.search(r'<div id="status" data-points="(\d+)" data-errors="(\d+)" data-windows="(\d+)"', dom.stdout)
    assert status, dom.stdout[-2000:] + dom.stderr[-2000:]
    assert status.groups() == ("700", "0", str(len(embedding_windows(stack))))
    assert dom.stdout.count('class="pt production"') == 200 and dom.stdout.count('class="pt reference"') == 500
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]
    assert console_errors == []
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=800,900", f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
