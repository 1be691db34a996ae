"""`seismo serve metrics`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.api.metrics import MAX_OUTCOME_IDS
from seismo.services.metrics.core import MetricsService
from seismo.services.metrics.settings import EXAMPLE_CONFIG, MetricsSettings
from seismo.services.queries import parse_since, parse_window
from seismo.store.base import StoreUnavailable

__all__ = ["EXAMPLE_CONFIG", "MAX_OUTCOME_IDS", "MetricsService", "MetricsSettings", "StoreUnavailable", "create_app", "parse_since",
           "parse_window"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.metrics import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
