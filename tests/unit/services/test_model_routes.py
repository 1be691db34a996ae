"""Model server routes, in process, on the shared example classifier."""


import numpy as np
import orjson
import pytest
from helpers import RecordingSink, ServedApp, ThreadServer, metric_sum, wait_until
from prometheus_client import CollectorRegistry

from seismo.services.model import ModelSettings, create_app

PREDICT = "/v1/models/image-classifier:predict"
INFER = "/v2/models/image-classifier/infer"


@pytest.fixture(scope="module")
def sink():
    recording = RecordingSink()
    with ThreadServer(recording.app()) as server:
        recording.url = server.url
        yield recording


@pytest.fixture(scope="module")
def client(example_model, sink):
    settings = ModelSettings(path=example_model, sink_url=sink.url + "/", max_body_bytes=200_000)
    with ServedApp(create_app(settings, CollectorRegistry())) as c:
        yield c


def v2(images, **extra):
    return {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": list(images.shape), "data": images.ravel().tolist()}], **extra}


def test_v1_predict_returns_probabilities_and_a_prediction_id(client, example_images):
    r = client.post(PREDICT, json={"instances": example_images[:3].tolist()})
    assert r.status_code == 200
    probabilities = np.asarray(r.json()["predictions"])
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert len(r.headers["x-prediction-id"]) == 36  # a new UUID


def test_v1_and_v2_agree_and_v2_echoes_the_id_with_several_outputs(client, example_images):
    images = example_images[:2]
    v1 = np.asarray(client.post(PREDICT, json={"instances": images.tolist()}).json()["predictions"])
    r = client.post(INFER, json=v2(images, id="my-id-1"))
    body = r.json()
    assert r.status_code == 200 and body["id"] == "my-id-1" and r.headers["x-prediction-id"] == "my-id-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["probabilities"]["shape"] == [2, 10] and outputs["probabilities"]["datatype"] == "FP32"
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (2, 10)), v1, rtol=1e-5)
    assert outputs["class"]["data"] == v1.argmax(axis=1).tolist()
    only = client.post(INFER, json=v2(images, outputs=[{"name": "class"}])).json()["outputs"]
    assert [o["name"] for o in only] == ["class"]


def test_prediction_id_order_ce_id_then_x_request_id_then_body(client, example_images):
    body = v2(example_images[:1], id="body-id")
    assert client.post(INFER, json=body, headers={"ce-id": "ce-1", "x-request-id": "x-1"}).json()["id"] == "ce-1"
    assert client.post(INFER, json=body, headers={"x-request-id": "x-1"}).json()["id"] == "x-1"
    assert client.post(PREDICT, json={"instances": example_images[:1].tolist()}, headers={"x-request-id": "x-2"}).headers["x-prediction-id"] == "x-2"


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (PREDICT, b"{not json", 400, "not valid JSON"),
        (PREDICT, orjson.dumps({"instances": [[1, 2, 3]]}), 400, "has shape [1, 3] but model 'image-classifier' expects [-1, 32, 32, 3]"),
        (PREDICT, orjson.dumps({"inputs": [1]}), 400, "'instances' list"),
        (PREDICT, orjson.dumps({"instances": [[[["a"] * 3] * 32] * 32]}), 400, "rectangular numeric"),
        (INFER, orjson.dumps({"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 2], "data": [1]}]}), 400, "needs 2 elements"),
        (INFER, orjson.dumps({"inputs": [{"name": "input_1", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}), 400, "datatype BYTES"),
        (INFER, orjson.dumps({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}, {"name": "b", "datatype": "FP32", "shape": [1], "data": [1]}]}), 400, "takes input 'input_1'"),
        (INFER, orjson.dumps({"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [0, 32, 32, 3], "data": []}]}), 400, "no instances"),
        ("/v1/models/nope:predict", b"{}", 404, "model 'nope' is not served here"),
        ("/v2/models/nope/infer", b"{}", 404, "model 'nope' is not served here"),
        (PREDICT, b'{"instances": [' + b"0," * 120_000 + b"0]}", 413, "larger than the limit of 200000 bytes"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_problem(client, path, body, status, message):
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_metadata_and_health(client):
    meta = client.get("/v2/models/image-classifier").json()
    assert meta["inputs"] == [{"name": "input_1", "datatype": "FP32", "shape": [-1, 32, 32, 3]}]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "class", "embedding"}
    assert meta["platform"] == "keras" and meta["versions"] == ["1"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/image-classifier/ready").json()["ready"] is True
    assert client.get("/v1/models").json() == {"models": ["image-classifier"]}
    assert client.get("/v2/models/other").status_code == 404
    assert client.get("/readyz").status_code == 200 and client.get("/healthz").status_code == 200


def test_requests_and_errors_are_logged_as_events_and_counted(client, sink, example_images):
    r = client.post(PREDICT, json={"instances": [[0.0]]}, headers={"x-request-id": "logged-error-1"})
    assert r.status_code == 400
    ok = client.post(PREDICT, json={"instances": example_images[:1].tolist()}, headers={"x-request-id": "logged-ok-1"})
    assert ok.status_code == 200

    def events_for(pid):
        return [e for e in sink.received if e.headers.get("ce-id") == pid]

    wait_until(lambda: len(events_for("logged-error-1")) == 2 and len(events_for("logged-ok-1")) == 2, 10, message="logged events")
    request, response = sorted(events_for("logged-error-1"), key=lambda e: e.headers["ce-type"])
    assert request.headers["ce-type"] == "org.kubeflow.serving.inference.request"
    assert request.body == b'{"instances":[[0.0]]}'
    assert response.headers["ce-type"] == "org.kubeflow.serving.inference.response"
    assert response.headers["ce-statuscode"] == "400" and b"expects" in response.body
    assert response.headers["ce-inferenceservicename"] == "image-classifier" and response.headers["ce-requestid"] == "logged-error-1"
    # Knative's Kafka broker keys records by the partitioning extension: one model's events on one partition, in order.
    assert request.headers["ce-partitionkey"] == response.headers["ce-partitionkey"] == "image-classifier"
    ok_response = next(e for e in events_for("logged-ok-1") if e.headers["ce-type"].endswith("response"))
    assert ok_response.headers["ce-statuscode"] == "200"
    # The client's body, plus the embedding the example model emits (its own key beside `predictions`).
    logged = orjson.loads(ok_response.body)
    assert logged.pop("embedding") and logged == ok.json()
    assert "ce-embeddingversion" not in response.headers  # a refused request has no embedding

    metrics = client.get("/metrics").text
    assert metric_sum(metrics, "seismo_model_requests_total", model="image-classifier", protocol="v1", code="400") >= 1
    assert metric_sum(metrics, "seismo_model_requests_total", model="unknown", code="404") >= 1
    assert metric_sum(metrics, "seismo_model_request_seconds_count", protocol="v1") >= 2
    assert metric_sum(metrics, "seismo_model_request_bytes_count") >= 2


def binary_request(images: np.ndarray, **extra) -> tuple[bytes, dict]:
    """A V2 request in the binary tensor extension, laid out as Triton's and KServe's clients do."""
    raw = images.astype("<f4").tobytes()
    header = orjson.dumps({"inputs": [{"name": "input_1", "datatype": "FP32", "shape": list(images.shape),
                                       "parameters": {"binary_data_size": len(raw)}}], **extra})
    return header + raw, {"inference-header-content-length": str(len(header)), "content-type": "application/octet-stream"}


def test_binary_tensor_extension_in_and_out_agrees_with_json_and_is_logged_as_received(client, sink, example_images):
    images = example_images[:3]
    expected = np.asarray(client.post(INFER, json=v2(images)).json()["outputs"][0]["data"]).reshape(3, 10)
    body, headers = binary_request(images, id="binary-in-1")
    r = client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    np.testing.assert_allclose(np.reshape(r.json()["outputs"][0]["data"], (3, 10)), expected, rtol=1e-6)

    body, headers = binary_request(images, id="binary-out-1", parameters={"binary_data_output": True})
    r = client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    header_length = int(r.headers["inference-header-content-length"])
    header = orjson.loads(r.content[:header_length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert [o["name"] for o in header["outputs"]] == ["probabilities", "class"] and sizes == [3 * 10 * 4, 3 * 8]
    assert all("data" not in o for o in header["outputs"])
    probabilities = np.frombuffer(r.content[header_length:header_length + sizes[0]], "<f4").reshape(3, 10)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)
    assert np.frombuffer(r.content[header_length + sizes[0]:], "<i8").tolist() == expected.argmax(axis=1).tolist()

    def events_for(pid):
        return {e.headers["ce-type"].rsplit(".", 1)[-1]: e for e in sink.received if e.headers.get("ce-id") == pid}

    wait_until(lambda: len(events_for("binary-out-1")) == 2, 10, message="binary events logged")
    events = events_for("binary-out-1")
    assert events["request"].body == body and events["request"].headers["content-type"] == "application/octet-stream"
    assert events["response"].headers["content-type"] == "application/octet-stream"
    # The same binary tensors after a header that also carries the embedding (as JSON).
    logged = events["response"].body
    logged_header, tail = orjson.loads(logged[:len(logged) - len(r.content) + header_length]), logged[len(logged) - len(r.content) + header_length:]
    assert tail == r.content[header_length:]
    assert [o["name"] for o in logged_header["outputs"]] == ["probabilities", "class", "embedding"]


@pytest.mark.parametrize("change, status, message", [
    ({"inference-header-content-length": "99999"}, 400, "the body has only"),
    ({"inference-header-content-length": "ten"}, 400, "must be a non-negative integer"),
    ({"inference-header-content-length": "20"}, 400, "not valid JSON"),
])
def test_bad_binary_requests_get_a_400_naming_the_problem(client, example_images, change, status, message):
    body, headers = binary_request(example_images[:1])
    r = client.post(INFER, content=body, headers={**headers, **change})
    assert r.status_code == status and message in r.json()["error"]


def test_concurrent_requests_share_forward_passes(example_model, example_images):
    """Adaptive batching: 16 concurrent single-image requests need fewer than 16 forward passes."""
    import asyncio

    import httpx

    settings = ModelSettings(path=example_model, max_batch_wait_ms=20)
    registry = CollectorRegistry()
    app = create_app(settings, registry)

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://m") as c:
                rs = await asyncio.gather(*(c.post(PREDICT, json={"instances": example_images[i:i + 1].tolist()}) for i in range(16)))
                return [r.status_code for r in rs], (await c.get("/metrics")).text

    codes, metrics = asyncio.run(main())
    assert codes == [200] * 16
    passes = metric_sum(metrics, "seismo_model_batch_size_count")
    rows = metric_sum(metrics, "seismo_model_batch_size_sum")
    assert rows == 16 and passes < 16


def test_explainer_marker_needs_a_token_when_auth_is_on(example_model, example_images, monkeypatch):
    """With auth on, only a caller holding a token may keep its predictions out of the logged traffic."""
    monkeypatch.setenv("SEISMO_AUTH_TOKENS", "secret-token")
    recording = RecordingSink()
    with ThreadServer(recording.app()) as server:
        settings = ModelSettings(path=example_model, sink_url=server.url + "/")
        with ServedApp(create_app(settings, CollectorRegistry())) as c:
            body = v2(example_images[:1])
            marked = {"x-seismo-traffic": "explainer"}
            assert c.post("/v2/models/image-classifier/infer", json=body, headers={**marked, "x-request-id": "no-token"}).status_code == 200
            assert c.post("/v2/models/image-classifier/infer", json=body,
                          headers={**marked, "x-request-id": "with-token", "authorization": "Bearer secret-token"}).status_code == 200
            # A plain prediction after both: once its events arrive, anything queued before them was sent too.
            assert c.post("/v2/models/image-classifier/infer", json=body, headers={"x-request-id": "barrier"}).status_code == 200
            wait_until(lambda: {r.headers["ce-id"] for r in recording.received} >= {"no-token", "barrier"}, 20,
                       message="the unauthorized call and the barrier logged")
            assert "with-token" not in {r.headers["ce-id"] for r in recording.received}
            assert metric_sum(c.get("/metrics").text, "seismo_model_requests_unlogged_total", reason="explainer") == 1


def test_metrics_protected_by_setting_while_predictions_stay_open(example_model, example_images, monkeypatch):
    monkeypatch.setenv("SEISMO_AUTH_TOKENS", "secret-token")
    monkeypatch.setenv("SEISMO_AUTH_METRICS", "protected")
    with ServedApp(create_app(ModelSettings(path=example_model), CollectorRegistry())) as c:
        missing = c.get("/metrics")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 403
        assert c.get("/metrics", headers={"authorization": "Bearer secret-token"}).status_code == 200
        assert c.post("/v2/models/image-classifier/infer", json=v2(example_images[:1])).status_code == 200  # open, as KServe's
        assert c.get("/v2/models/image-classifier").status_code == 200 and c.get("/healthz").status_code == 200
    monkeypatch.setenv("SEISMO_AUTH_METRICS", "open")
    with ServedApp(create_app(ModelSettings(path=example_model), CollectorRegistry())) as c:
        assert c.get("/metrics").status_code == 200


@pytest.mark.parametrize("tokens", [",", " , ,", " "])
def test_a_token_setting_without_tokens_refuses_to_start(example_model, monkeypatch, tokens):
    """Fail closed: a setting that means "auth on" but names no token must not leave auth off."""
    monkeypatch.setenv("SEISMO_AUTH_TOKENS", tokens)
    if not tokens.strip():  # blank is the documented "auth off"
        create_app(ModelSettings(path=example_model), CollectorRegistry())
        return
    with pytest.raises(ValueError, match="SEISMO_AUTH_TOKENS is set but holds no token"):
        create_app(ModelSettings(path=example_model), CollectorRegistry())


def test_the_embedding_travels_on_the_response_event_with_its_version(client, sink, example_model, example_images):
    from seismo.embeddings.extract import embed, embedding_of

    images = example_images[:4]
    expected, version = embed(example_model, images)
    assert version == "image-classifier/penultimate@1.0.1" and expected.shape == (4, 64)
    plain = client.post(INFER, json=v2(images, id="emb-v2-1"))
    assert [o["name"] for o in plain.json()["outputs"]] == ["probabilities", "class"]  # clients get it only by asking
    asked = client.post(INFER, json=v2(images, id="emb-v2-2", outputs=[{"name": "embedding"}])).json()["outputs"]
    assert asked[0]["name"] == "embedding" and asked[0]["shape"] == [4, 64]
    np.testing.assert_allclose(np.reshape(asked[0]["data"], (4, 64)), expected, rtol=1e-4, atol=1e-6)
    client.post(PREDICT, json={"instances": images.tolist()}, headers={"x-request-id": "emb-v1-1"})

    def response_of(pid):
        found = [e for e in sink.received if e.headers.get("ce-id") == pid and e.headers["ce-type"].endswith("response")]
        return found[0] if found else None

    wait_until(lambda: all(response_of(p) for p in ("emb-v2-1", "emb-v2-2", "emb-v1-1")), 10, message="response events")
    for pid in ("emb-v2-1", "emb-v2-2", "emb-v1-1"):
        event = response_of(pid)
        assert event.headers["ce-embeddingversion"] == version and event.headers["ce-embeddingoutput"] == "embedding"
        found = embedding_of(event.body, {k[3:]: v for k, v in event.headers.items() if k.startswith("ce-")})
        assert found.version == version
        np.testing.assert_allclose(found.vectors, expected, rtol=1e-4, atol=1e-6)


def test_embeddings_can_be_turned_off_and_a_wrong_layer_fails_at_start(example_model):
    from seismo.serving.runtimes import load_runtime

    assert load_runtime(example_model, embeddings=False).embedding is None
    with pytest.raises(ValueError, match="embedding layer 'nope' is not in the model"):
        load_runtime(example_model, embedding_layer="nope", embedding_version="image-classifier/nope@1.0.0")
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        load_runtime(example_model, embedding_layer="penultimate", embedding_version="v2")


def test_x_seismo_parent_id_names_the_upstream_prediction_on_both_events_and_is_checked(client, sink, example_images):
    r = client.post(PREDICT, json={"instances": example_images[:1].tolist()}, headers={"x-request-id": "child-1", "x-seismo-parent-id": "asr-7#0"})
    assert r.status_code == 200
    wait_until(lambda: len([e for e in sink.received if e.headers.get("ce-id") == "child-1"]) == 2, 10, message="events")
    assert {e.headers.get("ce-parentid") for e in sink.received if e.headers.get("ce-id") == "child-1"} == {"asr-7#0"}
    bad = client.post(PREDICT, json={"instances": example_images[:1].tolist()}, headers={"x-seismo-parent-id": "a b"})
    assert bad.status_code == 400 and "header x-seismo-parent-id 'a b' cannot be a prediction id" in bad.json()["error"]
    # A V2 body id with a trailing newline cannot be echoed as a header: refused, not a 500.
    body = {"id": "abc\n", "inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": example_images[:1].reshape(-1).tolist()}]}
    newline = client.post(INFER, json=body)
    assert newline.status_code == 400 and "cannot be a prediction id" in newline.json()["error"]


def test_events_that_cannot_be_built_are_counted_and_the_prediction_is_still_answered(example_model, example_images, monkeypatch):
    """The events are built after the answer is written (a loop callback): a failure there must
    neither reach the client nor vanish uncounted."""
    import seismo.serving.dataplane as model_module

    def broken(*args):
        raise RuntimeError("cannot build")

    monkeypatch.setattr(model_module, "kserve_events", broken)
    recording = RecordingSink()
    with ThreadServer(recording.app()) as server:
        settings = ModelSettings(path=example_model, sink_url=server.url + "/")
        with ServedApp(create_app(settings, CollectorRegistry())) as client:
            for _ in range(3):
                assert client.post(PREDICT, json={"instances": example_images[:1].tolist()}).status_code == 200
            wait_until(lambda: metric_sum(client.get("/metrics").text, "seismo_model_events_dropped_total", reason="unsendable") == 6,
                       10, message="both events of each prediction counted as dropped")
            assert client.get("/healthz").status_code == 200
    assert not recording.received
