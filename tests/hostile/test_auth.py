"""Bearer-token auth on a real logger process: open health, 401 without a token, 403 with a wrong
one, rotation through the tokens file, and the event ingress protected by default or open by setting
(tests/hostile/test_event_identity.py checks who may send which events)."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from helpers import free_port, start_service, stop_process, wait_ready, wait_until

pytestmark = pytest.mark.integration

EVENT = {"ce-specversion": "1.0", "ce-id": "auth-1", "ce-source": "http://test/", "ce-type": "org.kubeflow.serving.inference.request",
         "ce-inferenceservicename": "m", "content-type": "application/json"}


def test_logger_with_tokens(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("first-token\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"SEISMO_LOGGER_SQLITE_PATH": str(tmp_path / "r.db"), "SEISMO_AUTH_TOKENS": "static-token",
           "SEISMO_AUTH_TOKENS_FILE": str(tokens), "SEISMO_AUTH_METRICS": "protected"}
    log = tmp_path / "logger.log"
    process = start_service("logger", port, env, log)
    try:
        wait_ready(url, process, log_path=log)
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
            missing = client.get("/v1/records")
            assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in missing.json()["error"]
            assert client.get("/v1/records", headers={"authorization": "Bearer nope"}).status_code == 403
            assert client.get("/v1/records", headers={"authorization": "Basic Zm9vOmJhcg=="}).status_code == 401
            assert client.get("/metrics").status_code == 401  # protected by setting
            for token in ("static-token", "first-token"):
                assert client.get("/v1/records", headers={"authorization": f"Bearer {token}"}).status_code == 200
            # the event ingress needs an identity too, and a client token may not send a model's request
            assert client.post("/", headers=EVENT, content=orjson.dumps({"instances": [[1]]})).status_code == 401
            forged = client.post("/", headers={**EVENT, "authorization": "Bearer static-token"}, content=orjson.dumps({"instances": [[1]]}))
            assert forged.status_code == 403 and "accepted only from model" in forged.json()["error"]
            # rotation: the file is read again when it changes
            time.sleep(0.05)
            tokens.write_text("second-token\n")
            wait_until(lambda: client.get("/v1/records", headers={"authorization": "Bearer second-token"}).status_code == 200, 10,
                       message="the rotated token accepted")
            assert client.get("/v1/records", headers={"authorization": "Bearer first-token"}).status_code == 403
    finally:
        stop_process(process)


def test_event_ingress_open_by_setting(tmp_path):
    """SEISMO_AUTH_EVENTS=open: the old behaviour, for a Knative broker without OIDC behind a NetworkPolicy."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"SEISMO_LOGGER_SQLITE_PATH": str(tmp_path / "r.db"), "SEISMO_AUTH_TOKENS": "t", "SEISMO_AUTH_EVENTS": "open"}
    log = tmp_path / "logger.log"
    process = start_service("logger", port, env, log)
    try:
        wait_ready(url, process, log_path=log)
        body = orjson.dumps({"instances": [[1]]})
        assert httpx.post(f"{url}/", headers=EVENT, content=body).status_code == 200
        assert httpx.get(f"{url}/v1/records").status_code == 401  # the API stays protected
        assert httpx.get(f"{url}/metrics").status_code == 200  # open by default
        assert "SEISMO_AUTH_EVENTS=open" in log.read_text()
    finally:
        stop_process(process)


def test_a_token_setting_without_tokens_stops_the_service_at_start(tmp_path):
    """`SEISMO_AUTH_TOKENS=","` used to turn auth off silently (fail open); now the service refuses to start."""
    env = {"SEISMO_LOGGER_SQLITE_PATH": str(tmp_path / "r.db"), "SEISMO_AUTH_TOKENS": " , "}
    process = start_service("logger", free_port(), env, tmp_path / "logger.log")
    assert process.wait(60) == 2
    assert "SEISMO_AUTH_TOKENS is set but holds no token" in (tmp_path / "logger.log").read_text()
