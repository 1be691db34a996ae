"""The request and response CloudEvents of one prediction, as KServe's logger or Seldon Core's executor sends them.

KServe: both events carry the prediction id as `ce-id` (and `requestid`); Seldon: a new `ce-id` per event,
the puid in `requestid`. Both carry the model's name, namespace, endpoint and version, the forwarded
cohort headers, and the prediction's trace context (`traceparent`/`tracestate`, seismo.tracing).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from seismo.performance.config import COHORT_NAME
from seismo.protocol.cloudevents import CloudEvent
from seismo.protocol.limits import is_prediction_id
from seismo.protocol.types import FORWARDED_HEADERS, KSERVE_REQUEST, KSERVE_RESPONSE, PARENT_HEADER, SELDON_REQUEST, SELDON_RESPONSE
from seismo.times import now_rfc3339


@dataclass(frozen=True)
class EventSource:
    """What every event of one model server says about where it comes from."""

    source: str
    model: str
    version: str | None
    namespace: str
    endpoint: str
    log_requests: bool = True
    log_responses: bool = True


@dataclass(frozen=True)
class Answered:
    """One prediction as the events need it."""

    prediction_id: str
    protocol: str
    status: int
    request_body: bytes
    request_content_type: str
    response_body: bytes
    response_content_type: str
    embedding_version: str | None = None
    embedding_output: str | None = None


def _common_extensions(origin: EventSource, headers: Mapping[str, str], trace: Mapping[str, str]) -> dict[str, str]:
    # `partitionkey` (CloudEvents' partitioning extension): Knative's Kafka broker keys each record by it, so one
    # model's events stay in order on one partition and the models spread over the topic's partitions.
    extensions = {"inferenceservicename": origin.model, "namespace": origin.namespace, "endpoint": origin.endpoint,
                  "partitionkey": origin.model}
    if origin.version:
        extensions["modelversion"] = origin.version
    for header, extension in FORWARDED_HEADERS.items():
        value = headers.get(header)
        valid = is_prediction_id(value) if header == PARENT_HEADER else COHORT_NAME.match(value or "")
        if value and valid:  # checked before inference; an error answer may carry junk
            extensions[extension] = value
    extensions.update(trace)
    return extensions


def kserve_events(origin: EventSource, answered: Answered, headers: Mapping[str, str], trace: Mapping[str, str]) -> list[CloudEvent]:
    pid = answered.prediction_id
    extensions = {**_common_extensions(origin, headers, trace), "component": "predictor", "requestid": pid,
                  "protocol": answered.protocol}
    events = []
    if origin.log_requests:
        events.append(CloudEvent(pid, origin.source, KSERVE_REQUEST, answered.request_body, answered.request_content_type,
                                 now_rfc3339(), extensions=extensions))
    if origin.log_responses:
        response_extensions = {**extensions, "statuscode": str(answered.status)}
        if answered.embedding_version is not None and answered.embedding_output is not None:
            response_extensions["embeddingversion"] = answered.embedding_version
            response_extensions["embeddingoutput"] = answered.embedding_output
        events.append(CloudEvent(pid, origin.source, KSERVE_RESPONSE, answered.response_body, answered.response_content_type,
                                 now_rfc3339(), extensions=response_extensions))
    return events


def seldon_events(origin: EventSource, answered: Answered, headers: Mapping[str, str], trace: Mapping[str, str]) -> list[CloudEvent]:
    extensions = {**_common_extensions(origin, headers, trace), "modelid": origin.model, "requestid": answered.prediction_id,
                  "protocol": "seldon"}
    events = []
    if origin.log_requests:
        events.append(CloudEvent(str(uuid.uuid4()), origin.source, SELDON_REQUEST, answered.request_body,
                                 answered.request_content_type, now_rfc3339(), extensions=extensions))
    if origin.log_responses:
        events.append(CloudEvent(str(uuid.uuid4()), origin.source, SELDON_RESPONSE, answered.response_body,
                                 answered.response_content_type, now_rfc3339(),
                                 extensions={**extensions, "statuscode": str(answered.status)}))
    return events
