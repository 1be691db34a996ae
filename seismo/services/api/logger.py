"""The request logger's public API: records, the drift log, embeddings, dead letters."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from seismo.protocol.types import EVENT_KINDS
from seismo.services.api import (
    AUTH_ERRORS,
    BAD_REQUEST,
    DURATION_PATTERN,
    TIME_PATTERN,
    TOO_LARGE,
    ApiModel,
    Limit1000,
    Limit5000,
    Limit10000,
    Time,
    common_operations,
    documented_pattern,
    either,
    error_body,
)
from seismo.services.api.events import EventAccepted, event_body, event_headers
from seismo.services.openapi import Body, Operation


class BinaryPayload(ApiModel):
    """A stored payload that is not JSON (for example the OIP binary tensor extension), as sent."""

    base64: str
    content_type: str | None


class Record(ApiModel):
    """One prediction: its request and response events folded together with the replies about it."""

    prediction_id: str
    model: str | None
    model_version: str | None
    created_at: str | None
    """RFC 3339 in UTC, like every time Seismo writes (`2026-11-22T10:00:00.500000Z`)."""
    request_time: str | None
    response_time: str | None
    status: int | None
    """The HTTP status the model server answered with (200 when only the response's arrival says so); null before the response."""
    request: Any = None
    """The request body as the model received it (JSON), or a BinaryPayload, or null."""
    response: Any = None
    request_content_type: str | None = None
    response_content_type: str | None = None
    extensions: dict[str, Any]
    """The CloudEvent extensions kept on the record (model name, namespace, endpoint, cohort...)."""
    annotations: dict[str, Any]
    """Replies about the prediction: `outlier`, `drift`, `feedback`..."""
    event_types: list[str]
    embedding: list[list[float]] | None = None
    """One embedding per instance, when the model's response carried one."""
    embedding_version: str | None = None


class LineageLink(ApiModel):
    prediction_id: str
    model: str | None
    model_version: str | None
    created_at: str | None
    status: int | None
    parent_id: str | None
    """The upstream prediction this one's input came from (its `X-Seismo-Parent-Id`), or null."""


class Lineage(ApiModel):
    prediction_id: str
    chain: list[LineageLink]
    """This prediction first, then its parent, its parent's parent... (at most 32 links)."""
    complete: bool
    """False when the last link names a parent that is not stored (yet), or the chain stopped at a cycle or 32 links."""


class RecordList(ApiModel):
    records: list[Record]
    """Oldest first."""


class RecordsQuery(ApiModel):
    model: str | None = None
    """Only this model's records."""
    since: Time = documented_pattern(either(TIME_PATTERN, DURATION_PATTERN))
    """From this time on, inclusive: epoch seconds, ISO-8601 (a time without a zone is UTC), or a duration meaning that
    long ago (`7d`), as on every service."""
    until: Time = documented_pattern(either(TIME_PATTERN, DURATION_PATTERN))
    """Before this time (the same forms as `since`)."""
    limit: Limit1000 = Field(100, ge=1, le=1000)
    """At most this many records."""


class DriftWindow(ApiModel):
    """One tested window, as the drift service sent it."""

    is_drift: bool
    p_val: float | None
    distance: float | None
    threshold: float | None
    feature_p_vals: list[float] | None = None
    feature_distances: list[float] | None = None
    effect_size: float | None = None
    """How large the shift is whatever the window's size (KS gap, total variation, sqrt MMD^2, 2 AUC - 1, or the
    embedding's KS gap along its centroid's move); drift needs it at `effect_floor` or above as well as the test."""
    effect_floor: float | None = None
    model: str | None = None
    window: int | None = None
    size: int | None = None
    start: str | None = None
    end: str | None = None
    detector: str | None = None
    detector_version: str | None = None


class DriftLog(ApiModel):
    windows: list[DriftWindow]
    """Oldest first."""


class DriftLogQuery(ApiModel):
    model: str | None = None
    limit: Limit10000 = Field(1000, ge=1, le=10000)


class EmbeddingVersion(ApiModel):
    version: str
    count: int
    first: str
    last: str


class EmbeddingVersions(ApiModel):
    versions: list[EmbeddingVersion]


class ModelQuery(ApiModel):
    model: str | None = None
    """Only this model's."""


class ClustersQuery(ApiModel):
    model: str = Field(min_length=1)
    """The model whose stored embeddings to cluster (required)."""
    since: Time = documented_pattern(either(TIME_PATTERN, DURATION_PATTERN))
    """Only records from this time on."""
    limit: Limit5000 = Field(2000, ge=1, le=5000)
    """At most this many production records."""


class Cluster(ApiModel):
    cluster: int
    status: str
    """`new` (hardly in the reference), `overgrown` (a much larger share than in the reference) or `known`."""
    size: int
    production: int
    reference: int
    production_share: float
    reference_share: float
    drift: float
    top_ids: list[str]
    """Prediction ids nearest the cluster's production centre."""
    accuracy: float | None
    with_truth: int
    outlier_score_quartiles: list[float] | None


class Clusters(ApiModel):
    model: str
    clusters: list[Cluster]
    reference_points: int
    production_points: int
    production_noise: int


class DeadLettersQuery(ApiModel):
    model: str | None = None
    """Only this model's."""
    limit: Limit1000 = Field(100, ge=1, le=1000)


class DeadLetter(ApiModel):
    key: str
    """What `seismo dead-letters replay --key` names it by."""
    id: str
    type: str
    model: str | None
    time: str
    """When the sink received it (RFC 3339)."""
    code: str
    """The subscriber's last answer (knativeerrorcode), `none` when it gave none."""
    destination: str | None
    """The subscriber that refused it (knativeerrordest)."""
    size: int
    """Bytes of the kept event (structured mode)."""


class DeadLetters(ApiModel):
    dead_letters: list[DeadLetter]
    """Oldest first, from the store every replica shares (attributes; `seismo dead-letters replay` sends the events)."""


class Counted(ApiModel):
    counted: bool
    """False when this dead letter was kept already (the sink's retry, or another replica's)."""
    kept: bool


NOT_FOUND = error_body("no record with this prediction id")

OPERATIONS = [
    Operation("POST", "/", "An event to fold into its prediction's record (what the broker delivers)", tags=("events",),
              headers=event_headers("StoredEventHeaders", tuple(EVENT_KINDS)), body=event_body(batch=True),
              responses={200: Body(EventAccepted, "stored (`stored` false for a redelivery that changed nothing), or per-event "
                                                  "results for a batch"),
                         400: BAD_REQUEST, 413: TOO_LARGE, 503: error_body("the store is unavailable: retry"), **AUTH_ERRORS},
              description="Open unless SEISMO_AUTH_EVENTS=protected."),
    Operation("GET", "/v1/records/{prediction_id}", "One prediction's record", path_params={"prediction_id": "the prediction id"},
              responses={200: Body(Record), 404: NOT_FOUND, **AUTH_ERRORS}),
    Operation("GET", "/v1/records/{prediction_id}/lineage",
              "The chain of upstream predictions that fed this one (X-Seismo-Parent-Id, or the Seldon graph node that called it)",
              path_params={"prediction_id": "the prediction id"}, responses={200: Body(Lineage), 404: NOT_FOUND, **AUTH_ERRORS}),
    Operation("GET", "/v1/records", "Stored records, oldest first", query=RecordsQuery,
              responses={200: Body(RecordList), 400: BAD_REQUEST, **AUTH_ERRORS}),
    Operation("GET", "/v1/drift", "The drift log: every tested window, oldest first", query=DriftLogQuery,
              responses={200: Body(DriftLog), 400: BAD_REQUEST, **AUTH_ERRORS}),
    Operation("GET", "/v1/embeddings/versions", "Embedding versions on stored records", query=ModelQuery,
              responses={200: Body(EmbeddingVersions), **AUTH_ERRORS}),
    Operation("GET", "/v1/embeddings/clusters", "Outlier cohorts of stored embeddings against the reference", query=ClustersQuery,
              responses={200: Body(Clusters), 400: BAD_REQUEST,
                         404: error_body("no embedding reference configured (SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH)"), **AUTH_ERRORS}),
    Operation("POST", "/v1/dead-letters", "The Knative Triggers' dead-letter sink: counts the event and keeps it whole in the store",
              tags=("events",), headers=event_headers("DeadLetterHeaders"), body=event_body(),
              responses={202: Body(Counted), 400: BAD_REQUEST, 413: TOO_LARGE,
                         503: error_body("the store is unavailable: nothing kept, retry"), **AUTH_ERRORS}),
    Operation("GET", "/v1/dead-letters", "Kept dead letters, oldest first (every replica's)", query=DeadLettersQuery,
              responses={200: Body(DeadLetters), 400: BAD_REQUEST, **AUTH_ERRORS}),
    *common_operations("logger"),
]
