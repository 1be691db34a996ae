"""Seldon's prediction protocol on the model server (`POST /api/v1.0/predictions`), in process on the shared
example classifier, with a recording sink for the events it sends as Seldon Core's executor does."""

import base64

import numpy as np
import orjson
import pytest
from helpers import RecordingSink, ServedApp, ThreadServer, wait_until
from prometheus_client import CollectorRegistry

from seismo.services.model import ModelSettings, create_app

PATH = "/api/v1.0/predictions"


@pytest.fixture(scope="module")
def sink():
    recording = RecordingSink()
    with ThreadServer(recording.app()) as server:
        recording.url = server.url
        yield recording


@pytest.fixture(scope="module")
def client(example_model, sink):
    settings = ModelSettings(path=example_model, sink_url=sink.url + "/", max_body_bytes=400_000, max_instances=8)
    with ServedApp(create_app(settings, CollectorRegistry())) as c:
        yield c


@pytest.fixture(scope="module")
def expected(client, example_images):
    return np.asarray(client.post("/v1/models/image-classifier:predict", json={"instances": example_images[:2].tolist()}).json()["predictions"])


def probabilities_of(body: dict) -> np.ndarray:
    if "data" in body and "ndarray" in body["data"]:
        return np.asarray(body["data"]["ndarray"])
    if "data" in body:
        return np.reshape(body["data"]["tensor"]["values"], body["data"]["tensor"]["shape"])
    if "jsonData" in body:
        return np.asarray(body["jsonData"]["predictions"])
    return np.asarray(orjson.loads(body["strData"])["predictions"])


def every_form(images: np.ndarray) -> dict[str, dict]:
    return {
        "ndarray": {"data": {"ndarray": images.tolist()}},
        "tensor": {"data": {"tensor": {"shape": list(images.shape), "values": images.ravel().tolist()}}},
        "jsonData": {"jsonData": images.tolist()},
        "strData": {"strData": orjson.dumps(images.tolist()).decode()},
        "binData": {"binData": base64.b64encode(images.astype("<f4").tobytes()).decode()},
    }


@pytest.mark.parametrize("form", ["ndarray", "tensor", "jsonData", "strData", "binData"])
def test_every_payload_form_answers_like_v1_in_its_own_form(client, example_images, expected, form):
    body = {**every_form(example_images[:2])[form], "meta": {"puid": f"puid-{form}", "tags": {"team": "a"}}}
    r = client.post(PATH, json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    np.testing.assert_allclose(probabilities_of(answer), expected, rtol=1e-5)
    assert answer["meta"]["puid"] == f"puid-{form}" and r.headers["x-prediction-id"] == f"puid-{form}"
    assert answer["meta"]["tags"] == {"team": "a"}
    kept = {"ndarray": "data", "binData": "data", "tensor": "data", "jsonData": "jsonData", "strData": "strData"}[form]
    assert kept in answer
    names = answer["data"]["names"] if kept == "data" else answer["jsonData"]["names"] if kept == "jsonData" else orjson.loads(answer["strData"])["names"]
    assert names == [str(c) for c in range(10)]  # the example classifier's class names (digits)


def test_events_are_sent_as_seldon_cores_executor_sends_them(client, sink, example_images):
    body = {"data": {"ndarray": example_images[:1].tolist()}, "meta": {"puid": "seldon-events-1"}}
    client.post(PATH, json=body, headers={"X-Seismo-Cohort": "night"})
    wait_until(lambda: sum(r.headers.get("ce-requestid") == "seldon-events-1" for r in sink.received) == 2, message="both Seldon events")
    events = {r.headers["ce-type"]: r for r in sink.received if r.headers.get("ce-requestid") == "seldon-events-1"}
    request, response = events["io.seldon.serving.inference.request"], events["io.seldon.serving.inference.response"]
    assert request.headers["ce-id"] != response.headers["ce-id"] and request.headers["ce-id"] != "seldon-events-1"  # a new ce-id per event
    for event in (request, response):
        assert event.headers["ce-specversion"] == "1.0" and event.headers["ce-protocol"] == "seldon"
        assert event.headers["ce-inferenceservicename"] == "image-classifier" and event.headers["ce-modelid"] == "image-classifier"
        assert event.headers["ce-cohort"] == "night"
    assert orjson.loads(request.body) == body
    assert orjson.loads(response.body)["meta"]["puid"] == "seldon-events-1" and response.headers["ce-statuscode"] == "200"


def test_prediction_id_from_the_seldon_puid_header_else_a_new_one(client, example_images):
    body = {"data": {"ndarray": example_images[:1].tolist()}}
    assert client.post(PATH, json=body, headers={"Seldon-Puid": "from-header"}).json()["meta"]["puid"] == "from-header"
    fresh = client.post(PATH, json=body).json()["meta"]["puid"]
    assert len(fresh) == 36


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"data": {"ndarray": [[1, 2]]}, "strData": "x"}, 400, "exactly one of data, jsonData, strData, binData"),
    ({"meta": {}}, 400, "exactly one of"),
    ([1, 2], 400, "must be a JSON object"),
    ({"data": {"ndarray": [["a", "b"]]}}, 400, "not a rectangular numeric array"),
    ({"data": {"ndarray": [[1, 2, 3]]}}, 400, "has shape [1, 3] but model 'image-classifier' expects [-1, 32, 32, 3]"),
    ({"data": {"tensor": {"shape": [1, 32, 32, 3], "values": [0.0] * 5}}}, 400, "5 values do not fit shape"),
    ({"data": {"tensor": {"values": [1]}}}, 400, "needs a 'shape' list and a 'values' list"),
    ({"strData": "not json"}, 400, "JSON text of a numeric array"),
    ({"binData": "!!!"}, 400, "not valid base64"),
    ({"binData": base64.b64encode(b"\0" * 100).decode()}, 400, "100 bytes: not a whole number of FP32 instances of shape [32, 32, 3]"),
    ({"jsonData": 3}, 400, "single number"),
    ({"data": {"ndarray": [[[[0.0] * 3] * 32] * 32]}, "meta": {"puid": "has space"}}, 400, "cannot be a prediction id"),
    ({"data": {"ndarray": [[[[0.0] * 3] * 32] * 32]}, "meta": {"puid": 7}}, 400, "meta.puid must be a string"),
    ({"binData": base64.b64encode(b"\0" * 12288 * 9).decode()}, 413, "9 instances; at most 8"),
])
def test_bad_messages_get_a_4xx_naming_the_problem(client, body, status, message):
    r = client.post(PATH, content=orjson.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
