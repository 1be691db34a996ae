"""Knative's sender identity: JWTs signed by a key the issuer publishes (discovery document and JWKS
served over real HTTP here, as the Kubernetes API server serves them), checked for signature, issuer,
audience, expiry and subject before an event is taken."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from seismo.services.auth import SENDER_SCOPE_KEY, AuthSettings, auth_middleware
from seismo.services.oidc import OidcVerifier, parse_subjects

AUDIENCE = "seismo-logger"
TRIGGER_SUBJECT = "system:serviceaccount:seismo:logger-drift-oidc-eventing.knative.dev-trigger"


class Issuer:
    """An OIDC issuer on a loopback port: its discovery document and its key set (which may rotate)."""

    def __init__(self):
        self.keys = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.reads = 0
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/openid/v1/jwks"}
                elif self.path == "/openid/v1/jwks":
                    issuer.reads += 1
                    body = {"keys": [{**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig",
                                      "alg": "RS256"} for kid, key in issuer.keys.items()]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, kid: str = "k1", **claims) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": TRIGGER_SUBJECT, "iat": now, "exp": now + 600} | claims
        return jwt.encode({k: v for k, v in body.items() if v is not None}, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer():
    server = Issuer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def verifier(issuer: Issuer, tmp_path) -> OidcVerifier:
    return OidcVerifier(issuer.url, AUDIENCE, parse_subjects("broker=system:serviceaccount:seismo:*-oidc-eventing.knative.dev-trigger"),
                        credentials=tmp_path)  # no pod credentials here


def test_a_trigger_token_is_the_broker(issuer, tmp_path):
    check = verifier(issuer, tmp_path)
    assert check.identify_sync(issuer.token()) == "broker"


@pytest.mark.parametrize("claims", [{"aud": "seismo-metrics"}, {"iss": "https://elsewhere"}, {"exp": int(time.time()) - 120},
                                    {"sub": "system:serviceaccount:seismo:default"}, {"sub": "system:serviceaccount:other:x-oidc-eventing.knative.dev-trigger"},
                                    {"exp": None}])
def test_tokens_that_are_not_for_us_are_refused(issuer, tmp_path, claims):
    assert verifier(issuer, tmp_path).identify_sync(issuer.token(**claims)) is None


def test_a_token_signed_by_another_key_is_refused(issuer, tmp_path):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    forged = jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": TRIGGER_SUBJECT, "iat": now, "exp": now + 600}, other,
                        algorithm="RS256", headers={"kid": "k1"})
    assert verifier(issuer, tmp_path).identify_sync(forged) is None
    unsigned = jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": TRIGGER_SUBJECT, "exp": now + 600}, None, algorithm="none")
    assert verifier(issuer, tmp_path).identify_sync(unsigned) is None


def test_a_rotated_key_is_fetched_once(issuer, tmp_path):
    check = verifier(issuer, tmp_path)
    assert check.identify_sync(issuer.token()) == "broker"
    issuer.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    time.sleep(1.1)  # key reads are at most one a second
    reads = issuer.reads
    token = issuer.token("k2")
    assert check.identify_sync(token) == "broker" and issuer.reads == reads + 1
    assert check.identify_sync(token) == "broker" and issuer.reads == reads + 1  # verified tokens are remembered


def test_the_middleware_takes_oidc_tokens_on_event_paths_only(issuer):
    seen = []

    async def route(request: Request):
        seen.append(request.scope.get(SENDER_SCOPE_KEY))
        return JSONResponse({})

    settings = AuthSettings(tokens="client-token", oidc_issuer=issuer.url, oidc_audience=AUDIENCE,
                            oidc_subjects="broker=system:serviceaccount:seismo:*-oidc-eventing.knative.dev-trigger")
    app = Starlette(routes=[Route("/", route, methods=["POST"]), Route("/v1/records", route)],
                    middleware=auth_middleware(event_paths=("/",), settings=settings))

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            token = {"authorization": f"Bearer {issuer.token()}"}
            assert (await client.post("/", headers=token)).status_code == 200
            assert (await client.get("/v1/records", headers=token)).status_code == 403  # reads take client tokens
            assert (await client.post("/", headers={"authorization": f"Bearer {issuer.token(aud='x')}"})).status_code == 403
            assert (await client.post("/")).status_code == 401

    asyncio.run(run())
    assert seen == ["broker"]


def test_sender_tokens_follow_their_files(tmp_path):
    """A projected token (SEISMO_AUTH_SEND_TOKEN_FILE) and the senders' Secret rotate without a restart."""
    import os

    from seismo.services.auth import TokenSet, sender_token

    token = tmp_path / "token"
    token.write_text("first-jwt\n")
    send = sender_token(AuthSettings(send_token_file=token), "model")
    assert send() == "first-jwt"
    token.write_text("second-jwt\n")
    os.utime(token, (time.time() + 5, time.time() + 5))  # a new mtime even within the clock's resolution
    assert send() == "second-jwt"
    pairs = tmp_path / "senders"
    pairs.write_text("model=m1\nbroker=b1\n")
    tokens = TokenSet(AuthSettings(senders_file=pairs))
    assert tokens.identify("m1") == "model" and tokens.identify("b1") == "broker" and tokens.identify("x") is None
    assert sender_token(AuthSettings(senders_file=pairs), "broker")() == "b1"
    pairs.write_text("model=m2\nnot a pair\n")
    os.utime(pairs, (time.time() + 10, time.time() + 10))
    assert tokens.identify("m2") == "model" and tokens.identify("m1") is None  # the good pair kept, the bad line skipped
    with pytest.raises(ValueError, match="SEISMO_AUTH_SEND_TOKEN_FILE"):
        sender_token(AuthSettings(send_token_file=tmp_path / "missing"), "model")
