"""What the outlier and drift services share: request events in, instances out, reply events back.

A rejected event gets a 400 naming the reason (the broker dead-letters it: a bad payload does not get
better by retrying) and is counted by reason, never skipped silently.

Both services also take CloudEvents' batched mode (`application/cloudevents-batch+json`), which Seismo's
broker sends to triggers with `batch`: each event is answered as if it had come alone, in one
`{"results": [...]}` in order, each `{"id", "status", "error"?, "reply"?}` where `reply` is the reply
event in structured mode (the broker journals it as it does a single delivery's binary-mode reply).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from seismo.labels import OTHER
from seismo.protocol.cloudevents import CloudEvent, CloudEventError, escape_id, to_structured_doc
from seismo.protocol.instances import Rejection, instances_of_event  # noqa: F401  (re-exported for the detectors)
from seismo.protocol.types import EventKind, kind_of, model_of, prediction_id_of
from seismo.sampling import in_sample
from seismo.services.base import Service
from seismo.times import now_rfc3339

log = logging.getLogger(__name__)



class ForbiddenEvent(CloudEventError):
    """A batch item its sender may not send (seismo.services.senders): answered 403 in its place."""

    def __init__(self, event: CloudEvent, why: str):
        super().__init__(why)
        self.event = event


@dataclass(frozen=True)
class Answer:
    """What a detector says to one delivered event: a status, and the reply event when there is one."""

    status: int
    reply: CloudEvent | None = None


async def answer_items(items: list[CloudEvent | CloudEventError], answer: Callable[[CloudEvent], Awaitable[Answer]],
                       served_model: str | None, rejected: Counter, service: str) -> list[dict]:
    """Every event of a batch answered at once (so their instances are scored together), one result per
    item in order; a rejected item is counted as a single rejected event is. A failure that is not a
    Rejection (a bug, a stopped store) is that item's 503, which the broker retries, and is logged."""

    async def one(item: CloudEvent | CloudEventError) -> dict:
        if isinstance(item, ForbiddenEvent):
            count_rejection(Rejection("forbidden_sender", str(item), model_of(item.event), status=403), served_model, rejected, service)
            return {"id": item.event.id, "status": 403, "error": str(item)}
        if isinstance(item, CloudEventError):
            count_rejection(Rejection("invalid_event", str(item)), served_model, rejected, service)
            return {"status": 400, "error": str(item)}
        try:
            result = await answer(item)
        except Rejection as exc:
            count_rejection(exc, served_model, rejected, service)
            return {"id": item.id, "status": exc.status, "error": str(exc)}
        except Exception as exc:
            log.exception("%s: event %s of a batch failed", service, escape_id(item.id))
            return {"id": item.id, "status": 503, "error": f"not answered, retry: {type(exc).__name__}"}
        out: dict = {"id": item.id, "status": result.status}
        if result.reply is not None:
            out["reply"] = to_structured_doc(result.reply, json_data=True)  # reply data is made by orjson
        return out

    return list(await asyncio.gather(*(one(item) for item in items)))


def count_rejection(exc: Rejection, served_model: str | None, rejected: Counter, service: str) -> None:
    """Count a rejected event by reason and log it."""
    # The model name comes from the event: only the watched model keeps its name as a label value.
    rejected.labels(exc.model if exc.model == served_model else OTHER, exc.reason).inc()
    log.warning("%s: rejected event (%s): %s", service, exc.reason, escape_id(str(exc), 500))


def reply(answered: CloudEvent, event_type: str, source: str, data: dict) -> Answer:
    """A 200 carrying a reply event: same id and extensions as the event it answers."""
    event = CloudEvent(answered.id, source, event_type, orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
                       "application/json", now_rfc3339(), extensions=dict(answered.extensions))
    return Answer(200, event)


class EventDetector(Service):
    """A detector core the broker delivers events to (outlier, drift): what the event ingress
    (seismo.services.event_http) reads from its settings. Subclasses give `answer` and `rejected`, and call
    `sampling_metrics` once and `sampled_out` first thing in `answer`."""

    settings: Any
    sampled_out_events: Counter

    def sampling_metrics(self, registry: CollectorRegistry) -> None:
        """The sample's accounting (seismo.sampling): the share watched, and the events left out."""
        share = Gauge(f"seismo_{self.name}_sample_share", "Share of the model's predictions this detector watches (1: all)", ["model"],
                      registry=registry)
        share.labels(self.settings.model).set(self.settings.sample_share)
        self.sampled_out_events = Counter(f"seismo_{self.name}_events_sampled_out", "Events of the watched model left out of the "
                                          "sample (SEISMO_*_SAMPLE_SHARE)", ["model"], registry=registry)

    def sampled_out(self, event: CloudEvent) -> bool:
        """True (counted) when the event's prediction is outside the watched share. Only the watched model's
        request and response events are sampled; any other is left to the checks that refuse it. A sampled-out
        event's payload is not read (that is the saving): a malformed one is answered 204, not 400."""
        share = self.settings.sample_share
        if (share >= 1.0 or model_of(event) != self.settings.model or kind_of(event.type) not in (EventKind.REQUEST, EventKind.RESPONSE)
                or in_sample(prediction_id_of(event), share)):
            return False
        self.sampled_out_events.labels(self.settings.model).inc()
        return True

    def with_share(self, data: dict) -> dict:
        """A result's data with the share it was sampled at, when it was (exact accounting on every result)."""
        return data if self.settings.sample_share >= 1.0 else {**data, "sample_share": self.settings.sample_share}

    @property
    def served_model(self) -> str:
        return self.settings.model

    @property
    def max_event_bytes(self) -> int:
        return self.settings.max_event_bytes

    @property
    def max_batch_events(self) -> int:
        return self.settings.max_batch_events
