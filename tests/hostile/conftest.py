"""One real local stack for the whole hostile suite, and the check every hostile case ends with:
the stack is still ready, and normal traffic sent afterwards is stored completely."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from helpers import wait_until

from seismo.local import LocalStack, free_ports

MODEL = "image-classifier"
SERVICES = ("logger", "outlier", "drift", "metrics", "broker", "model", "tabular", "explainer")


class Stack:
    def __init__(self, stack: LocalStack, image: np.ndarray):
        self.stack, self.image = stack, image
        self.client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=16))

    def url(self, name: str) -> str:
        return self.stack.url(name)

    def predict_v2(self, body_id: str | None = None, headers: dict | None = None) -> httpx.Response:
        body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": self.image.ravel().tolist()}]}
        if body_id is not None:
            body["id"] = body_id
        return self.client.post(f"{self.url('model')}/v2/models/{MODEL}/infer", json=body, headers=headers or {})

    def record(self, prediction_id: str) -> dict | None:
        r = self.client.get(f"{self.url('logger')}/v1/records/{quote(prediction_id, safe='')}")
        return r.json() if r.status_code == 200 else None

    def complete(self, prediction_id: str) -> bool:
        record = self.record(prediction_id)
        return bool(record and record.get("request") is not None and record.get("response") is not None)

    def assert_still_serving(self, predictions: int = 3) -> None:
        """Every service ready and healthy, and new predictions stored with request and response."""
        for name in SERVICES:
            assert self.client.get(f"{self.url(name)}/readyz").status_code == 200, f"{name} is not ready"
            health = self.client.get(f"{self.url(name)}/healthz")
            assert health.status_code == 200, f"{name} is unhealthy: {health.text}"
        ids = []
        for _ in range(predictions):
            r = self.predict_v2(headers={"x-request-id": f"after-{uuid.uuid4()}"})
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-prediction-id"])
        wait_until(lambda: all(self.complete(i) for i in ids), 60, message=f"records of {ids}")


@pytest.fixture(scope="session")
def hostile_stack(tmp_path_factory, example_images) -> Stack:
    data_dir = tmp_path_factory.mktemp("hostile-stack")
    env = {
        # small explainer queue, so a flood meets 429 quickly
        "SEISMO_EXPLAINER_CONCURRENCY": "1", "SEISMO_EXPLAINER_MAX_QUEUED": "2",
        "SEISMO_METRICS_JOIN_INTERVAL_SECONDS": "0.2",
    }
    stack = LocalStack(data_dir, ports=free_ports(SERVICES), services=SERVICES, env=env)
    stack.start()
    wrapped = Stack(stack, example_images[0])
    try:
        yield wrapped
    finally:
        wrapped.client.close()
        stack.stop()


@pytest.fixture
def s(hostile_stack: Stack):
    """The shared stack; after the case, it must still serve and store normal traffic completely."""
    yield hostile_stack
    hostile_stack.assert_still_serving()
