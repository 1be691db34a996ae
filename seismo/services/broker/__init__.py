"""`seismo serve broker`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.broker.core import Broker
from seismo.services.broker.settings import DEFAULT_TRIGGERS, BrokerSettings, Synchronous

__all__ = ["DEFAULT_TRIGGERS", "Broker", "BrokerSettings", "Synchronous", "create_app"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.broker import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
