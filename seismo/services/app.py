"""`build_app`: a service's Starlette app from its core and its route table, with what every service
shares (see seismo.services.base for the shape)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from seismo.services.auth import AuthSettings, auth_middleware
from seismo.services.base import Service
from seismo.services.common import EXCEPTION_HANDLERS, health_routes
from seismo.services.openapi import Operation, openapi_route


def build_app(core: Service, routes: Iterable[Route], registry: CollectorRegistry, operations: list[Operation], *,
              event_paths: Iterable[str] = ("/",), auth: AuthSettings | None = None, open_prefixes: Iterable[str] = ()) -> Starlette:
    """The Starlette app around `core`: its routes plus /metrics, /healthz, /readyz and /openapi.json;
    the core started and stopped by the lifespan; one error shape; bearer auth (`event_paths` take the
    broker's deliveries). The core is on `app.state.core` and `app.state.<core.name>`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await core.start()
        try:
            yield
        finally:
            await core.stop()

    health = health_routes(registry, lambda: core.why_not_ready() is None, core.stopped, lambda: core.why_not_ready() or "ready")
    app = Starlette(routes=[*routes, *health, openapi_route(core.name, operations)], lifespan=lifespan,
                    exception_handlers=EXCEPTION_HANDLERS, middleware=auth_middleware(event_paths, open_prefixes, auth))
    app.state.core = core
    setattr(app.state, core.name, core)
    return app
