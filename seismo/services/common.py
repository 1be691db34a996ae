"""What every service shares: JSON errors, body limits, health and metrics routes, the server runner."""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo import tracing
from seismo.config_files import one_of  # noqa: F401  (re-exported for the settings classes)
from seismo.protocol.limits import DEFAULT_MAX_BODY_BYTES, BodyTooLarge, loads  # noqa: F401  (re-exported)
from seismo.tasks import cancel_and_wait, stopped_tasks  # noqa: F401  (re-exported for the services)

log = logging.getLogger(__name__)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of every Seismo service (KServe and OIP both use `{"error": ...}`)."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# A body over the limit is read and thrown away (up to this much) before the 413 goes out: a client
# still sending when the server closes the connection sees a reset, not the 413 that says why.
_MAX_DISCARD_BYTES = 512 * 1024 * 1024


async def _discard_rest(request: Request, already: int) -> None:
    discarded = already
    try:
        async for chunk in request.stream():
            discarded += len(chunk)
            if discarded > _MAX_DISCARD_BYTES:
                return  # a client that keeps sending gets its connection closed after the 413
    except Exception:  # the client went away: nothing to answer
        return


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with BodyTooLarge (a 413) once over `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        await _discard_rest(request, 0)
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            chunks.clear()
            await _discard_rest(request, size)
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def header_dict(request: Request) -> dict[str, str]:
    """The request's headers as a plain dict (names lower-case; of a repeated header, the first, as
    Starlette's `Headers.get` answers): one pass, where each `Headers.get` scans every header."""
    headers: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def parse_json(body: bytes, what: str = "request body") -> Any:
    """JSON with the nesting limit of seismo.protocol.limits; ValueError (a 400) naming the problem."""
    return loads(body, what)


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    headers = dict(exc.headers or {})  # a 405's Allow (RFC 9110) among them
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    return error(exc.status_code, exc.detail or "error", headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette's Allow names only the first route's): of
    the routes whose template matches it most literally (`/v1/triggers` before `/{namespace}/{broker}`)."""
    from starlette.routing import Match

    candidates: list[tuple[int, set[str]]] = []
    for route in getattr(request.app, "routes", []):
        match, _ = route.matches({**request.scope, "method": "GET"})
        methods = getattr(route, "methods", None)
        if match is not Match.NONE and methods:
            literal = len(re.sub(r"\{[^}]*\}", "", getattr(route, "path", "")))  # `{m}:predict` is more specific than `{m}`
            candidates.append((literal, set(methods)))
    if not candidates:
        return ""
    most = max(literal for literal, _ in candidates)
    return ", ".join(sorted(set().union(*(m for literal, m in candidates if literal == most))))


async def _unhandled(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, f"internal error: {type(exc).__name__}")


EXCEPTION_HANDLERS: dict[Any, Any] = {HTTPException: _http_exception, Exception: _unhandled}


def health_routes(registry: CollectorRegistry, is_ready: Callable[[], bool],
                  stopped: Callable[[], list[str]] = lambda: [], why_not_ready: Callable[[], str] = lambda: "not ready") -> list[Route]:
    """`/metrics`, `/readyz` (503 with `why_not_ready()` while `is_ready()` is false), and `/healthz`,
    which turns 503 when a loop that must run has stopped."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        dead = stopped()
        if dead:
            return JSONResponse({"status": "unhealthy", "stopped": dead,
                                 "error": f"background loops stopped: {', '.join(dead)}"}, status_code=503)
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        if is_ready():
            return JSONResponse({"status": "ready"})
        return error(503, why_not_ready())

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


class PortInUse(RuntimeError):
    pass


def check_port_free(host: str, port: int, service: str) -> None:
    """A clear error naming the port, instead of uvicorn's log line after the app has loaded."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on {host} is already in use; cannot start the {service} service") from None
            raise


def run_server(app: Any, host: str, port: int, service: str, access_log: bool = False) -> None:
    """Serve `app` with uvicorn until SIGINT/SIGTERM; lifespan hooks run the graceful shutdown."""
    import uvicorn

    check_port_free(host, port, service)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level=os.environ.get("SEISMO_LOG_LEVEL", "info").lower(),
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    try:
        uvicorn.Server(config).run()
    finally:
        tracing.shutdown()  # spans still queued go out before the process ends




Handler = Callable[[Request], Awaitable[Response]]
