"""`seismo serve outlier`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.outlier.core import OutlierService
from seismo.services.outlier.settings import OutlierSettings

__all__ = ["OutlierService", "OutlierSettings", "create_app"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.outlier import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
