"""The Open Inference Protocol over gRPC, driven by a real gRPC client (the generated stub over a real
channel) against the model server on a loopback port, with a recording sink for its events."""

import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from helpers import RecordingSink, ServedApp, ThreadServer, metric_sum, wait_until
from prometheus_client import CollectorRegistry

from seismo.probes import free_port
from seismo.protocol.binary import load_document
from seismo.services.model import ModelSettings, create_app
from seismo.serving.proto import grpc_predict_v2_pb2 as pb
from seismo.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

MODEL = "image-classifier"
MAX_BODY = 2_000_000


@pytest.fixture(scope="module")
def sink():
    recording = RecordingSink()
    with ThreadServer(recording.app()) as server:
        recording.url = server.url
        yield recording


@pytest.fixture(scope="module")
def served(example_model, sink):
    port = free_port()
    settings = ModelSettings(path=example_model, sink_url=sink.url + "/", grpc_port=port, max_body_bytes=MAX_BODY)
    with ServedApp(create_app(settings, CollectorRegistry())) as client, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield client, pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def stub(served):
    return served[1]


def typed_request(images: np.ndarray, **extra) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input_1", datatype="FP32", shape=list(images.shape))
    tensor.contents.fp32_contents.extend(images.ravel().tolist())
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], **extra)


def raw_request(images: np.ndarray, **extra) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input_1", datatype="FP32", shape=list(images.shape))
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=[images.astype("<f4").tobytes()], **extra)


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    dtypes = {"FP32": "<f4", "INT64": "<i8"}
    out = {}
    for i, tensor in enumerate(response.outputs):
        if response.raw_output_contents:
            out[tensor.name] = np.frombuffer(response.raw_output_contents[i], dtype=dtypes[tensor.datatype]).reshape(tensor.shape)
        else:
            values = tensor.contents.fp32_contents if tensor.datatype == "FP32" else tensor.contents.int64_contents
            out[tensor.name] = np.asarray(values).reshape(tensor.shape)
    return out


def events_for(sink: RecordingSink, prediction_id: str) -> dict[str, object]:
    wait_until(lambda: sum(r.headers.get("ce-id") == prediction_id for r in sink.received) >= 2, message=f"both events of {prediction_id}")
    return {r.headers["ce-type"].rsplit(".", 1)[1]: r for r in sink.received if r.headers.get("ce-id") == prediction_id}


def test_health_and_metadata(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "seismo"
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready is True
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL))
    assert meta.name == MODEL and meta.inputs[0].name == "input_1" and list(meta.inputs[0].shape) == [-1, 32, 32, 3]
    assert {o.name for o in meta.outputs} >= {"probabilities", "class"}
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "'nope' is not served here" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=MODEL))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_typed_and_raw_inference_agree_with_rest_and_log_both_events(served, sink, example_images):
    client, stub = served
    images = example_images[:3]
    rest = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [{"name": "input_1", "datatype": "FP32", "shape": list(images.shape),
                                                                      "data": images.ravel().tolist()}]}).json()
    expected = np.reshape(next(o for o in rest["outputs"] if o["name"] == "probabilities")["data"], (3, 10))

    typed, call = stub.ModelInfer.with_call(typed_request(images, id="grpc-typed-1"))
    assert typed.id == "grpc-typed-1" and typed.model_name == MODEL and not typed.raw_output_contents
    assert ("x-prediction-id", "grpc-typed-1") in call.initial_metadata()
    got = outputs_of(typed)
    np.testing.assert_allclose(got["probabilities"], expected, rtol=1e-5)
    assert got["class"].tolist() == expected.argmax(axis=1).tolist()

    raw = stub.ModelInfer(raw_request(images, id="grpc-raw-1"))
    assert len(raw.raw_output_contents) == len(raw.outputs)  # raw in, raw out
    np.testing.assert_allclose(outputs_of(raw)["probabilities"], expected, rtol=1e-5)

    # The same events as REST: request and response share the prediction id; the request event carries
    # the V2 body (JSON for typed contents, the binary extension for raw), the response the outputs.
    for pid, content_type in (("grpc-typed-1", "application/json"), ("grpc-raw-1", "application/octet-stream")):
        events = events_for(sink, pid)
        request, response = events["request"], events["response"]
        assert request.headers["ce-type"] == "org.kubeflow.serving.inference.request"
        assert request.headers["content-type"] == content_type and request.headers["ce-requestid"] == pid
        sent = load_document(request.body)["inputs"][0]
        np.testing.assert_allclose(np.asarray(sent["data"], dtype=np.float32).reshape(sent["shape"]), images)
        answered = {o["name"]: o for o in load_document(response.body)["outputs"]}
        np.testing.assert_allclose(np.asarray(answered["probabilities"]["data"], dtype=np.float32).reshape(3, 10), expected, rtol=1e-5)
        assert "embedding" in answered and response.headers["ce-embeddingversion"] == "image-classifier/penultimate@1.0.1"
        assert response.headers["ce-statuscode"] == "200"


def test_prediction_id_from_metadata_and_a_new_one_otherwise(stub, example_images):
    response, call = stub.ModelInfer.with_call(typed_request(example_images[:1]), metadata=(("x-request-id", "from-metadata-7"),))
    assert response.id == "from-metadata-7"
    fresh = stub.ModelInfer(typed_request(example_images[:1]))
    assert len(fresh.id) == 36 and fresh.id != response.id


def test_requested_outputs_only(stub, example_images):
    request = typed_request(example_images[:2], outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="class")])
    assert [o.name for o in stub.ModelInfer(request).outputs] == ["class"]


def test_concurrent_calls_share_forward_passes(served, example_images):
    client, stub = served
    before = metric_sum(client.get("/metrics").text, "seismo_model_batch_size_count")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: stub.ModelInfer(typed_request(example_images[i:i + 1])), range(48)))
    assert all(len(r.outputs) == 2 for r in results)
    passes = metric_sum(client.get("/metrics").text, "seismo_model_batch_size_count") - before
    assert passes < 48  # the batcher put several calls into one forward pass
    assert metric_sum(client.get("/metrics").text, "seismo_model_requests_total", protocol="grpc", code="200") >= 48


def _tensor(**fields) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(name="input_1", **fields)


@pytest.mark.parametrize(("request_", "code", "message"), [
    (pb.ModelInferRequest(model_name="nope"), grpc.StatusCode.NOT_FOUND, "model 'nope' is not served here"),
    (pb.ModelInferRequest(model_name=MODEL, inputs=[_tensor(datatype="FP32", shape=[1, 3], contents=pb.InferTensorContents(fp32_contents=[1, 2, 3]))]),
     grpc.StatusCode.INVALID_ARGUMENT, "has shape [1, 3] but model 'image-classifier' expects [-1, 32, 32, 3]"),
    (pb.ModelInferRequest(model_name=MODEL, inputs=[_tensor(datatype="FP32", shape=[1, 2], contents=pb.InferTensorContents(fp32_contents=[1]))]),
     grpc.StatusCode.INVALID_ARGUMENT, "needs 2 elements"),
    (pb.ModelInferRequest(model_name=MODEL, inputs=[_tensor(datatype="FP16", shape=[1])]), grpc.StatusCode.INVALID_ARGUMENT, "FP16 and BF16 travel as raw"),
    (pb.ModelInferRequest(model_name=MODEL, inputs=[_tensor(datatype="FP32", shape=[1]), _tensor(datatype="FP32", shape=[1])], raw_input_contents=[b"\0" * 4]),
     grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents has 1 entries for 2 inputs"),
    (pb.ModelInferRequest(model_name=MODEL, inputs=[_tensor(datatype="FP32", shape=[1, 32, 32, 3])], raw_input_contents=[b"\0" * 5]),
     grpc.StatusCode.INVALID_ARGUMENT, "5 bytes is not a whole number of FP32 elements"),
    (pb.ModelInferRequest(model_name=MODEL, id="has space", inputs=[_tensor(datatype="FP32", shape=[1], contents=pb.InferTensorContents(fp32_contents=[1]))]),
     grpc.StatusCode.INVALID_ARGUMENT, "cannot be a prediction id"),
    (pb.ModelInferRequest(model_name=MODEL, inputs=[_tensor(datatype="FP32", shape=[1, 32, 32, 3])], raw_input_contents=[b"\0" * (MAX_BODY + 10)]),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
])
def test_bad_requests_get_the_matching_status_and_a_message(served, request_, code, message):
    client, stub = served
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request_)
    assert caught.value.code() == code, caught.value.details()
    assert message in (caught.value.details() or "")
    assert stub.ServerLive(pb.ServerLiveRequest()).live  # still serving


def test_generated_code_is_current():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) regenerates the code")
    from seismo.serving.proto import generate

    with tempfile.TemporaryDirectory() as out:
        for path in generate.generate(Path(out)):
            committed = Path(generate.HERE) / path.name
            assert generate.without_version_stamps(committed.read_text()) == generate.without_version_stamps(path.read_text()), (
                f"{committed} is stale: run `python -m seismo.serving.proto.generate`")


def test_version_stamps_are_all_that_is_ignored():
    from seismo.serving.proto import generate

    grpc_code = (Path(generate.HERE) / "grpc_predict_v2_pb2_grpc.py").read_text()
    pb_code = (Path(generate.HERE) / "grpc_predict_v2_pb2.py").read_text()
    restamped = re.sub(r"GRPC_GENERATED_VERSION = '[^']*'", "GRPC_GENERATED_VERSION = '9.99.9'", grpc_code)
    assert restamped != grpc_code and generate.without_version_stamps(restamped) == generate.without_version_stamps(grpc_code)
    reprotoc = re.sub(r"Protobuf Python Version: \S+", "Protobuf Python Version: 9.1.2", pb_code)
    reprotoc = re.sub(r"(Domain\.PUBLIC,\s*)\d+,\s*\d+,\s*\d+,", r"\g<1>9,\n    1,\n    2,", reprotoc)
    assert reprotoc != pb_code and generate.without_version_stamps(reprotoc) == generate.without_version_stamps(pb_code)
    # a change to the code itself still shows
    changed = grpc_code.replace("ModelInfer", "ModelInference", 1)
    assert generate.without_version_stamps(changed) != generate.without_version_stamps(grpc_code)


def test_wire_contract_matches_the_open_inference_protocol():
    """Field numbers are the wire format: these are the ones KServe's and Triton's clients send."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert [m.name for m in service.methods] == ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
                                                 "RepositoryModelLoad", "RepositoryModelUnload", "ModelConfig", "ModelStatistics"]
    numbers = lambda message: {f.name: f.number for f in message.DESCRIPTOR.fields}  # noqa: E731
    assert numbers(pb.ModelInferRequest) == {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5, "outputs": 6,
                                             "raw_input_contents": 7}
    assert numbers(pb.ModelInferResponse) == {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "outputs": 5, "raw_output_contents": 6}
    assert numbers(pb.ModelInferRequest.InferInputTensor) == {"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5}
    assert numbers(pb.InferTensorContents) == {"bool_contents": 1, "int_contents": 2, "int64_contents": 3, "uint_contents": 4, "uint64_contents": 5,
                                               "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8}
    assert numbers(pb.InferParameter) == {"bool_param": 1, "int64_param": 2, "string_param": 3}
    # Triton's extensions (its grpc_service.proto and model_config.proto): the subset Seismo fills.
    assert numbers(pb.ModelConfig) == {"name": 1, "platform": 2, "version_policy": 3, "max_batch_size": 4, "input": 5, "output": 6, "backend": 17}
    assert numbers(pb.ModelInput) == {"name": 1, "data_type": 2, "dims": 4}
    assert numbers(pb.ModelOutput) == {"name": 1, "data_type": 2, "dims": 3}
    assert numbers(pb.ModelStatistics) == {"name": 1, "version": 2, "last_inference": 3, "inference_count": 4, "execution_count": 5,
                                           "inference_stats": 6}
    assert pb.DataType.Value("TYPE_FP32") == 11 and pb.DataType.Value("TYPE_STRING") == 13


def test_another_model_version_is_not_found(stub, example_images):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(typed_request(example_images[:1], model_version="99"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "version '99'" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL, version="99"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelConfig(pb.ModelConfigRequest(name=MODEL, version="99"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelStatistics(pb.ModelStatisticsRequest(name="other"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_hostile_datatype_and_metadata_are_refused_briefly(stub, example_images):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL, inputs=[_tensor(datatype="X" * 5000, shape=[1])]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(caught.value.details()) < 300
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(typed_request(example_images[:1]), metadata=(("x-seismo-cohort", "a b;c" * 20),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "x-seismo-cohort" in caught.value.details()
    # A client cannot make a typed request read as the binary extension by sending the HTTP header as metadata.
    ok = stub.ModelInfer(typed_request(example_images[:1]), metadata=(("inference-header-content-length", "3"),))
    assert len(ok.outputs) == 2


def test_one_size_rule_from_the_door_to_the_store(example_model, sink, example_images):
    """What the model server answers is stored: a request whose event the path cannot carry (the broker's
    batches carry data in base64) is refused up front, with the same message over REST and gRPC. Before,
    it was answered 200 and its request event refused on the way (the record's request NULL). Typed gRPC
    contents too large to re-encode are refused before they are built (memory: +766 MiB for 29 MiB)."""
    from seismo.services.model import EVENT_OVERHEAD_BYTES

    port, limit = free_port(), 300_000
    settings = ModelSettings(path=example_model, sink_url=sink.url + "/", grpc_port=port, max_body_bytes=MAX_BODY, max_event_bytes=limit)
    # ~245 KB of V2 JSON: under the body limit, over what the event path carries (212 KB of body)
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    rest_body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": list(images.shape), "data": images.ravel().tolist()}]}
    shape = re.compile(r"\d+")
    with ServedApp(create_app(settings, CollectorRegistry())) as client, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        rest = client.post(f"/v2/models/{MODEL}/infer", json=rest_body, headers={"x-request-id": "too-big-rest"})
        assert rest.status_code == 413
        message = rest.json()["error"]
        assert "would make a request event of" in message and f"at most {limit} bytes (SEISMO_MODEL_MAX_EVENT_BYTES)" in message
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(typed_request(images, id="too-big-grpc"))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert shape.sub("N", caught.value.details()) == shape.sub("N", message)  # one rule, one message
        many = np.zeros((40, 32, 32, 3), dtype=np.float32)  # 122,880 values: at least 245 KB of JSON, refused unbuilt
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(typed_request(many, id="too-many-values"))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "typed contents of 122880 values" in caught.value.details()
        assert (limit - EVENT_OVERHEAD_BYTES) * 3 // 4 < 245_760
        noisy = np.random.default_rng(1).random((20, 32, 32, 3), dtype=np.float32)  # over the floor's reach, found by the sample
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(typed_request(noisy, id="too-many-digits"))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "typed contents of 61440 values" in caught.value.details()
        # nothing of the refused requests went out; the next prediction is answered and both its events sent
        ok = stub.ModelInfer(typed_request(example_images[:1], id="fits-after"))
        assert ok.id == "fits-after"
        events = events_for(sink, "fits-after")
        assert set(events) == {"request", "response"}
        assert not [r for r in sink.received if r.headers.get("ce-id") in ("too-big-rest", "too-big-grpc", "too-many-values")]
