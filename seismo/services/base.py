"""The one shape of every service: a core (`Service`, here) with no HTTP in it, and
`seismo.services.app.build_app`, which wraps a core's route table in the parts every service shares
(lifespan, health, metrics, OpenAPI, auth, errors).

A service package is `settings.py` (its pydantic settings), `core.py` (a `Service`: no Starlette) and
`http.py` (an `Endpoints` class: each route a short method that parses, calls the core, answers).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

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

    def count_rejected(self, reason: str) -> None:
        """Count a request refused before the core saw it (over the body limit, unreadable): the one way
        every service's HTTP side counts what it turns away (the cores count their own refusals)."""
        raise NotImplementedError(f"the {self.name} service counts no refusals")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def create_app_on_first_use(package: str) -> Callable[[str], Any]:
    """A service package's module `__getattr__`: `create_app` is imported from its http.py when first
    asked for, so importing the core and the settings does not load the web framework."""

    def __getattr__(name: str) -> Any:
        if name == "create_app":
            return importlib.import_module(f"{package}.http").create_app
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
