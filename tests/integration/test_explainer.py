"""The explainer over HTTP against real model servers (`seismo serve model`) serving models whose rule is known."""

import json

import joblib
import numpy as np
import orjson
import pytest
from helpers import ServedApp, free_port, metric_sum, start_service, stop_process, wait_ready
from prometheus_client import CollectorRegistry
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from bench.common import alibi_available, run_alibi
from seismo.services.explainer import ExplainerSettings, create_app

pytestmark = pytest.mark.integration
RNG = np.random.default_rng(0)


def region_image(rng, bright: bool) -> np.ndarray:
    image = rng.random((32, 32, 3)).astype(np.float32) * 0.06 + 0.47
    image[:8, :8, :] = 0.95 if bright else 0.05
    return image


def save_model(folder, name, model, shape, reference):
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    np.save(folder / "reference.npy", reference)
    (folder / "metadata.json").write_text(json.dumps({
        "name": name, "framework": "sklearn", "file": "model.joblib", "feature_names": [f"f{j}" for j in range(5)],
        "inputs": [{"name": "input_1", "datatype": "FP32", "shape": [-1, *shape]}]}))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explainer")
    x = RNG.random((3000, 5)).astype(np.float32)
    save_model(tmp / "rule", "rule", DecisionTreeClassifier(random_state=0).fit(x, x[:, 2] > 0.5), (5,), x[:1000])
    images = np.stack([region_image(RNG, bool(i % 2)) for i in range(300)])
    labels = np.arange(300) % 2
    region = LogisticRegression(max_iter=2000).fit(images.reshape(300, -1), labels)
    save_model(tmp / "region", "region", region, (32, 32, 3), images[:60])
    servers, urls = [], {}
    try:
        for name in ("rule", "region"):  # both start at once, then both are waited for
            port = free_port()
            servers.append(start_service("model", port, {"SEISMO_DATA_DIR": str(tmp)}, tmp / f"{name}.log",
                                         ["--model-path", str(tmp / name), "--model-name", name]))
            urls[name] = f"http://127.0.0.1:{port}"
        for name, server in zip(("rule", "region"), servers):
            wait_ready(urls[name], server, log_path=tmp / f"{name}.log")
        dead = free_port()
        (tmp / "explainer.yaml").write_text(f"""
models:
  rule: {{kind: tabular, url: "{urls['rule']}", reference: rule/reference.npy}}
  region: {{kind: image, url: "{urls['region']}", reference: region/reference.npy, background: reference, segmentation: {{method: slic, n_segments: 16}}}}
  down: {{kind: tabular, url: "http://127.0.0.1:{dead}", reference: rule/reference.npy}}
  ghost: {{kind: tabular, url: "{urls['rule']}", reference: rule/reference.npy}}
""")
        settings = ExplainerSettings(config_file=tmp / "explainer.yaml", max_model_calls=20000, max_seconds=60)
        with ServedApp(create_app(settings, CollectorRegistry())) as client:
            client.model_urls = urls  # for the alibi cross-check, which calls the same model server
            client.reference = x[:1000]
            yield client
    finally:
        for server in servers:
            stop_process(server)


def explain(client, model, instances, **parameters):
    body = {"instances": np.asarray(instances).tolist()}
    if parameters:
        body["parameters"] = parameters
    return client.post(f"/v1/models/{model}:explain", content=orjson.dumps(body))


def test_tabular_anchor_over_http_names_feature_2(stack):
    r = explain(stack, "rule", [[0.3, 0.7, 0.9, 0.2, 0.6]])
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["method"] == "anchors" and result["anchor_features"] == ["f2"] and result["precision"] >= 0.95
    assert result["anchor"] == [result["anchor"][0]] and result["anchor"][0].startswith("f2 >")
    assert result["budget_exhausted"] is False and 0 < result["model_calls"] <= 20000 and result["model_requests"] >= 1
    text = stack.get("/metrics").text
    assert metric_sum(text, "seismo_explainer_explanations_total", model="rule", method="anchors", outcome="ok") >= 1
    assert metric_sum(text, "seismo_explainer_model_calls_count", model="rule") >= 1


def test_image_anchor_over_http_covers_the_region(stack):
    image = region_image(np.random.default_rng(9), bright=True)
    r = explain(stack, "region", [image])
    assert r.status_code == 200, r.text
    result = r.json()
    mask = np.array(result["anchor"]["mask"], dtype=bool)
    assert result["prediction"] == 1 and result["precision"] >= 0.95
    assert mask[:8, :8].mean() > 0.8 and mask.mean() < 0.5
    assert np.array(result["segments"]).shape == (32, 32)


def test_kernel_shap_and_v2_bodies(stack):
    body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 5], "data": [0.3, 0.7, 0.9, 0.2, 0.6]}],
            "parameters": {"method": "kernel_shap"}}
    r = stack.post("/v1/models/rule:explain", content=orjson.dumps(body))
    assert r.status_code == 200, r.text
    values = np.array(r.json()["shap_values"])
    assert np.argmax(np.abs(values[:, 1])) == 2 and r.json()["feature_names"][2] == "f2"


def test_budgets_are_respected_over_http(stack):
    r = explain(stack, "rule", [[0.3, 0.7, 0.9, 0.2, 0.6]], max_model_calls=300)
    assert r.status_code == 200 and r.json()["budget_exhausted"] is True and r.json()["model_calls"] <= 300
    r = explain(stack, "region", [region_image(np.random.default_rng(2), True)], max_seconds=0.05)
    assert r.status_code == 200 and r.json()["budget_exhausted"] is True and r.json()["seconds"] < 5


@pytest.mark.parametrize("model, instances, parameters, status, message", [
    ("nope", [[0.1] * 5], {}, 404, "no explainer for model 'nope'"),
    ("rule", [[0.1] * 5, [0.2] * 5], {}, 400, "one instance at a time"),
    ("rule", [[0.1] * 4], {}, 400, "takes [5]"),
    ("rule", [[0.1] * 5], {"method": "lime"}, 400, "'method' must be one of"),
    ("rule", [[0.1] * 5], {"threshold": 2}, 400, "'threshold'"),
    ("region", [np.zeros((32, 32, 3))], {"method": "kernel_shap"}, 400, "kernel_shap explains tabular"),
    ("rule", [[0.1] * 5], {"method": "kernel_shap", "nsamples": 1.5}, 400, "'nsamples' must be a whole number"),
    ("rule", [[0.1] * 5], {"method": "kernel_shap", "nsamples": True}, 400, "'nsamples'"),
    ("rule", [[0.1] * 5], {"method": "kernel_shap", "nsamples": 10**9}, 400, "'nsamples'"),
    ("down", [[0.1] * 5], {}, 503, "unreachable"),
    ("ghost", [[0.1] * 5], {}, 502, "answered 404"),
])
def test_errors_are_clear(stack, model, instances, parameters, status, message):
    r = explain(stack, model, instances, **parameters)
    assert r.status_code == status and message in r.json()["error"], r.text


def test_malformed_body(stack):
    r = stack.post("/v1/models/rule:explain", content=b"{oops")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]



@pytest.mark.skipif(not alibi_available(), reason="alibi not installed: `make alibi` builds .venv-alibi")
def test_seismo_and_alibi_anchor_tabular_agree_on_the_anchored_features(stack):
    instance = np.array([0.3, 0.7, 0.9, 0.2, 0.6], dtype=np.float32)
    ours = explain(stack, "rule", [instance]).json()
    theirs = run_alibi("anchor_tabular", runner="alibi_explain_runner.py", url=stack.model_urls["rule"], model="rule",
                       reference=stack.reference, instance=instance, feature_names=np.array([f"f{j}" for j in range(5)]), threshold=0.95)
    assert sorted(theirs["features"]) == ours["anchor_feature_indices"] == [2]
    assert theirs["precision"] >= 0.95 and ours["precision"] >= 0.95
