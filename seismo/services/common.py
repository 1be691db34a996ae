"""What every service shares: JSON errors, body limits, health and metrics routes, the server runner."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = logging.getLogger(__name__)

DEFAULT_PORTS = {
    "model": 8080,
    "broker": 8090,
    "logger": 8091,
    "outlier": 8092,
    "drift": 8093,
    "metrics": 8094,
    "explainer": 8095,
}


def data_dir() -> Path:
    """Where local state lives: SEISMO_DATA_DIR, default `.seismo/` in the working directory."""
    return Path(os.environ.get("SEISMO_DATA_DIR", ".seismo"))


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of every Seismo service (KServe and OIP both use `{"error": ...}`)."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing early (by Content-Length) or while streaming once over `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, what: str = "request body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    return error(exc.status_code, exc.detail or "error")


async def _unhandled(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, f"internal error: {type(exc).__name__}")


EXCEPTION_HANDLERS = {HTTPException: _http_exception, Exception: _unhandled}


def health_routes(registry: CollectorRegistry, is_ready: Callable[[], bool]) -> list[Route]:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        if is_ready():
            return JSONResponse({"status": "ready"})
        return error(503, "not ready")

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
    uvicorn.Server(config).run()


async def cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except (asyncio.CancelledError, Exception):  # shutting down: nothing left to report to
            pass


Handler = Callable[[Request], Awaitable[Response]]
