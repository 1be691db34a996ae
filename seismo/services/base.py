"""The one shape of every service: a core (`Service`) with no HTTP in it, and `build_app`, which wraps a
core's route table in the parts every service shares (lifespan, health, metrics, OpenAPI, auth, errors).

A service package is `settings.py` (its pydantic settings), `core.py` (a `Service`: no Starlette) and
`http.py` (an `Endpoints` class: each route a short method that parses, calls the core, answers).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from seismo.services.auth import AuthSettings, auth_middleware
from seismo.services.common import EXCEPTION_HANDLERS, health_routes
from seismo.services.openapi import Operation, openapi_route

log = logging.getLogger(__name__)
T = TypeVar("T")


class NotStarted(RuntimeError):
    """A core's part used before `start()` or after `stop()` (a bug in the caller, never a client's fault)."""


def running(part: T | None, service: str) -> T:
    """`part` when the service has started it; NotStarted naming the service otherwise."""
    if part is None:
        raise NotStarted(f"the {service} service is not started")
    return part


class Service:
    """A service's core: everything it does, without HTTP. `build_app` starts it in the app's lifespan."""

    name: str = "service"
    """The service's name (`seismo serve <name>`): OpenAPI title, `app.state.<name>`, error messages."""

    @property
    def ready(self) -> bool:
        return True

    def why_not_ready(self) -> str | None:
        """None when ready; else what /readyz says with its 503."""
        return None if self.ready else "not ready"

    def stopped(self) -> list[str]:
        """Names of the background loops that must run and have stopped (/healthz turns 503)."""
        return []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def build_app(core: Service, routes: Iterable[Route], registry: CollectorRegistry, operations: list[Operation], *,
              event_paths: Iterable[str] = ("/",), auth: AuthSettings | None = None) -> Starlette:
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
                    exception_handlers=EXCEPTION_HANDLERS, middleware=auth_middleware(event_paths=event_paths, settings=auth))
    app.state.core = core
    setattr(app.state, core.name, core)
    return app
