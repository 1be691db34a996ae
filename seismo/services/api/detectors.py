"""The outlier and drift detectors' public API: a request event in, a reply event (binary mode) out."""

from __future__ import annotations

from typing import Any

from pydantic import RootModel

from seismo.services.api import AUTH_ERRORS, BAD_REQUEST, NO_CONTENT, TOO_LARGE, ApiModel, common_operations
from seismo.services.api.events import EVENT_HEADERS, event_body
from seismo.services.api.logger import DriftWindow
from seismo.services.openapi import Body, Operation

REPLY = ("The reply is a binary-mode CloudEvent: this body, with `ce-type` the reply type and the id and extensions of "
         "the event it answers.")


class OutlierReply(ApiModel):
    """`org.kubeflow.serving.inference.outlier`: alibi-detect's fields, per instance."""

    is_outlier: list[int]
    instance_score: list[float]
    threshold: float
    feature_score: list[Any] | None = None
    """Per-feature scores, when SEISMO_OUTLIER_FEATURE_SCORES is on."""
    detector: str
    detector_version: str | None


class EmbeddingDriftReply(ApiModel):
    """An embedding window's `EmbeddingDrift` result."""

    euclidean_distance: float
    cosine_distance: float
    distance_threshold: float
    method: str
    embedding_version: str
    reference_version: str
    version_note: str | None = None
    cluster_p_val: float | None = None
    cluster_drift: bool | None = None
    cluster_shares: Any = None


class DriftReply(RootModel[DriftWindow | EmbeddingDriftReply]):
    """A window's result: the feature detector's (`is_drift`, `p_val`...) or an embedding window's."""


OUTLIER_OPERATIONS = [
    Operation("POST", "/", "Score a request event's instances", tags=("events",), headers=EVENT_HEADERS, body=event_body(),
              description=REPLY + " Open unless SEISMO_AUTH_EVENTS=protected.",
              responses={200: Body(OutlierReply, "the outlier reply event"), 400: BAD_REQUEST, 413: TOO_LARGE, **AUTH_ERRORS}),
    *common_operations("outlier"),
]

DRIFT_OPERATIONS = [
    Operation("POST", "/", "Add a request event's instances (or a response's embeddings) to the window", tags=("events",),
              headers=EVENT_HEADERS, body=event_body(),
              description=REPLY + " Open unless SEISMO_AUTH_EVENTS=protected.",
              responses={202: Body(None, "added; the window is not full yet", NO_CONTENT),
                         200: Body(DriftReply, "the drift reply event of the window this event filled"),
                         400: BAD_REQUEST, 413: TOO_LARGE, **AUTH_ERRORS}),
    *common_operations("drift"),
]
