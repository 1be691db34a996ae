"""The local proof of scale-out: the same traffic through a one-replica stack and through a stack with two
logger, drift and metrics replicas (`seismo up --replicas` shape: each replica its own process and data
directory, nothing shared but a real PostgreSQL server, the broker spreading deliveries over the
replicas), every event sent twice and one drift replica killed mid-window. Both give the same drift log,
the same performance and the same diagnosis; nothing is dropped and nothing is counted twice."""

from __future__ import annotations

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
PREDICTIONS = 200
BOTH = {"org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"}


def event(kind: str, pid: str, body: dict) -> tuple[dict[str, str], bytes]:
    headers = {"ce-specversion": "1.0", "ce-id": pid, "ce-source": "http://model/", "ce-type": f"org.kubeflow.serving.inference.{kind}",
               "ce-inferenceservicename": MODEL, "ce-namespace": "default", "ce-endpoint": "default", "content-type": "application/json"}
    return headers, orjson.dumps(body)


def traffic(reference: np.ndarray) -> list[tuple[str, list[float], list[float]]]:
    """(prediction id, request row, class scores): the second half shifted, so later windows drift."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(PREDICTIONS):
        row = reference[rng.integers(len(reference))] * (1.0 if i < PREDICTIONS // 2 else 1.3)
        scores = [0.1, 0.1, 0.1]
        scores[i % 3] = 0.8
        out.append((f"r{i}", row.tolist(), scores))
    return out


def without_times(doc):
    """A diagnosis without its clock readings (when each window of the stream started and ended)."""
    if isinstance(doc, dict):
        return {k: without_times(v) for k, v in doc.items() if k not in ("start", "end", "at", "since", "change_point")}
    return [without_times(v) for v in doc] if isinstance(doc, list) else doc


def run(tmp_path, postgres_url: str, replicas: dict[str, int], kill: str | None) -> dict:
    reference = np.load(EXAMPLE_TABULAR_MODEL / "reference.npy")
    save_detector(KSDrift().fit(reference), tmp_path / "drift")
    env = {"SEISMO_DRIFT_MODEL": MODEL, "SEISMO_DRIFT_DETECTOR_PATH": str(tmp_path / "drift"), "SEISMO_DRIFT_WINDOW_SIZE": str(WINDOW),
           "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH": "", "SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH": "",
           "SEISMO_METRICS_SCAN_INTERVAL_SECONDS": "3600", "SEISMO_METRICS_DIAGNOSIS_INTERVAL_SECONDS": "0",
           "SEISMO_BROKER_POLL_INTERVAL_SECONDS": "0.05", "SEISMO_BROKER_INPUT_DETECTORS": "true"}  # drift on the requests' features
    stack = LocalStack(tmp_path / "data", ports=free_ports(SERVICES), services=SERVICES, env=env)
    stack.add_replicas(replicas, postgres_url)
    drifts = [name for name in stack.services if name.startswith("drift")]
    metrics = [name for name in stack.services if name.startswith("metrics")]
    with stack, httpx.Client(timeout=30) as client:
        ingress, logger = stack.url("broker") + "/", stack.url("logger")

        lost = 0.0  # the rows a killed replica added (its counter went with it)

        def instances() -> float:
            return lost + sum(metric_sum(client.get(f"{stack.url(name)}/metrics").text, "seismo_drift_instances_total")
                              for name in drifts if name in stack.processes)

        for i, (pid, row, scores) in enumerate(traffic(reference)):
            for kind, body in (("request", {"instances": [row]}), ("response", {"predictions": [scores]})):
                headers, data = event(kind, pid, body)
                for _ in range(2):  # every event twice (at least once delivery): the copies land on either replica
                    assert client.post(ingress, headers=headers, content=data).status_code == 202
            # One event at a time into the windows, so both stacks fill them in the same order.
            wait_until(lambda i=i: instances() >= i + 1, 30, message=f"request {pid} in a window")
            if kill and i == PREDICTIONS // 2 + WINDOW // 3:  # mid-window: the broker's retries go to the other replicas
                lost = metric_sum(client.get(f"{stack.url(kill)}/metrics").text, "seismo_drift_instances_total")
                assert lost > 0  # it took its share
                stack.kill_service(kill)
        assert instances() == PREDICTIONS  # and no row twice

        def complete() -> int:
            records = client.get(f"{logger}/v1/records", params={"model": MODEL, "limit": 1000}).json()["records"]
            return sum(BOTH <= set(r["event_types"]) for r in records)

        wait_until(lambda: complete() == PREDICTIONS, 90, message="every prediction stored with its request and response")
        windows = PREDICTIONS // WINDOW
        wait_until(lambda: len(client.get(f"{logger}/v1/drift", params={"model": MODEL}).json()["windows"]) >= windows, 90,
                   message="every drift window logged")
        for i, (pid, _, _) in enumerate(traffic(reference)):  # truth for every prediction, spread over the metrics replicas
            target = stack.url(metrics[i % len(metrics)])
            assert client.post(f"{target}/feedback", json={"prediction_id": pid, "truth": 0}).status_code == 200
        records = client.get(f"{logger}/v1/records", params={"model": MODEL, "limit": 1000}).json()["records"]
        return {
            "records": len(records),
            "conflicts": sum("conflicts" in r["annotations"] for r in records),
            "drift log": [(w["window"], w["size"], w["is_drift"], round(w["p_val"], 12), round(w["distance"], 12), w.get("conflict"))
                          for w in client.get(f"{logger}/v1/drift", params={"model": MODEL}).json()["windows"]],
            "performance": [client.get(f"{stack.url(name)}/v1/performance", params={"model": MODEL, "window": "all"}).json()["realized"]
                            for name in metrics],
            "diagnosis": [without_times(client.get(f"{stack.url(name)}/v1/diagnosis", params={"model": MODEL}).json()["cohorts"])
                          for name in metrics],
            "scored": sum(metric_sum(client.get(f"{stack.url(name)}/metrics").text, "seismo_metrics_instances_scored_total", cohort="all")
                          for name in metrics),
            "stored": [metric_sum(client.get(f"{stack.url(name)}/metrics").text, "seismo_logger_events_stored_total")
                       for name in stack.services if name.startswith("logger")],
        }


def test_one_replica_and_two_replicas_on_postgres_give_the_same_answers(tmp_path, postgres_server):
    from bench.postgres_server import new_database

    alone = run(tmp_path / "one", new_database(postgres_server), {}, None)
    spread = run(tmp_path / "two", new_database(postgres_server), {"logger": 2, "drift": 2, "metrics": 2}, "drift-2")
    windows = PREDICTIONS // WINDOW
    for answer in (alone, spread):
        assert answer["records"] == PREDICTIONS and answer["conflicts"] == 0  # every event folded in once
        assert [w[0] for w in answer["drift log"]] == list(range(windows)) and all(w[1] == WINDOW and not w[5] for w in answer["drift log"])
        assert answer["scored"] == PREDICTIONS and answer["performance"][0]["n"] == PREDICTIONS
        assert sum(answer["stored"]) == 2 * PREDICTIONS + windows  # requests, responses and drift results, each once
    assert any(w[2] for w in alone["drift log"]) and not alone["drift log"][0][2]  # the shifted half drifts, the first window not
    assert spread["drift log"] == alone["drift log"]
    assert spread["performance"] == [alone["performance"][0]] * 2
    assert spread["diagnosis"] == [alone["diagnosis"][0]] * 2
    assert min(spread["stored"]) > 0  # both logger replicas took a share
