"""Optional bearer-token auth, the same for every service.

Off unless tokens are configured (`SEISMO_AUTH_TOKENS`, comma-separated, or `SEISMO_AUTH_TOKENS_FILE`,
one token per line, re-read when the file changes: a mounted Secret rotates without a restart).
Several tokens may be valid at once, for rotation. When on, every route of a service needs
`Authorization: Bearer <token>` except `/healthz`, `/readyz` and `/openapi.json` (always open), `/metrics` (open unless
`SEISMO_AUTH_METRICS=protected`) and the CloudEvents ingress the broker delivers to (open unless
`SEISMO_AUTH_EVENTS=protected`: Knative's broker sends no bearer token, so on Kubernetes a
NetworkPolicy guards that path). The model server's routes stay open, as KServe's do, but for
`/metrics` (SEISMO_AUTH_METRICS) and the explainer's traffic marker.
No header: 401 with `WWW-Authenticate: Bearer`; a token that matches none: 403.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.middleware import Middleware

log = logging.getLogger(__name__)
ALWAYS_OPEN = frozenset({"/healthz", "/readyz", "/openapi.json"})


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_AUTH_")

    tokens: str = ""
    """Accepted bearer tokens, comma-separated. Empty (and no tokens file): auth is off."""
    tokens_file: Path | None = None
    """A file with one accepted token per line (a mounted Secret); read again when it changes."""
    metrics: Literal["open", "protected"] = "open"
    """Whether `/metrics` needs a token."""
    events: Literal["open", "protected"] = "open"
    """Whether the CloudEvents ingress (`POST /` of the logger, detectors and metrics server, the broker's ingress) needs a token."""


class TokenSet:
    """The accepted tokens: the setting plus the file's lines, the file re-read when its mtime changes."""

    def __init__(self, settings: AuthSettings):
        self.settings = settings
        self._static = [t.strip() for t in settings.tokens.split(",") if t.strip()]
        if settings.tokens.strip() and not self._static:  # "," or " , ": meant to turn auth on, would turn it off
            raise ValueError("SEISMO_AUTH_TOKENS is set but holds no token (only commas and spaces); "
                             "refusing to start with auth off: name a token or unset it")
        self._file_tokens: list[str] = []
        self._file_mtime: float | None = None
        if settings.tokens_file is not None and not settings.tokens_file.exists():
            raise ValueError(f"SEISMO_AUTH_TOKENS_FILE {settings.tokens_file} does not exist")

    def current(self) -> list[str]:
        path = self.settings.tokens_file
        if path is not None:
            try:
                mtime = path.stat().st_mtime
                if mtime != self._file_mtime:
                    self._file_tokens = [line.strip() for line in path.read_text().splitlines() if line.strip()]
                    self._file_mtime = mtime
            except OSError as exc:  # keep the last tokens read: a Secret being swapped is briefly missing
                log.warning("auth: cannot read tokens file %s: %s", path, exc)
        return self._static + self._file_tokens

    @property
    def enabled(self) -> bool:
        return bool(self._static) or self.settings.tokens_file is not None

    def accepts(self, token: str) -> bool:
        given = token.encode()
        matched = False
        for candidate in self.current():  # compare with every token: the time taken says nothing
            matched |= hmac.compare_digest(given, candidate.encode())
        return matched


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_authorized(headers: Mapping[str, str], tokens: TokenSet) -> bool:
    """True when auth is off or the request's headers carry an accepted token."""
    if not tokens.enabled:
        return True
    token = bearer_token(headers.get("authorization"))
    return token is not None and tokens.accepts(token)


class BearerAuth:
    """Pure ASGI middleware: refuses unauthenticated requests before any route reads the body."""

    def __init__(self, app, tokens: TokenSet, is_open: Callable[[str, str], bool]):
        self.app, self.tokens, self.is_open = app, tokens, is_open

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not self.tokens.enabled or self.is_open(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        from seismo.services.common import error

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = bearer_token(headers.get("authorization"))
        if token is None:
            response = error(401, "this endpoint needs 'Authorization: Bearer <token>' (auth is on: SEISMO_AUTH_TOKENS)",
                             headers={"WWW-Authenticate": 'Bearer realm="seismo"'})
        elif not self.tokens.accepts(token):
            response = error(403, "the bearer token is not one this service accepts")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def auth_middleware(event_paths: Iterable[str] = ("/",), open_prefixes: Iterable[str] = (),
                    settings: AuthSettings | None = None) -> list[Middleware]:
    """The middleware list for a service's Starlette app (empty work when auth is off)."""
    settings = settings or AuthSettings()
    tokens = TokenSet(settings)
    events = frozenset(event_paths)
    prefixes = tuple(open_prefixes)

    def is_open(method: str, path: str) -> bool:
        if path in ALWAYS_OPEN:
            return True
        if path == "/metrics":  # before the open prefixes: SEISMO_AUTH_METRICS holds for every service
            return settings.metrics == "open"
        if path.startswith(prefixes):
            return True
        if method == "POST" and (path in events or "*" in events):
            return settings.events == "open"
        return False

    return [Middleware(BearerAuth, tokens=tokens, is_open=is_open)]
