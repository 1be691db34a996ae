"""`seismo serve model`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.model.core import ModelService
from seismo.services.model.settings import Framework, LogMode, ModelSettings, OnClientError, Overflow
from seismo.serving.dataplane import EVENT_OVERHEAD_BYTES, TRAFFIC_HEADER, Outcome, TooManyInstances, check_event_size, encoded_event_bytes

__all__ = ["EVENT_OVERHEAD_BYTES", "TRAFFIC_HEADER", "Framework", "LogMode", "ModelService", "ModelSettings", "OnClientError", "Outcome",
           "Overflow", "TooManyInstances", "check_event_size", "create_app", "encoded_event_bytes"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.model import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
