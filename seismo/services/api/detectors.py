"""The outlier and drift detectors' public API: a request event in, a reply event (binary mode) out; a
batched delivery in, one result per event (with its reply in structured mode) out."""

from __future__ import annotations

from typing import Any

from pydantic import RootModel

from seismo.protocol.types import KSERVE_REQUEST, KSERVE_RESPONSE, SELDON_REQUEST, SELDON_RESPONSE
from seismo.services.api import AUTH_ERRORS, BAD_REQUEST, NO_CONTENT, TOO_LARGE, ApiModel, common_operations
from seismo.services.api.events import BATCH, event_body, event_headers
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


class AdversarialReply(ApiModel):
    """`io.seismo.inference.adversarial`: the class-conditional Mahalanobis check of a response's embedding."""

    is_adversarial: list[int]
    instance_score: list[float]
    threshold: float | None
    nearest_class: list[int]
    detector: str
    detector_version: str | None
    embedding_version: str | None


class DetectorBatchResult(ApiModel):
    id: str | None = None
    """The event's id (absent when the item was not a readable CloudEvent)."""
    status: int
    """The status a single delivery of the event would have got (200 with a reply, 202, 204, 400, 503)."""
    error: str | None = None
    reply: dict[str, Any] | None = None
    """The reply event in structured mode (data inline as JSON), journaled by the broker like a single reply."""


class DetectorBatchResults(ApiModel):
    """A batched delivery's answer: one result per event, in order."""

    results: list[DetectorBatchResult]


class OutlierAnswer(RootModel[OutlierReply | AdversarialReply | DetectorBatchResults]):
    """The outlier or adversarial reply event's data, or a batch's results."""


class DriftAnswer(RootModel[DriftWindow | EmbeddingDriftReply | DetectorBatchResults]):
    """A window's result (the feature detector's `is_drift`, `p_val`... or an embedding window's), or a batch's results."""


INFERENCE_EVENT_HEADERS = event_headers("InferenceEventHeaders", (KSERVE_REQUEST, SELDON_REQUEST, KSERVE_RESPONSE, SELDON_RESPONSE))
BATCHED = f" A batched delivery (`{BATCH}`, what Seismo's broker sends to triggers with `batch`) is answered 200 with one result per event."

OUTLIER_OPERATIONS = [
    Operation("POST", "/", "Score a request event's instances", tags=("events",), headers=INFERENCE_EVENT_HEADERS, body=event_body(batch=True),
              description=REPLY + BATCHED + " Open unless SEISMO_AUTH_EVENTS=protected.",
              responses={200: Body(OutlierAnswer, "the outlier (or adversarial) reply event, or a batch's results"),
                         204: Body(None, "a response event with no embedding: nothing to check", NO_CONTENT),
                         400: BAD_REQUEST, 413: TOO_LARGE, **AUTH_ERRORS}),
    *common_operations("outlier"),
]

DRIFT_OPERATIONS = [
    Operation("POST", "/", "Add a request event's instances (or a response's embeddings) to the window", tags=("events",),
              headers=INFERENCE_EVENT_HEADERS, body=event_body(batch=True),
              description=REPLY + BATCHED + " Open unless SEISMO_AUTH_EVENTS=protected.",
              responses={202: Body(None, "added; the window is not full yet", NO_CONTENT),
                         200: Body(DriftAnswer, "the drift reply event of the window this event filled, or a batch's results"),
                         400: BAD_REQUEST, 413: TOO_LARGE, **AUTH_ERRORS}),
    *common_operations("drift"),
]
