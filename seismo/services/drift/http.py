"""The drift service over HTTP: `POST /` takes request (and, with embeddings, response) events."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from seismo.services.api.detectors import DRIFT_OPERATIONS
from seismo.services.app import build_app
from seismo.services.auth import AuthSettings
from seismo.services.drift.core import DriftService
from seismo.services.drift.settings import DriftSettings
from seismo.services.event_http import DetectorEndpoints
from seismo.tracing import Tracing


def create_app(settings: DriftSettings, registry: CollectorRegistry) -> Starlette:
    """The `DriftService` (on `app.state.drift`) behind the detectors' event ingress."""
    auth = AuthSettings()
    core = DriftService(settings, registry, auth, Tracing("drift"))
    return build_app(core, DetectorEndpoints(core).routes(), registry, DRIFT_OPERATIONS, auth=auth)
