"""`seismo serve drift`: fills windows from inference requests and tests each full window.

Count windows (default 1000 instances) are tested when an event fills one; the answer to that
delivery is an `org.kubeflow.serving.inference.drift` reply (same id and extensions), which the broker
publishes and the logger keeps in its drift log. Time windows (tumbling or sliding) are tested by a
clock, outside any delivery, so their results are posted to the sink (the broker) instead. Window
contents live in SQLite, committed before the service answers: a restart loses nothing.
"""

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
