"""The curl examples of the README and docs/, run in order against the suite's one real stack, each answer validated against
the serving service's `/openapi.json`: the documents describe what the services really answer.
(It lives beside the hostile suite to share its stack: starting another costs a minute.)"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import jsonschema
import numpy as np
from helpers import doc_curls, operation_for, wait_until

from seismo.local import LOCAL_PORTS
from seismo.topology import SERVICE_PORTS

STACK_NAME = {port: name for name, port in {**SERVICE_PORTS, **LOCAL_PORTS}.items()}


def response_schema(doc: dict, method: str, path: str, status: int) -> dict:
    """The JSON schema `doc` gives the answer of `method path` with `status` ({} for a body of no fixed shape)."""
    answer = operation_for(doc, method, path)["responses"].get(str(status))
    assert answer is not None, f"{method} {path} answered {status}, which its document does not list"
    return answer.get("content", {}).get("application/json", {}).get("schema", {})


def answer_looks_like_success(method: str, path: str, r) -> None:
    """A first output a user can trust: feedback for ids that were predicted (never left pending), an
    explanation that found its anchor, KernelSHAP with the samples it asked for."""
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
    if path.endswith("feedback") and isinstance(body, dict):
        assert body.get("status") != "pending" and not body.get("pending"), f"{path}: feedback for a prediction that was never made: {body}"
    if path.endswith(":explain") and isinstance(body, dict):
        assert body.get("anchor_found", True) and not body["budget_exhausted"], f"{path}: {body.get('reason')}"


def test_documented_examples_answer_as_documented(s):
    docs: dict[str, dict] = {}
    prediction_id = None
    predicted: list[str] = []
    checked = 0
    for url, method, data in doc_curls():
        parts = urlsplit("http://" + url)
        name = STACK_NAME[parts.port]
        base = s.url(name)
        if name not in docs:
            docs[name] = s.client.get(f"{base}/openapi.json").json()
        path = parts.path.replace("PREDICTION_ID", prediction_id or "PREDICTION_ID")
        target = f"{base}{path}" + (f"?{parts.query}" if parts.query else "")
        if data is not None and "$(" in data:  # the image example builds its body in the shell: the same here
            body = json.dumps({"instances": [np.full((32, 32, 3), 0.5).tolist()]}).encode()
        else:
            body = None if data is None else data.replace("PREDICTION_ID", prediction_id or "").encode()
        if path.endswith("feedback"):  # as a user a moment later: the predictions are stored, so feedback joins at once
            wait_until(lambda: all(s.complete(p) for p in predicted), 60, message=f"records of {predicted}")
        if path.startswith("/v1/records/"):  # events reach the logger through the broker: wait for the record
            wait_until(lambda url=target: s.client.get(url).status_code == 200, 60, message=f"record {path}")
        r = s.client.request(method, target, content=body, headers={"content-type": "application/json"} if body else {},
                             timeout=120)
        assert r.status_code < 300, f"{method} {url}: {r.status_code} {r.text[:300]}"
        if "x-prediction-id" in r.headers:
            predicted.append(r.headers["x-prediction-id"])
            prediction_id = prediction_id or predicted[0]
        answer_looks_like_success(method, path, r)
        schema = response_schema(docs[name], method, path, r.status_code)
        if schema:
            errors = list(jsonschema.Draft202012Validator({**schema, "components": docs[name]["components"]}).iter_errors(r.json()))
            assert not errors, f"{method} {url}: {errors[0].json_path}: {errors[0].message}"
            checked += 1
    assert prediction_id is not None and checked >= 15
    # Every prediction the examples made is stored completely before the next case looks at the store.
    wait_until(lambda: all(s.complete(p) for p in predicted), 60, message=f"records of {predicted}")
