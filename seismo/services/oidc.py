"""Knative's sender identity (OIDC): the JWTs Knative's broker sends, checked against the cluster's keys.

With Knative's `authentication-oidc` feature on, the broker asks the Kubernetes API for a token for each
Trigger's own service account (`<trigger>-oidc-eventing.knative.dev-trigger`) with the subscriber's
audience (the Trigger's `subscriber.audience`), and sends it as `Authorization: Bearer <jwt>`. Seismo
checks the signature against the issuer's keys (its discovery document's `jwks_uri`, or
SEISMO_AUTH_OIDC_JWKS_URL), the issuer, the audience, the expiry, and maps the subject to an identity
through SEISMO_AUTH_OIDC_SUBJECTS. In a pod the service account's CA and token are used to read the keys
(the API server serves them to authenticated callers).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
POD_CREDENTIALS = Path("/var/run/secrets/kubernetes.io/serviceaccount")
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
KEYS_TTL_SECONDS = 300.0
CACHE_SIZE = 1024


def parse_subjects(text: str) -> list[tuple[str, str]]:
    """`identity=subject-pattern` pairs, in order; ValueError naming a malformed one."""
    pairs = []
    for number, entry in enumerate((e for e in text.split(",") if e.strip()), 1):
        identity, sep, pattern = entry.partition("=")
        if not sep or not identity.strip() or not pattern.strip():
            raise ValueError(f"SEISMO_AUTH_OIDC_SUBJECTS: entry {number} ({entry.strip()!r}) is not identity=subject")
        pairs.append((identity.strip(), pattern.strip()))
    return pairs


class OidcVerifier:
    def __init__(
        self, issuer: str, audience: str, subjects: list[tuple[str, str]], jwks_url: str = "", credentials: Path = POD_CREDENTIALS
    ):
        if not audience:
            raise ValueError("SEISMO_AUTH_OIDC_AUDIENCE is required with SEISMO_AUTH_OIDC_ISSUER (the Trigger's subscriber.audience)")
        self.issuer, self.audience, self.subjects = issuer, audience, subjects
        self.jwks_url = jwks_url
        self.credentials = credentials
        self._keys: dict[str, Any] = {}
        self._keys_read = 0.0
        self._verified: dict[str, tuple[str, float]] = {}  # token -> (identity, expiry): one RSA check per token

    @classmethod
    def from_settings(cls, settings) -> OidcVerifier:
        return cls(settings.oidc_issuer.rstrip("/"), settings.oidc_audience, parse_subjects(settings.oidc_subjects),
                   settings.oidc_jwks_url, settings.oidc_credentials_dir)

    # --- the keys ---------------------------------------------------------------------------------
    def _get_json(self, url: str) -> Any:
        context = None
        headers = {"accept": "application/json"}
        if url.startswith("https://"):
            ca = self.credentials / "ca.crt"
            context = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)
        token = self.credentials / "token"
        if token.exists():  # the API server serves its keys to authenticated callers
            headers["authorization"] = f"Bearer {token.read_text().strip()}"
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310 (configured URL)
            return json.loads(response.read(1024 * 1024))

    def _refresh_keys(self) -> None:
        import jwt

        url = self.jwks_url
        if not url:
            url = self._get_json(f"{self.issuer}/.well-known/openid-configuration")["jwks_uri"]
        keys = jwt.PyJWKSet.from_dict(self._get_json(url))
        self._keys = {key.key_id or "": key for key in keys.keys}
        self._keys_read = time.monotonic()

    def _key(self, kid: str):
        stale = time.monotonic() - self._keys_read > KEYS_TTL_SECONDS
        if stale or kid not in self._keys:  # an unknown kid: the issuer may have rotated its keys
            if time.monotonic() - self._keys_read > 1.0 or not self._keys:  # at most one read a second
                self._refresh_keys()
        return self._keys.get(kid)

    # --- tokens -----------------------------------------------------------------------------------
    def identify_sync(self, token: str) -> str | None:
        """The identity of a valid token, or None (logged with the reason; the caller answers 403)."""
        import jwt

        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        try:
            header = jwt.get_unverified_header(token)
            key = self._key(header.get("kid") or "")
            if key is None:
                raise jwt.InvalidTokenError(f"no key {header.get('kid')!r} at the issuer")
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
                leeway=30,
            )
        except Exception as exc:  # jwt's errors, and a key set that cannot be read: the token is refused
            log.warning("oidc: token refused: %s", str(exc)[:300])
            return None
        subject = str(claims["sub"])
        identity = next((who for who, pattern in self.subjects if fnmatch.fnmatchcase(subject, pattern)), None)
        if identity is None:
            log.warning("oidc: subject %r matches no SEISMO_AUTH_OIDC_SUBJECTS entry", subject[:200])
            return None
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (identity, float(claims["exp"]))
        return identity

    async def identify(self, token: str) -> str | None:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        return await asyncio.to_thread(self.identify_sync, token)
