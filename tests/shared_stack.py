"""The one real local stack a test session shares (the hostile suite, the README's examples, the
Prometheus scrape): started on first use, stopped right after the last test that uses it.

Its settings are every user's at once: a small explainer queue (so a flood meets 429 quickly), fast
joins, and small drift windows with frequent refreshes (so Prometheus sees drift and accuracy within
seconds). Tests that read the stack's aggregate metrics (accuracy per cohort, drift gauges) carry the
`stack_first` marker and run before the hostile cases flood it with cohorts and junk feedback."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
from helpers import wait_until

from seismo.local import LocalStack, free_ports

MODEL = "image-classifier"
SERVICES = ("logger", "outlier", "drift", "metrics", "broker", "model", "tabular", "explainer")
ENV = {
    "SEISMO_EXPLAINER_CONCURRENCY": "1", "SEISMO_EXPLAINER_MAX_QUEUED": "2",
    "SEISMO_METRICS_JOIN_INTERVAL_SECONDS": "0.2", "SEISMO_METRICS_REFRESH_INTERVAL_SECONDS": "1",
    "SEISMO_METRICS_SCAN_INTERVAL_SECONDS": "1", "SEISMO_DRIFT_WINDOW_SIZE": "50",
    "SEISMO_DRIFT_EMBEDDING_WINDOW_SIZE": "50",  # the dashboards' embedding-drift panels need a window tested
    # The input detectors too (VAE, autoencoder + KS on the request pixels): every dashboard panel and alert
    # gets data, and the hostile suite reaches every ingress path through the broker.
    "SEISMO_BROKER_INPUT_DETECTORS": "true",
}


class Stack:
    def __init__(self, data_dir: Path, image: np.ndarray):
        # The image model server also serves gRPC (the Open Inference Protocol's service: tritonclient's gRPC)
        self.stack = LocalStack(data_dir, ports=free_ports(SERVICES), services=SERVICES, env=ENV, grpc_port=free_ports(("grpc",))["grpc"])
        self.image = image
        self.client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=16))
        self.running = False

    def start(self) -> Stack:
        self.stack.start()
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.client.close()
            self.stack.stop()

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
