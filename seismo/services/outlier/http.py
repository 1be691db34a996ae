"""The outlier service over HTTP: `POST /` takes request and response events."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from seismo.services.api.detectors import OUTLIER_OPERATIONS
from seismo.services.app import build_app
from seismo.services.event_http import DetectorEndpoints
from seismo.services.outlier.core import OutlierService
from seismo.services.outlier.settings import OutlierSettings
from seismo.tracing import Tracing


def create_app(settings: OutlierSettings, registry: CollectorRegistry) -> Starlette:
    """The `OutlierService` (on `app.state.outlier`) behind the detectors' event ingress."""
    core = OutlierService(settings, registry, Tracing("outlier"))
    return build_app(core, DetectorEndpoints(core).routes(), registry, OUTLIER_OPERATIONS)
