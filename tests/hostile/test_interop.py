"""What the clients platform teams already run expect (tritonclient, KServe's SDK, SeldonClient), on the
wire as those clients send it, against the session's shared stack. Each case failed before its fix."""

from __future__ import annotations

import gzip
import uuid

import numpy as np
import orjson
import pytest
from conftest import MODEL
from helpers import metric_sum, scrape, wait_until

pytestmark = pytest.mark.integration

TABULAR = "tabular-classifier"
WINE_ROW = [13.2, 1.78, 2.14, 11.2, 100.0, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050.0]


def test_the_tabular_model_answers_the_class_output_the_api_table_promises(s):
    body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 13], "data": WINE_ROW}], "outputs": [{"name": "class"}]}
    r = s.client.post(f"{s.url('tabular')}/v2/models/{TABULAR}/infer", json=body)
    assert r.status_code == 200, r.text
    (output,) = r.json()["outputs"]
    assert output["name"] == "class" and output["datatype"] == "INT64" and output["data"][0] in (0, 1, 2)
    seldon = s.client.post(f"{s.url('tabular')}/api/v1.0/predictions", json={"data": {"ndarray": [WINE_ROW]}}).json()
    assert seldon["data"]["names"] == ["class_0", "class_1", "class_2"]  # not t:0..t:2


def test_binary_bodies_without_a_content_type_are_stored_as_bytes(s):
    """tritonclient sends binary requests with no Content-Type: the request event said application/json,
    and an all-zero image (valid UTF-8) came back as a string of NUL bytes."""
    pid = f"triton-{uuid.uuid4().hex[:8]}"
    header = orjson.dumps({"id": pid, "inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3],
                                                  "parameters": {"binary_data_size": 3072 * 4}}]})
    r = s.client.post(f"{s.url('model')}/v2/models/{MODEL}/infer", content=header + bytes(3072 * 4),
                      headers={"inference-header-content-length": str(len(header)), "content-type": ""})
    assert r.status_code == 200, r.text
    record = wait_until(lambda: s.record(pid) if s.complete(pid) else None, 30, message="the binary request's record")
    assert record["request_content_type"] == "application/octet-stream"
    assert set(record["request"]) == {"base64", "content_type"}  # bytes, not a string of NUL characters


def test_seldon_feedback_names_its_model_by_the_request_path_and_reaches_the_deployment(s):
    """SeldonClient.feedback(request, response, truth, reward) sends the response as it got it (model in
    meta.requestPath, no `model` field): it was a 400; and Seldon users post feedback to the deployment's
    own /api/v1.0/feedback, which was a 404 on the model server."""
    answer = s.client.post(f"{s.url('tabular')}/api/v1.0/predictions", json={"data": {"ndarray": [WINE_ROW]}}).json()
    assert answer["meta"]["requestPath"] == {TABULAR: "1"}
    feedback = {"request": {"data": {"ndarray": [WINE_ROW]}}, "response": answer, "truth": {"data": {"ndarray": [[0]]}}, "reward": 1}
    before = metric_sum(scrape(s.url("metrics")), "seismo_metrics_feedback_received_total", model=TABULAR)
    r = s.client.post(f"{s.url('metrics')}/feedback", json=feedback)
    assert r.status_code in (200, 202), r.text
    relayed = s.client.post(f"{s.url('tabular')}/api/v1.0/feedback", json=feedback)
    assert relayed.status_code == 200 and relayed.json()["meta"]["puid"] == answer["meta"]["puid"]
    wait_until(lambda: metric_sum(scrape(s.url("metrics")), "seismo_metrics_feedback_received_total", model=TABULAR) >= before + 2, 30,
               message="both pieces of feedback received by the metrics server")
    assert s.client.post(f"{s.url('tabular')}/api/v1.0/feedback", json={"truth": [1]}).status_code == 400


@pytest.mark.parametrize("service", ["model", "logger", "broker", "metrics", "explainer"])
def test_405_names_the_allowed_methods(s, service):
    path = {"model": f"/v2/models/{MODEL}/infer", "logger": "/v1/records", "broker": "/v1/triggers", "metrics": "/feedback",
            "explainer": f"/v1/models/{MODEL}:explain"}[service]
    r = s.client.request("DELETE", f"{s.url(service)}{path}")
    assert r.status_code == 405 and r.headers.get("allow"), (service, r.headers)


def test_client_gaps_kserve_liveness_versions_and_compressed_bodies(s):
    assert s.client.get(f"{s.url('model')}/").json() == {"status": "alive"}  # KServe V1 is_server_live
    body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": s.image.ravel().tolist()}]}
    assert s.client.post(f"{s.url('model')}/v2/models/{MODEL}/versions/1/infer", json=body).status_code == 200
    wrong = s.client.post(f"{s.url('model')}/v2/models/{MODEL}/versions/99/infer", json=body)
    assert wrong.status_code == 404 and "not served here" in wrong.json()["error"]
    assert s.client.get(f"{s.url('model')}/v2/models/{MODEL}/versions/99").status_code == 404
    packed = s.client.post(f"{s.url('model')}/v2/models/{MODEL}/infer", content=gzip.compress(orjson.dumps(body)),
                           headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert packed.status_code == 415 and "Content-Encoding" in packed.json()["error"]
    config = s.client.get(f"{s.url('model')}/v2/models/{MODEL}/config")
    assert config.status_code == 200 and config.json()["name"] == MODEL
    assert config.json()["input"][0]["data_type"] == "TYPE_FP32" and config.json()["input"][0]["dims"] == [32, 32, 3]
    stats = s.client.get(f"{s.url('model')}/v2/models/{MODEL}/stats").json()["model_stats"][0]
    assert stats["name"] == MODEL and stats["inference_count"] >= 1 and stats["inference_stats"]["success"]["count"] >= 1
    assert np.isfinite(stats["inference_stats"]["success"]["ns"])
