"""`seismo serve explainer`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.explainer.core import (
    ExplainerBusy,
    ExplainerService,
    ExplainRequestError,
    ModelServerError,
    UnknownModel,
    instance_of,
)
from seismo.services.explainer.settings import EXAMPLE_CONFIG, ExplainerSettings

__all__ = ["EXAMPLE_CONFIG", "ExplainRequestError", "ExplainerBusy", "ExplainerService", "ExplainerSettings", "ModelServerError",
           "UnknownModel", "create_app", "instance_of"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.explainer import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
