"""`build_app`: a service's Starlette app from its core and its route table, with what every service
shares (see seismo.services.base for the shape)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.services.api import parse_body, parse_query
from seismo.services.auth import AuthSettings, auth_middleware
from seismo.services.base import Service
from seismo.services.common import EXCEPTION_HANDLERS, BodyTooLarge, error, health_routes, parse_json, read_body
from seismo.services.openapi import Operation, document


def build_app(core: Service, routes: Iterable[Route], registry: CollectorRegistry, operations: list[Operation], *,
              event_paths: Iterable[str] = ("/",), auth: AuthSettings | None = None, open_prefixes: Iterable[str] = (),
              protected_paths: Iterable[str] = ()) -> Starlette:
    """The Starlette app around `core`: its routes plus /metrics, /healthz, /readyz and /openapi.json;
    the core started and stopped by the lifespan; one error shape; bearer auth (`event_paths` take the
    broker's deliveries; `open_prefixes` need no token but `protected_paths` do). The core is on `app.state.core` and `app.state.<core.name>`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await core.start()
        try:
            yield
        finally:
            await core.stop()

    health = health_routes(registry, lambda: core.why_not_ready() is None, core.stopped, lambda: core.why_not_ready() or "ready")
    app = Starlette(routes=[*routes, *health, openapi_route(core.name, operations)], lifespan=lifespan,
                    exception_handlers=EXCEPTION_HANDLERS, middleware=auth_middleware(event_paths, open_prefixes, auth, protected_paths))
    app.state.core = core
    app.state.operations = operations
    setattr(app.state, core.name, core)
    return app


def openapi_route(service: str, operations: list[Operation], description: str = "") -> Route:
    """`GET /openapi.json`: the document, built once and served as bytes."""
    body = orjson.dumps(document(service, operations, description))

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])


def query(model: type[BaseModel]) -> Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]:
    """An endpoint method whose query parameters `model` (the API model its OpenAPI operation names)
    parses: the method gets the parsed model after the request; a bad parameter is a 400 naming it.
    The model stays on the route as `query_model` (a test checks it is the documented one)."""

    def wrap(method: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @functools.wraps(method)
        async def endpoint(self: Any, request: Request) -> Response:
            try:
                parsed = parse_query(model, request.query_params)
            except ValueError as exc:
                return error(400, str(exc))
            return await method(self, request, parsed)

        endpoint.query_model = model  # type: ignore[attr-defined]
        return endpoint

    return wrap


def body(model: type[BaseModel], what: str = "request body", context: Callable[[Any], dict[str, Any]] | None = None
         ) -> Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]:
    """An endpoint method whose JSON body `model` (the API model its OpenAPI operation names) parses: the
    method gets the parsed model after the request. Over the core's `settings.max_body_bytes` is a 413,
    unreadable JSON or a value the model refuses a 400 naming it; both counted by `core.count_rejected`.
    The bytes stay on `request.state.body` (for a route that relays them), the model on the route as
    `body_model` (a test checks it is the documented one). `context(core)`: limits the model's validators
    read before the work they bound (a validator raising BodyTooLarge is a 413 too)."""

    def wrap(method: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @functools.wraps(method)
        async def endpoint(self: Any, request: Request) -> Response:
            core = self.core
            try:
                request.state.body = raw = await read_body(request, core.settings.max_body_bytes)
                parsed = parse_body(model, parse_json(raw, what), context(core) if context else None)
            except BodyTooLarge as exc:
                core.count_rejected("too_large")
                return error(413, str(exc))
            except ValueError as exc:
                core.count_rejected("invalid")
                return error(400, str(exc))
            return await method(self, request, parsed)

        endpoint.body_model = model  # type: ignore[attr-defined]
        return endpoint

    return wrap
