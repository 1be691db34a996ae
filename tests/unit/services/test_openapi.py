"""`/openapi.json`: each service's document is valid OpenAPI 3.1, documents exactly the routes the app has,
and the documented examples (curl commands in the README and docs/, the API reference's table) validate against it."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest
from helpers import ServedApp, doc_curls, operation_for, service_at
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("model", "broker", "logger", "outlier", "drift", "metrics", "explainer")
SETTINGS = {"model": "ModelSettings", "broker": "BrokerSettings", "logger": "LoggerSettings", "outlier": "OutlierSettings",
            "drift": "DriftSettings", "metrics": "MetricsSettings", "explainer": "ExplainerSettings"}


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """Every service's app with its default settings (the example artifacts), built but not started."""
    import os

    data_dir = tmp_path_factory.mktemp("openapi")
    old = os.environ.get("SEISMO_DATA_DIR")
    os.environ["SEISMO_DATA_DIR"] = str(data_dir)
    try:
        built = {}
        for name in SERVICES:
            module = importlib.import_module(f"seismo.services.{name}")
            built[name] = module.create_app(getattr(module, SETTINGS[name])(), CollectorRegistry())
        return built
    finally:
        if old is None:
            os.environ.pop("SEISMO_DATA_DIR")
        else:
            os.environ["SEISMO_DATA_DIR"] = old


def served_document(app) -> dict:
    with ServedApp(app) as client:
        r = client.get("/openapi.json")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        return r.json()


@pytest.fixture(scope="module")
def documents(apps) -> dict[str, dict]:
    return {name: served_document(app) for name, app in apps.items()}


@pytest.mark.parametrize("service", SERVICES)
def test_document_is_valid_openapi_3_1(documents, service):
    doc = documents[service]
    validate(doc)  # raises naming the first problem
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == f"Seismo {service}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_is_documented_and_every_operation_is_a_route(apps, documents, service):
    routes = {(r.path, m) for r in apps[service].routes for m in r.methods if m != "HEAD"}
    documented = {(path, method.upper()) for path, ops in documents[service]["paths"].items() for method in ops}
    assert routes == documented, f"undocumented: {routes - documented}; documented but not served: {documented - routes}"


# The predict paths stay raw for speed (their documents describe the V1, V2 and Seldon codecs' input).
HOT_BODIES = {("POST", "/v1/models/{model_name}:predict"), ("POST", "/v2/models/{model_name}/infer"),
              ("POST", "/v2/models/{model_name}/versions/{version}/infer"), ("POST", "/api/v1.0/predictions")}


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_parses_its_query_and_body_with_the_models_its_operation_documents(apps, service):
    """One definition per type: the API model an operation documents is the one its route parses with
    (event bodies have no model: a CloudEvent's data is the model's payload)."""
    app = apps[service]
    operations = {(op.method, op.path): op for op in app.state.operations}
    queries = bodies = 0
    for route in app.routes:
        for method in route.methods - {"HEAD"}:
            operation = operations.get((method, route.path))
            documented = operation.query if operation is not None else None
            assert getattr(route.endpoint, "query_model", None) is documented, f"{method} {route.path} parses its query another way"
            queries += documented is not None
            if (method, route.path) in HOT_BODIES:
                continue
            body = operation.body.model if operation is not None and operation.body is not None else None
            assert getattr(route.endpoint, "body_model", None) is body, f"{method} {route.path} parses its body another way"
            bodies += body is not None
    assert queries == {"logger": 5, "metrics": 3}.get(service, 0)
    assert bodies == {"model": 1, "metrics": 2, "explainer": 1}.get(service, 0)


def test_feedback_is_parsed_by_its_documented_model():
    """The feedback models refuse what the feedback parser refuses (their validator is it), and a refused
    item of an array is answered on its own."""
    from seismo.services.api import parse_body
    from seismo.services.api.metrics import Feedback, FeedbackOrArray, Refused
    from seismo.services.api.model import SeldonFeedback

    assert parse_body(Feedback, {"prediction_id": "p-1", "truth": [[0, 1]]}).parsed.truth.shape == (1, 2)
    assert parse_body(SeldonFeedback, {"response": {"meta": {"puid": "p-2"}}, "truth": 1}).parsed.prediction_id == "p-2"
    for bad, message in (({"truth": [[1], [2, 3]]}, "rectangular"), ({"prediction_id": "a/b", "truth": 1}, "cannot be a prediction id"),
                         ({"prediction_id": "p", "truth": 1, "holdout": "yes"}, "'holdout'"), ([], "'truth'")):
        with pytest.raises(ValueError, match=message):
            parse_body(Feedback, bad)
    items = parse_body(FeedbackOrArray, [{"prediction_id": "p", "truth": 1}, {"truth": 1}]).root
    assert isinstance(items[0], Feedback) and isinstance(items[1], Refused) and "prediction_id" in items[1].message
    # An array over the limit is refused before any item is parsed (a 10 MiB array of tiny items took seconds).
    from seismo.protocol.limits import BodyTooLarge

    with pytest.raises(BodyTooLarge, match="3 feedback items in one request; at most 2"):
        parse_body(FeedbackOrArray, [{"truth": 1}] * 3, context={"max_items": 2})


def test_answers_the_domain_writes_have_exactly_the_documented_fields(apps):
    """Answers are written by the domain types (records and explanations are hot or large): their keys are
    the documented model's fields, so neither can gain or lose one alone."""
    from seismo.explain.methods import Explanation
    from seismo.services.api import broker, explainer, logger
    from seismo.store import Record, record_to_json
    from seismo.store.base import DeadLetter

    def fields(model) -> set[str]:
        return {info.alias or name for name, info in model.model_fields.items()}

    assert set(record_to_json(Record("p-1", "m"))) == fields(logger.Record)
    assert set(DeadLetter("k", "e-1", "t", "m", 1.0, "500", "http://drift/", b"{}").to_json()) == fields(logger.DeadLetter)
    anchors = Explanation("anchors", 1, 10, 1, False, 0.5, None, True, 0.97, 0.3)
    shap = Explanation("kernel_shap", 1, 10, 1, False, 0.5, None)
    required = {name for name, info in explainer.Explanation.model_fields.items() if info.is_required()}
    assert set({"model": "m", **anchors.to_json()}) == fields(explainer.Explanation)
    assert required <= set({"model": "m", **shap.to_json()}) <= fields(explainer.Explanation)
    with ServedApp(apps["broker"]) as client:
        triggers = client.get("/v1/triggers").json()["triggers"]
    assert triggers and all(set(t) == fields(broker.Trigger) and set(t["filter"]) == fields(broker.TriggerFilter)
                            and set(t["subscriber"]) == fields(broker.Subscriber) for t in triggers)


def test_a_broken_document_fails_validation(documents):
    """The validator is not a no-op: a response without a description is refused."""
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    broken = json.loads(json.dumps(documents["logger"]))
    del broken["paths"]["/v1/records"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_openapi_is_open_when_auth_is_on(monkeypatch, tmp_path):
    from seismo.services.logger import LoggerSettings, create_app

    monkeypatch.setenv("SEISMO_AUTH_TOKENS", "secret")
    with ServedApp(create_app(LoggerSettings(sqlite_path=tmp_path / "r.db"), CollectorRegistry())) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/v1/records").status_code == 401


# --- the README's examples against the documents ---------------------------------------------------------------

def schema_validator(doc: dict, schema: dict) -> jsonschema.protocols.Validator:
    """A validator for `schema` that resolves `#/components/schemas/...` in `doc`."""
    resolver_doc = {**schema, "components": doc["components"]}
    return jsonschema.Draft202012Validator(resolver_doc)


def coerce(value: str, schema: dict):
    """A query string value as the type its parameter schema asks for (they arrive as text)."""
    types = {s.get("type") for s in schema.get("anyOf", [schema])}
    if "integer" in types and value.lstrip("-").isdigit():
        return int(value)
    return value


def test_the_docs_have_curl_examples():
    assert len(doc_curls()) >= 10


@pytest.mark.parametrize("url,method,data", doc_curls(), ids=lambda v: str(v)[:60] if v else "")
def test_documented_curl_example_validates(documents, url, method, data):
    parts = urlsplit("http://" + url)
    doc = documents[service_at(parts.port)]
    op = operation_for(doc, method, parts.path)
    params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
    for name, value in parse_qsl(parts.query):
        assert name in params, f"{url}: query parameter {name!r} is not documented (documented: {sorted(params)})"
        jsonschema.validate(coerce(value, params[name]["schema"]), params[name]["schema"])
    if data is not None and data.lstrip().startswith("{") and "$(" not in data:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        errors = list(schema_validator(doc, schema).iter_errors(json.loads(data)))
        assert not errors, f"{url}: {errors[0].message}"


def test_a_wrong_documented_body_would_fail(documents):
    """The body check can fail: feedback without truth, an explain request with two instances."""
    metrics = operation_for(documents["metrics"], "POST", "/feedback")["requestBody"]["content"]["application/json"]["schema"]
    assert list(schema_validator(documents["metrics"], metrics).iter_errors({"prediction_id": "x"}))
    explain = operation_for(documents["explainer"], "POST", "/v1/models/m:explain")["requestBody"]["content"]["application/json"]["schema"]
    assert list(schema_validator(documents["explainer"], explain).iter_errors({"instances": [[1], [2]]}))


def api_table_rows() -> list[tuple[str, str, str]]:
    """(service, method, path) of each HTTP row of the API reference's table (paths with `[...]` expanded)."""
    text = (ROOT / "docs" / "reference" / "api.md").read_text()
    section = text.split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 3 or cells[0] not in SERVICES:
            continue
        for method, path in re.findall(r"`(GET|POST) (/[^`?]*)", cells[1]):
            paths = [path]
            if "[" in path:  # `/v2/models/{m}[/versions/{v}]/infer`: both forms
                paths = [re.sub(r"\[.*?\]", "", path), path.replace("[", "").replace("]", "")]
            for extra in re.findall(r", `?(/[^`,]+)`?", cells[1]) if method == "GET" else []:
                paths.append(extra)
            rows.extend((cells[0], method, p) for p in paths)
    return rows


def test_the_api_reference_table_lists_documented_operations(documents):
    rows = api_table_rows()
    assert len(rows) >= 25
    for service, method, path in rows:
        concrete = re.sub(r"{\w+}", "x", path)
        operation_for(documents[service], method, concrete)


def body_errors(documents, service: str, method: str, path: str, body) -> list:
    doc = documents[service]
    schema = operation_for(doc, method, path)["requestBody"]["content"]["application/json"]["schema"]
    return list(schema_validator(doc, schema).iter_errors(body))


def header(documents, service: str, path: str, name: str) -> dict:
    return next(p for p in operation_for(documents[service], "POST", path)["parameters"] if p["in"] == "header" and p["name"] == name)


def test_documents_state_what_the_parsers_refuse(documents):
    """What schemathesis found accepted by a document and refused by its service: truth and responses in no
    protocol, a deployment's feedback that names no prediction, events without their attributes or of a
    type the ingress does not take."""
    for truth in ({}, [], {"predictions": []}, {"data": {}}, "x"):
        assert body_errors(documents, "metrics", "POST", "/feedback", {"prediction_id": "p", "truth": truth}), truth
    assert not body_errors(documents, "metrics", "POST", "/feedback", {"prediction_id": "p", "truth": {"data": {"ndarray": [[1]]}}})
    assert body_errors(documents, "metrics", "POST", "/feedback", {"response": {}, "truth": 1})
    assert body_errors(documents, "metrics", "POST", "/feedback", {"prediction_id": "a/b", "truth": 1})
    assert not body_errors(documents, "metrics", "POST", "/feedback", {"response": {"meta": {"puid": "p"}}, "truth": 1})
    assert body_errors(documents, "model", "POST", "/api/v1.0/feedback", {"response": {"data": {"ndarray": [[1]]}}, "truth": [1]})
    for service, path in (("logger", "/"), ("broker", "/"), ("metrics", "/"), ("drift", "/"), ("outlier", "/"), ("logger", "/v1/dead-letters")):
        for name in ("ce-id", "ce-type", "ce-source", "ce-specversion"):
            assert header(documents, service, path, name)["required"], (service, path, name)
    assert header(documents, "metrics", "/", "ce-type")["schema"] == {"const": "io.seldon.serving.feedback", "type": "string"}
    assert "org.kubeflow.serving.inference.request" in header(documents, "drift", "/", "ce-type")["schema"]["enum"]
    assert "enum" not in header(documents, "broker", "/", "ce-type")["schema"]
