"""`seismo serve logger`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.logger.core import RecordLogger, drift_window_of, update_from_event
from seismo.services.logger.settings import MAX_QUERY_LIMIT, LoggerSettings
from seismo.services.queries import parse_limit
from seismo.store.base import StoreUnavailable

__all__ = ["MAX_QUERY_LIMIT", "LoggerSettings", "RecordLogger", "StoreUnavailable", "create_app", "drift_window_of", "parse_limit",
           "update_from_event"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.logger import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
