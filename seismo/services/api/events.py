"""What the CloudEvents ingress routes share: the binary-mode headers, the body forms, the answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model

from seismo.services.api import ApiModel
from seismo.services.openapi import Body

BATCH = "application/cloudevents-batch+json"


class EventHeaders(ApiModel):
    """Binary content mode: the attributes as `ce-` headers (structured mode carries them in the body instead)."""

    ce_id: str | None = Field(None, alias="ce-id", min_length=1)
    """The event id (KServe: the prediction id)."""
    ce_type: str | None = Field(None, alias="ce-type", min_length=1)
    """`org.kubeflow.serving.inference.request|response`, `io.seldon.serving.inference.request|response`, `io.seldon.serving.feedback`, or a detector reply."""
    ce_source: str | None = Field(None, alias="ce-source", min_length=1)
    ce_specversion: Literal["1.0"] | None = Field(None, alias="ce-specversion")
    """`1.0`."""
    ce_requestid: str | None = Field(None, alias="ce-requestid", min_length=1)
    """The prediction id when each event has its own `ce-id` (Seldon Core)."""
    ce_inferenceservicename: str | None = Field(None, alias="ce-inferenceservicename", min_length=1)
    """The model's name."""
    traceparent: str | None = None
    """W3C trace context; continued by the service's spans when tracing is on."""


EVENT_HEADERS = EventHeaders


def event_headers(name: str, types: tuple[str, ...] | None = None) -> type[ApiModel]:
    """The binary-mode headers one ingress reads, stated as strictly as it checks them: the four required
    attributes present and `ce-type` one of `types` (any type where None). Structured mode carries them in
    the body instead; the document describes binary mode, the one every Seismo sender uses."""
    type_field: Any = Literal[types] if types else str
    version_field: Any = Literal["1.0"]
    return create_model(
        name, __base__=EventHeaders,
        ce_id=(str, Field(alias="ce-id", min_length=1, description="The event id (KServe: the prediction id).")),
        ce_type=(type_field, Field(alias="ce-type", description="One of " + ", ".join(f"`{t}`" for t in types))) if types
        else (str, Field(alias="ce-type", min_length=1, description="The event type.")),
        ce_source=(str, Field(alias="ce-source", min_length=1)),
        ce_specversion=(version_field, Field(alias="ce-specversion", description="`1.0`.")))


class BatchResult(ApiModel):
    id: str | None = None
    status: int
    """The status a single event would have got (200 stored, 202 accepted, 400, 503)."""
    stored: bool | None = None
    error: str | None = None


class EventAccepted(ApiModel):
    """One event: which prediction it was folded into; a batch: one result per event, in order."""

    prediction_id: str | None = None
    stored: bool | None = None
    results: list[BatchResult] | None = None


def event_body(batch: bool = False) -> Body:
    types = ("application/json", "application/octet-stream", "application/cloudevents+json") + ((BATCH,) if batch else ())
    return Body(None, "A CloudEvent: binary mode (the data as the body, attributes in `ce-` headers) or structured mode "
                      "(`application/cloudevents+json`)" + (f"; a batch as `{BATCH}` where the trigger negotiates it" if batch else ""),
                types)
