"""`seismo serve drift`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.detect.windows import WindowResult
from seismo.services.drift.core import DriftService, SinkRefused, WindowWork
from seismo.services.drift.settings import DriftSettings, WindowMode

__all__ = ["DriftService", "DriftSettings", "SinkRefused", "WindowMode", "WindowResult", "WindowWork", "create_app"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.drift import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
