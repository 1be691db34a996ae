"""The local proof of scale-out: `seismo up --replicas` shape (each replica its own process and data
directory, nothing shared but a real PostgreSQL server, the broker spreading deliveries over the replicas),
with every event redelivered to another replica and one drift replica killed mid-stream: every prediction
stored once, every instance in exactly one drift window numbered once, and the same performance from
either metrics replica."""

from __future__ import annotations

import time

import httpx
import numpy as np
import orjson
import pytest
from helpers import metric_sum, wait_until

from seismo.detect import KSDrift, save_detector
from seismo.local import LocalStack, free_ports
from seismo.topology import EXAMPLE_TABULAR_MODEL

pytestmark = pytest.mark.slow  # about a minute: `make test-slow`

MODEL = "tabular-classifier"
SERVICES = ("logger", "drift", "metrics", "broker")
WINDOW = 40


def event(kind: str, pid: str, body: dict) -> tuple[dict[str, str], bytes]:
    headers = {"ce-specversion": "1.0", "ce-id": pid, "ce-source": "http://model/", "ce-type": f"org.kubeflow.serving.inference.{kind}",
               "ce-inferenceservicename": MODEL, "ce-namespace": "default", "ce-endpoint": "default", "content-type": "application/json"}
    return headers, orjson.dumps(body)


def test_replicas_on_postgres_lose_nothing_and_count_nothing_twice(tmp_path, postgres_url):
    reference = np.load(EXAMPLE_TABULAR_MODEL / "reference.npy")
    save_detector(KSDrift().fit(reference), tmp_path / "drift")
    env = {"SEISMO_DRIFT_MODEL": MODEL, "SEISMO_DRIFT_DETECTOR_PATH": str(tmp_path / "drift"), "SEISMO_DRIFT_WINDOW_SIZE": str(WINDOW),
           "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH": "", "SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH": "",
           "SEISMO_METRICS_SCAN_INTERVAL_SECONDS": "3600", "SEISMO_BROKER_POLL_INTERVAL_SECONDS": "0.05"}
    stack = LocalStack(tmp_path / "data", ports=free_ports(SERVICES), services=SERVICES, env=env)
    stack.add_replicas({"logger": 2, "drift": 2, "metrics": 2}, postgres_url)
    assert stack.services == ("logger", "logger-2", "drift", "drift-2", "metrics", "metrics-2", "broker")
    rng = np.random.default_rng(3)
    predictions = 200
    with stack, httpx.Client(timeout=30) as client:
        ingress = stack.url("broker") + "/"
        for i in range(predictions):
            pid = f"r{i}"
            row = reference[rng.integers(len(reference))].tolist()
            scores = [0.1, 0.1, 0.1]
            scores[i % 3] = 0.8
            for kind, body in (("request", {"instances": [row]}), ("response", {"predictions": [scores]})):
                headers, data = event(kind, pid, body)
                for _ in range(2):  # every event twice: at-least-once delivery, the copies landing on either replica
                    assert client.post(ingress, headers=headers, content=data).status_code == 202
            if i == predictions // 2:  # a drift replica crashes mid-stream: the broker's retries go to the other
                wait_until(lambda: metric_sum(client.get(f"{stack.url('drift-2')}/metrics").text, "seismo_drift_instances_total") > 0, 30,
                           message="the second drift replica taking its share")
                stack.kill_service("drift-2")
        logger = stack.url("logger")
        both = {"org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"}

        def complete() -> list[dict]:
            records = client.get(f"{logger}/v1/records", params={"model": MODEL, "limit": 1000}).json()["records"]
            return [r for r in records if both <= set(r["event_types"])]

        wait_until(lambda: len(complete()) == predictions, 90, message="every prediction stored with its request and response")
        records = client.get(f"{logger}/v1/records", params={"model": MODEL, "limit": 1000}).json()["records"]
        assert len(records) == predictions and not any("conflicts" in r["annotations"] for r in records)  # each event folded once
        windows = predictions // WINDOW
        wait_until(lambda: len(client.get(f"{logger}/v1/drift", params={"model": MODEL}).json()["windows"]) >= windows, 90,
                   message="every drift window logged")
        time.sleep(1.0)  # a late second result for a window would show now
        logged = client.get(f"{logger}/v1/drift", params={"model": MODEL}).json()["windows"]
        assert sorted(w["window"] for w in logged) == list(range(windows)) and not any(w.get("conflict") for w in logged)
        assert all(w["size"] == WINDOW for w in logged)
        # Both logger replicas took a share; each event (request, response, drift result) was folded in once.
        stored = [metric_sum(client.get(f"{stack.url(name)}/metrics").text, "seismo_logger_events_stored_total") for name in ("logger", "logger-2")]
        assert min(stored) > 0 and sum(stored) == 2 * predictions + windows
        # Feedback for every prediction, half to each metrics replica: both answer the same, all of it joined once.
        for i in range(predictions):
            target = stack.url("metrics" if i % 2 else "metrics-2")
            assert client.post(f"{target}/feedback", json={"prediction_id": f"r{i}", "truth": 0}).status_code == 200
        answers = [client.get(f"{stack.url(name)}/v1/performance", params={"model": MODEL, "window": "all"}).json()
                   for name in ("metrics", "metrics-2")]
        assert answers[0]["realized"] == answers[1]["realized"] and answers[0]["realized"]["n"] == predictions
        assert answers[0]["realized"]["accuracy"] == pytest.approx(sum(1 for i in range(predictions) if i % 3 == 0) / predictions)
        scored = sum(metric_sum(client.get(f"{stack.url(name)}/metrics").text, "seismo_metrics_instances_scored_total", cohort="all")
                     for name in ("metrics", "metrics-2"))
        assert scored == predictions
