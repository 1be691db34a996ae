"""The broker's public API: the ingress and the triggers in force."""

from __future__ import annotations

from seismo.services.api import AUTH_ERRORS, BAD_REQUEST, NO_CONTENT, TOO_LARGE, ApiModel, common_operations, error_body
from seismo.services.api.events import BatchResult, event_body, event_headers
from seismo.services.openapi import Body, Operation


class BatchResults(ApiModel):
    results: list[BatchResult]
    """One per event, in order: 202 stored, 400 invalid, 503 not stored (retry that one)."""


class TriggerFilter(ApiModel):
    attributes: dict[str, str]
    """Exact matches on event attributes."""


class Subscriber(ApiModel):
    uri: str


class Trigger(ApiModel):
    name: str
    filter: TriggerFilter
    subscriber: Subscriber


class Triggers(ApiModel):
    triggers: list[Trigger]


def _ingress(path: str) -> Operation:
    return Operation("POST", path, "Publish an event (202 once durable in the journal)", tags=("events",), headers=event_headers("PublishedEventHeaders"),
                     body=event_body(batch=True), path_params={"namespace": "any (Knative's broker URL shape)",
                                                               "broker": "any (Knative's broker URL shape)"},
                     description="Open unless SEISMO_AUTH_EVENTS=protected.",
                     responses={202: Body(None, "stored in the journal; delivered to every matching trigger", NO_CONTENT),
                                200: Body(BatchResults, "a batch: one result per event"), 400: BAD_REQUEST, 413: TOO_LARGE,
                                503: error_body("starting, stopping, or the journal is full: retry"), **AUTH_ERRORS})


OPERATIONS = [
    _ingress("/"),
    _ingress("/{namespace}/{broker}"),
    Operation("GET", "/v1/triggers", "The triggers in force", responses={200: Body(Triggers), **AUTH_ERRORS}),
    *common_operations("broker"),
]
