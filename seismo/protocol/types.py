"""Event types Seismo accepts and emits, and how an event names its prediction.

The compatibility contract (DESIGN.md): KServe's logger types, Seldon Core's executor types, and the
detector replies. Request and response events of one prediction share its prediction id: Seldon
carries it in the `requestid` extension (each event has its own `ce-id`), KServe in `ce-id` itself.
"""

from __future__ import annotations

from enum import Enum

from seismo.protocol.cloudevents import CloudEvent

KSERVE_REQUEST = "org.kubeflow.serving.inference.request"
KSERVE_RESPONSE = "org.kubeflow.serving.inference.response"
KSERVE_OUTLIER = "org.kubeflow.serving.inference.outlier"
KSERVE_DRIFT = "org.kubeflow.serving.inference.drift"
SELDON_REQUEST = "io.seldon.serving.inference.request"
SELDON_RESPONSE = "io.seldon.serving.inference.response"
SELDON_FEEDBACK = "io.seldon.serving.feedback"
SEISMO_ADVERSARIAL = "io.seismo.inference.adversarial"
"""Seismo's own reply type: the adversarial detector's verdict on a response event (seismo.detect.adversarial)."""
SEISMO_QUALITY = "io.seismo.inference.quality"
"""Seismo's own: what the metrics server's data-quality check found in a logged request (seismo.performance.quality),
posted only when it found something; the logger keeps it as the record's `quality` annotation."""


class EventKind(str, Enum):
    REQUEST = "request"
    RESPONSE = "response"
    FEEDBACK = "feedback"
    OUTLIER = "outlier"
    DRIFT = "drift"
    ADVERSARIAL = "adversarial"
    QUALITY = "quality"


EVENT_KINDS: dict[str, EventKind] = {
    KSERVE_REQUEST: EventKind.REQUEST,
    SELDON_REQUEST: EventKind.REQUEST,
    KSERVE_RESPONSE: EventKind.RESPONSE,
    SELDON_RESPONSE: EventKind.RESPONSE,
    SELDON_FEEDBACK: EventKind.FEEDBACK,
    KSERVE_OUTLIER: EventKind.OUTLIER,
    KSERVE_DRIFT: EventKind.DRIFT,
    SEISMO_ADVERSARIAL: EventKind.ADVERSARIAL,
    SEISMO_QUALITY: EventKind.QUALITY,
}

# Extensions that describe the model and deployment, copied onto every record and reply.
MODEL_EXTENSIONS = ("inferenceservicename", "namespace", "endpoint", "modelid", "modelversion", "component")

# Extensions a record keeps: the model's, correlation, and what the metrics server reads (the cohort
# and holdout flags Seismo's model server copies from X-Seismo-Cohort / X-Seismo-Holdout headers,
# KServe's `metadata` header map, and where the response carries an embedding and its version).
RECORD_EXTENSIONS = (*MODEL_EXTENSIONS, "requestid", "protocol", "cohort", "holdout", "metadata", "embeddingversion", "embeddingoutput",
                     "traceparent", "tracestate",  # the prediction's trace: find it in the tracing backend from the record
                     "parentid")  # the upstream prediction this one's input came from (X-Seismo-Parent-Id): lineage

# Request headers Seismo's model server copies onto its events as extensions.
FORWARDED_HEADERS = {"x-seismo-cohort": "cohort", "x-seismo-holdout": "holdout", "x-seismo-parent-id": "parentid"}
PARENT_HEADER = "x-seismo-parent-id"
"""Names the upstream prediction whose output fed this request (a chain of models); a prediction id, not a cohort name."""


def kind_of(event_type: str) -> EventKind | None:
    return EVENT_KINDS.get(event_type)


def prediction_id_of(event: CloudEvent) -> str:
    """`requestid` when present (Seldon, and Seismo's own events), else `ce-id` (KServe)."""
    return event.extensions.get("requestid") or event.id


def model_of(event: CloudEvent) -> str:
    """The model's name: the InferenceService (KServe) or SeldonDeployment name, else the graph node."""
    return event.extensions.get("inferenceservicename") or event.extensions.get("modelid") or "unknown"
