"""Optional bearer-token auth, the same for every service, and who may send which events.

Off unless tokens are configured (`SEISMO_AUTH_TOKENS`, comma-separated, or `SEISMO_AUTH_TOKENS_FILE`,
one token per line, re-read when the file changes: a mounted Secret rotates without a restart).
Several tokens may be valid at once, for rotation. When on, every route of a service needs
`Authorization: Bearer <token>` except `/healthz`, `/readyz` and `/openapi.json` (always open) and
`/metrics` (open unless `SEISMO_AUTH_METRICS=protected`). The model server's routes stay open, as
KServe's do, but for `/metrics` (SEISMO_AUTH_METRICS) and the explainer's traffic marker.
No header: 401 with `WWW-Authenticate: Bearer`; a token that matches none: 403.

Events have senders (seismo.services.senders): with auth on, the CloudEvents ingress of the broker
and of every subscriber takes events only from an identity, and each kind of event only from the
identities that produce it. Identities come from sender tokens (`SEISMO_AUTH_SENDERS`,
`identity=token` pairs: `model`, `broker`, `drift`, `outlier`, `feedback`), from the client tokens
above (identity `client`: feedback, as `POST /feedback` takes it), or on Kubernetes from Knative's
OIDC sender identity (seismo.services.oidc). `SEISMO_AUTH_EVENTS=open` leaves the event ingress open
(the old default: only for a Knative broker without OIDC behind a NetworkPolicy).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
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
    events: Literal["protected", "open"] = "protected"
    """Whether the CloudEvents ingress (`POST /` of the logger, detectors and metrics server, the broker's
    ingress) needs a sender identity when auth is on. `open` only where a NetworkPolicy is the guard."""
    senders: str = ""
    """Sender tokens, `identity=token` pairs, comma-separated (identities: model, broker, drift, outlier,
    feedback). Each service sends its events with its own identity's token and accepts each kind of
    event only from the identities that produce it."""
    senders_file: Path | None = None
    """The same pairs, one per line (a mounted Secret); read again when it changes."""
    identity: str = ""
    """This service's identity for the events it sends (default: the service's own name)."""
    send_token_file: Path | None = None
    """A file holding the bearer token this service sends with its events, read again when it changes:
    on Kubernetes a projected service-account token for the Knative broker's audience (OIDC)."""
    oidc_issuer: str = ""
    """Knative's sender identity: the issuer of the OIDC tokens Knative's broker sends (the cluster's
    service-account issuer, e.g. https://kubernetes.default.svc.cluster.local). Empty: OIDC is off."""
    oidc_jwks_url: str = ""
    """Where the issuer's signing keys are (default: the `jwks_uri` of the issuer's discovery document)."""
    oidc_audience: str = ""
    """The audience this service's tokens must name (the Trigger's `subscriber.audience`)."""
    oidc_credentials_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    """A `token` and `ca.crt` for reading the keys from the Kubernetes API server (a projected volume)."""
    oidc_subjects: str = "broker=system:serviceaccount:*:*-oidc-eventing.knative.dev-trigger"
    """`identity=subject` pairs (`*` matches any run of characters): which token subjects are which
    sender. The default takes Knative's Trigger identities as the broker."""


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class WatchedFile:
    """A file's non-empty lines, read again when its mtime changes (a mounted Secret or a projected token
    rotates without a restart); while it cannot be read (being swapped), the last lines read."""

    def __init__(self, path: Path, setting: str):
        if not path.exists():
            raise ValueError(f"{setting} {path} does not exist")
        self.path = path
        self._mtime: float | None = None
        self._lines: list[str] = []

    def lines(self) -> list[str]:
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                self._lines, self._mtime = _lines(self.path), mtime
        except OSError as exc:
            log.warning("auth: cannot read %s: %s", self.path, exc)
        return self._lines


def parse_senders(entries: list[str], where: str) -> dict[str, str]:
    """`identity=token` pairs as {token: identity}; ValueError naming a malformed pair (never its token)."""
    out: dict[str, str] = {}
    for number, entry in enumerate(entries, 1):
        identity, sep, token = entry.partition("=")
        identity, token = identity.strip(), token.strip()
        if not sep or not token or not IDENTITY.fullmatch(identity):
            raise ValueError(f"{where}: entry {number} is not identity=token (identity: lower-case letters, digits, '-')")
        out[token] = identity
    return out


IDENTITY = re.compile(r"[a-z][a-z0-9-]{0,62}")
CLIENT = "client"
"""The identity of the client tokens (SEISMO_AUTH_TOKENS): people and tools."""


class TokenSet:
    """The accepted tokens and whose they are: client tokens (the setting plus the file's lines) and
    sender tokens (identity=token pairs), each file re-read when its mtime changes."""

    def __init__(self, settings: AuthSettings):
        self.settings = settings
        self._static = [t.strip() for t in settings.tokens.split(",") if t.strip()]
        if settings.tokens.strip() and not self._static:  # "," or " , ": meant to turn auth on, would turn it off
            raise ValueError(
                "SEISMO_AUTH_TOKENS is set but holds no token (only commas and spaces); "
                "refusing to start with auth off: name a token or unset it"
            )
        self._static_senders = parse_senders([e for e in settings.senders.split(",") if e.strip()], "SEISMO_AUTH_SENDERS")
        if settings.senders.strip() and not self._static_senders:
            raise ValueError("SEISMO_AUTH_SENDERS is set but holds no identity=token pair; refusing to start with auth off")
        self._tokens_file = WatchedFile(settings.tokens_file, "SEISMO_AUTH_TOKENS_FILE") if settings.tokens_file else None
        self._senders_file = WatchedFile(settings.senders_file, "SEISMO_AUTH_SENDERS_FILE") if settings.senders_file else None
        if self._senders_file is not None:
            parse_senders(self._senders_file.lines(), "SEISMO_AUTH_SENDERS_FILE")  # a malformed file stops the start

    def current(self) -> list[str]:
        """The client tokens."""
        return self._static + (self._tokens_file.lines() if self._tokens_file else [])

    def senders(self) -> dict[str, str]:
        """{token: identity} of the sender tokens (a malformed file line is skipped and logged)."""
        out = dict(self._static_senders)
        lines = self._senders_file.lines() if self._senders_file else []
        try:
            out.update(parse_senders(lines, "SEISMO_AUTH_SENDERS_FILE"))
        except ValueError as exc:
            log.warning("auth: %s; using the pairs before it", exc)
            for line in lines:
                with contextlib.suppress(ValueError):
                    out.update(parse_senders([line], ""))
        return out

    def token_for(self, identity: str) -> str | None:
        """This identity's sender token (the first configured), for the events a service sends."""
        return next((token for token, who in self.senders().items() if who == identity), None)

    @property
    def enabled(self) -> bool:
        s = self.settings
        return bool(self._static) or bool(self._static_senders) or s.tokens_file is not None or s.senders_file is not None

    def identify(self, token: str) -> str | None:
        """Whose token this is: `client`, a sender identity, or None when it matches none."""
        given = token.encode()
        found = None
        for candidate in self.current():  # compare with every token: the time taken says nothing
            if hmac.compare_digest(given, candidate.encode()):
                found = CLIENT
        for candidate, identity in self.senders().items():
            if hmac.compare_digest(given, candidate.encode()):
                found = found or identity
        return found

    def accepts(self, token: str) -> bool:
        """A client token (what the API routes take)."""
        return self.identify(token) == CLIENT


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_authorized(headers: Mapping[str, str], tokens: TokenSet) -> bool:
    """True when auth is off or the request's headers carry an accepted client token."""
    if not tokens.enabled:
        return True
    token = bearer_token(headers.get("authorization"))
    return token is not None and tokens.accepts(token)


SENDER_SCOPE_KEY = "seismo.sender"
"""Where the middleware leaves the identity of an event path's caller in the ASGI scope (absent: auth off)."""

Access = Literal["open", "events", "api"]


class BearerAuth:
    """Pure ASGI middleware: refuses unauthenticated requests before any route reads the body. On an
    event path it takes any identity (client, sender token, OIDC) and leaves it in the scope for the
    route to check against each event's kind; elsewhere only client tokens."""

    def __init__(self, app, tokens: TokenSet, access: Callable[[str, str], Access], oidc=None):
        self.app, self.tokens, self.access, self.oidc = app, tokens, access, oidc

    async def __call__(self, scope, receive, send) -> None:
        access = self.access(scope["method"], scope["path"]) if scope["type"] == "http" else "open"
        if access == "api" and not self.tokens.enabled:  # OIDC alone guards the event paths only
            access = "open"
        if access == "events" and not (self.tokens.enabled or self.oidc is not None):
            access = "open"
        if access == "open":
            await self.app(scope, receive, send)
            return
        from seismo.services.common import error

        token = None
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                token = bearer_token(value.decode("latin-1"))
                break
        identity = None if token is None else self.tokens.identify(token)
        if identity is None and token is not None and access == "events" and self.oidc is not None:
            identity = await self.oidc.identify(token)
        if token is None:
            response = error(
                401,
                "this endpoint needs 'Authorization: Bearer <token>' (auth is on: SEISMO_AUTH_TOKENS"
                + (", SEISMO_AUTH_SENDERS for events)" if access == "events" else ")"),
                headers={"WWW-Authenticate": 'Bearer realm="seismo"'},
            )
        elif identity is None:
            response = error(403, "the bearer token is not one this service accepts")
        elif access == "api" and identity != CLIENT:
            response = error(403, f"a sender token ({identity}) is for posting events only; this endpoint takes client tokens")
        else:
            scope[SENDER_SCOPE_KEY] = identity
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def auth_middleware(
    event_paths: Iterable[str] = ("/",), open_prefixes: Iterable[str] = (), settings: AuthSettings | None = None,
    protected_paths: Iterable[str] = (),
) -> list[Middleware]:
    """The middleware list for a service's Starlette app (empty work when auth is off). Paths under
    `open_prefixes` need no token, except `protected_paths` (the model server's feedback)."""
    from starlette.middleware import Middleware  # here: the cores import this module for tokens only

    settings = settings or AuthSettings()
    tokens = TokenSet(settings)
    events = frozenset(event_paths)
    prefixes = tuple(open_prefixes)
    protected = frozenset(protected_paths)
    oidc = None
    if settings.oidc_issuer:
        from seismo.services.oidc import OidcVerifier

        oidc = OidcVerifier.from_settings(settings)
    if (tokens.enabled or oidc) and settings.events == "open" and events:
        log.warning("auth: SEISMO_AUTH_EVENTS=open: the event ingress takes events from anyone who can reach it")

    def access(method: str, path: str) -> Access:
        if path in ALWAYS_OPEN:
            return "open"
        if path == "/metrics":  # before the open prefixes: SEISMO_AUTH_METRICS holds for every service
            return "open" if settings.metrics == "open" else "api"
        if method == "POST" and (path in events or "*" in events):
            return "open" if settings.events == "open" else "events"
        if path.startswith(prefixes) and path not in protected:
            return "open"
        return "api"

    return [Middleware(BearerAuth, tokens=tokens, access=access, oidc=oidc)]


def sender_token(settings: AuthSettings | None, default_identity: str) -> Callable[[], str | None]:
    """What a service sends as its bearer token on the events it posts: its identity's sender token
    (SEISMO_AUTH_IDENTITY, default the service's name), re-read on each call so rotation holds."""
    settings = settings or AuthSettings()
    if settings.send_token_file is not None:  # kubelet rotates projected tokens: re-read on change
        token_file = WatchedFile(settings.send_token_file, "SEISMO_AUTH_SEND_TOKEN_FILE")
        return lambda: next(iter(token_file.lines()), None)
    tokens = TokenSet(settings)
    identity = settings.identity or default_identity
    if not tokens.enabled:
        return lambda: None
    if tokens.token_for(identity) is None:
        log.warning("auth: no sender token for identity %r in SEISMO_AUTH_SENDERS: events this service sends will be refused", identity)
    return lambda: tokens.token_for(identity)
