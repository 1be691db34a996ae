"""Conformance with the clients platform teams already run, against the session's shared stack (a real
`seismo up`): tritonclient over HTTP and gRPC, KServe's SDK and SeldonClient (each from an environment of
its own, `make clients`: they pin protobuf and numpy versions Seismo's cannot hold; the scripts are in
tests/clients/), and a property-based run of every service's /openapi.json (schemathesis)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import MODEL
from helpers import metric_sum, scrape, wait_until
from test_interop import TABULAR, WINE_ROW

pytestmark = pytest.mark.integration

http = pytest.importorskip("tritonclient.http", reason="tritonclient (a dev dependency) speaks Triton's HTTP and gRPC")
# tritonclient.grpc registers Triton's own `inference.*` messages in protobuf's default pool, under the
# same names as Seismo's Open Inference Protocol messages: the two cannot share a process, so its gRPC
# client runs in one of its own (below).
GRPC_CLIENT = """
import sys, numpy as np, tritonclient.grpc as g
address, model, pid = sys.argv[1:4]
image = np.load(sys.argv[4]).astype(np.float32)[None]
client = g.InferenceServerClient(address)
assert client.is_server_live() and client.is_model_ready(model)
tensor = g.InferInput("input_1", list(image.shape), "FP32")
tensor.set_data_from_numpy(image)
result = client.infer(model, [tensor], request_id=pid)
config = client.get_model_config(model).config
assert config.name == model and config.input[0].data_type == g.model_config_pb2.TYPE_FP32, config
assert list(config.input[0].dims) == list(image.shape[1:]), config
stats = client.get_inference_statistics(model).model_stats[0]
assert stats.name == model and stats.inference_stats.success.count >= 1 and stats.execution_count >= 1, stats
print(result.as_numpy("probabilities").shape)
"""


@pytest.fixture(scope="module")
def triton(shared_stack):
    client = http.InferenceServerClient(urlsplit(shared_stack.url("model")).netloc)
    yield client
    client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_infers_and_every_prediction_is_stored(s, triton, binary):
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready(MODEL)
    assert triton.get_model_metadata(MODEL)["name"] == MODEL
    image = s.image.astype(np.float32)[None]
    tensor = http.InferInput("input_1", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image, binary_data=binary)
    pid = f"triton-http-{binary}-{uuid.uuid4().hex[:6]}"
    result = triton.infer(MODEL, [tensor], request_id=pid,
                          outputs=[http.InferRequestedOutput("probabilities", binary_data=binary), http.InferRequestedOutput("class")])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (1, 10) and abs(float(probabilities.sum()) - 1) < 1e-4
    assert int(result.as_numpy("class")[0]) == int(probabilities.argmax())
    record = wait_until(lambda: s.record(pid) if s.complete(pid) else None, 30, message="the tritonclient prediction's record")
    assert record["request_content_type"] == ("application/octet-stream" if binary else "application/json")


def test_tritonclient_http_reads_config_and_statistics(s, triton):
    image = s.image.astype(np.float32)[None]
    tensor = http.InferInput("input_1", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    triton.infer(MODEL, [tensor])  # at least one success to count, whatever ran before
    config = triton.get_model_config(MODEL)
    assert config["name"] == MODEL and config["input"][0]["data_type"] == "TYPE_FP32"
    stats = triton.get_inference_statistics(MODEL)["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] >= 1


def test_tritonclient_grpc_infers_and_the_prediction_is_stored(s, tmp_path):
    import subprocess
    import sys

    image = tmp_path / "image.npy"
    np.save(image, s.image)
    pid = f"triton-grpc-{uuid.uuid4().hex[:6]}"
    address = f"{urlsplit(s.url('model')).hostname}:{s.stack.grpc_port}"
    result = subprocess.run([sys.executable, "-c", GRPC_CLIENT, address, MODEL, pid, str(image)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "(1, 10)", result.stderr[-3000:]
    wait_until(lambda: s.complete(pid), 30, message="the gRPC prediction's record")


REPO = Path(__file__).resolve().parents[2]


def client_environment(name: str) -> Path:
    """The interpreter of a client's own environment (`make test` builds them from requirements/*-client.txt)."""
    python = REPO / f".venv-{name}" / "bin" / "python"
    if not python.exists():
        pytest.skip(f".venv-{name} is missing: `make test` builds it (requirements/{name}-client.txt)")
    return python


def run_client(python: Path, script: str, *args: str) -> dict:
    import json
    import subprocess

    result = subprocess.run([str(python), str(REPO / "tests" / "clients" / script), *args], capture_output=True, text=True, timeout=180,
                            env={"PATH": "/usr/bin:/bin", "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_kserve_sdk_rest_v1_v2_and_grpc_predictions_are_stored(s, tmp_path):
    python = client_environment("kserve")
    image = tmp_path / "image.npy"
    np.save(image, s.image)
    address = f"{urlsplit(s.url('model')).hostname}:{s.stack.grpc_port}"
    ids = run_client(python, "kserve_sdk.py", s.url("model"), address, MODEL, str(image), f"kserve-{uuid.uuid4().hex[:6]}")
    assert set(ids) == {"v1", "v2-json", "v2-binary", "grpc"}
    for kind, pid in ids.items():
        record = wait_until(lambda pid=pid: s.record(pid) if s.complete(pid) else None, 30, message=f"the KServe SDK's {kind} record")
        assert record["model"] == MODEL
    assert s.record(ids["v2-binary"])["request_content_type"] == "application/octet-stream"


def test_seldon_client_predicts_and_its_feedback_reaches_the_metrics_server(s):
    python = client_environment("seldon")
    before = metric_sum(scrape(s.url("metrics")), "seismo_metrics_feedback_received_total", model=TABULAR)
    answer = run_client(python, "seldon_client.py", urlsplit(s.url("tabular")).netloc, urlsplit(s.url("metrics")).netloc, TABULAR,
                        json.dumps(WINE_ROW))
    wait_until(lambda: s.complete(answer["puid"]), 30, message="SeldonClient's prediction stored under its puid")
    # Once relayed by the model server, once posted to the metrics server.
    wait_until(lambda: metric_sum(scrape(s.url("metrics")), "seismo_metrics_feedback_received_total", model=TABULAR) >= before + 2, 30,
               message="SeldonClient's feedback received by the metrics server")


# No 5xx, and every 405 names what is allowed. Not `positive_data_acceptance` (nothing the document
# accepts is refused): the documents state every rule JSON Schema can (required CloudEvents attributes, the
# event types each ingress takes, ids, truth and response shapes: tests/hostile/test_interop.py), but some
# rules are beyond it: a V2 tensor's data length is the product of its shape, arrays are rectangular, a
# Seldon binData is a whole number of the model's instances, an event names a model this deployment
# watches. A run with that check (2026-12-06) found only such cases.
CHECKS = "not_a_server_error,unsupported_method,allow_header_conformance"


SERVICES = ["model", "logger", "broker", "metrics", "outlier", "drift", "explainer"]


def run_schemathesis(url: str, examples: int, tmp_path) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "schemathesis.cli", "run", url, "--checks", CHECKS, "--max-examples", str(examples), "--seed", "1",
               "--request-timeout", "30", "--generation-allow-x00", "false", "--report", "ndjson", "--report-dir", str(tmp_path), "--no-color"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache dir too
    assert result.returncode == 0, result.stdout[-6000:]


@pytest.mark.parametrize("service", SERVICES)
def test_every_openapi_document_holds_against_its_service(s, service, tmp_path):
    """schemathesis generates requests from the service's own document: two examples per operation here
    (about 25 s for the seven services), the long run with the slow tests."""
    run_schemathesis(f"{s.url(service)}/openapi.json", 2, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_every_openapi_document_holds_a_long_run(s, service, tmp_path):
    run_schemathesis(f"{s.url(service)}/openapi.json", 30, tmp_path)
