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

import numpy as np
import orjson
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response

from seismo.events.binary import load_document
from seismo.events.cloudevents import CloudEvent, CloudEventError, batch_from_http, escape_id, from_http, to_binary, to_structured_doc
from seismo.events.payloads import PayloadError, instances_of
from seismo.events.types import EventKind, kind_of, model_of
from seismo.labels import OTHER
from seismo.services import senders
from seismo.services.common import BodyTooLarge, error, read_body
from seismo.times import now_rfc3339

log = logging.getLogger(__name__)



class Rejection(Exception):
    def __init__(self, reason: str, message: str, model: str = "unknown", status: int = 400):
        super().__init__(message)
        self.reason, self.model, self.status = reason, model, status


class ForbiddenEvent(CloudEventError):
    """A batch item its sender may not send (seismo.services.senders): answered 403 in its place."""

    def __init__(self, event: CloudEvent, why: str):
        super().__init__(why)
        self.event = event


async def read_event(request: Request, max_bytes: int) -> CloudEvent:
    """The delivered event, or a Rejection saying why it cannot be read (or why its sender may not send it)."""
    try:
        body = await read_body(request, max_bytes)
    except BodyTooLarge as exc:
        raise Rejection("too_large", str(exc), status=413) from None
    try:
        event = from_http(request.headers, body)
    except CloudEventError as exc:
        raise Rejection("invalid_event", str(exc)) from None
    if why := senders.refusal(senders.caller(request.scope), event):
        raise Rejection("forbidden_sender", why, model_of(event), status=403)
    return event


@dataclass(frozen=True)
class Answer:
    """What a detector says to one delivered event: a status, and the reply event when there is one."""

    status: int
    reply: CloudEvent | None = None

    def response(self) -> Response:
        """The single delivery's answer: the reply in binary mode, or an empty body with the status."""
        if self.reply is None:
            return Response(status_code=self.status)
        headers, body = to_binary(self.reply)
        return Response(body, status_code=self.status, headers=headers)


async def read_batch(request: Request, max_bytes: int, max_events: int) -> list[CloudEvent | CloudEventError]:
    """A batched delivery's events (a bad one is its error in its place), or a Rejection for the whole body."""
    try:
        body = await read_body(request, max_bytes)
    except BodyTooLarge as exc:
        raise Rejection("too_large", str(exc), status=413) from None
    try:
        items = batch_from_http(body, max_events)
    except CloudEventError as exc:
        raise Rejection("invalid_event", str(exc)) from None
    identity = senders.caller(request.scope)
    if identity is None:
        return items
    return [ForbiddenEvent(item, why) if isinstance(item, CloudEvent) and (why := senders.refusal(identity, item)) else item
            for item in items]


async def answer_batch(items: list[CloudEvent | CloudEventError], answer: Callable[[CloudEvent], Awaitable[Answer]],
                       served_model: str | None, rejected: Counter, service: str) -> Response:
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

    results = await asyncio.gather(*(one(item) for item in items))
    return Response(orjson.dumps({"results": results}), media_type="application/json")


async def request_instances(request: Request, max_bytes: int, served_model: str | None, shape: tuple[int, ...] | None) -> tuple[CloudEvent, np.ndarray]:
    """The inference-request event and its instances, or a Rejection saying why not."""
    return instances_of_event(await read_event(request, max_bytes), served_model, shape)


def instances_of_event(event: CloudEvent, served_model: str | None, shape: tuple[int, ...] | None) -> tuple[CloudEvent, np.ndarray]:
    """An inference-request event's instances, or a Rejection saying why not."""
    model = model_of(event)
    if kind_of(event.type) is not EventKind.REQUEST:
        raise Rejection("wrong_type", f"event type {event.type!r} is not an inference request", model)
    if served_model and model != served_model:
        raise Rejection("unknown_model", f"no detector for model {model!r} here (this one watches {served_model!r})", model)
    try:
        array = instances_of(load_document(event.data, what="event data"))  # JSON, or OIP binary tensors
    except (PayloadError, CloudEventError) as exc:
        raise Rejection("bad_payload", str(exc), model) from None
    if array.dtype.kind not in "biuf":
        raise Rejection("bad_payload", f"instances must be numeric, got {array.dtype}", model)
    if shape is not None and tuple(array.shape[1:]) != tuple(shape):
        raise Rejection("wrong_shape", f"instances have shape {list(array.shape[1:])}; the detector's reference has {list(shape)}", model)
    if not np.isfinite(array).all():
        raise Rejection("bad_payload", "instances contain NaN or infinity", model)
    return event, array.astype(np.float32, copy=False)


async def accept(request: Request, max_bytes: int, served_model: str | None, shape: tuple[int, ...] | None,
                 rejected: Counter, service: str) -> tuple[CloudEvent, np.ndarray] | Response:
    """The event and its instances, or the 4xx answer for a rejection (counted and logged here)."""
    try:
        return await request_instances(request, max_bytes, served_model, shape)
    except Rejection as exc:
        return refuse(exc, served_model, rejected, service)


def count_rejection(exc: Rejection, served_model: str | None, rejected: Counter, service: str) -> None:
    """Count a rejected event by reason and log it."""
    # The model name comes from the event: only the watched model keeps its name as a label value.
    rejected.labels(exc.model if exc.model == served_model else OTHER, exc.reason).inc()
    log.warning("%s: rejected event (%s): %s", service, exc.reason, escape_id(str(exc), 500))


def refuse(exc: Rejection, served_model: str | None, rejected: Counter, service: str) -> Response:
    """The 4xx answer for a rejection, counted by reason and logged."""
    count_rejection(exc, served_model, rejected, service)
    return error(exc.status, str(exc))


def reply(answered: CloudEvent, event_type: str, source: str, data: dict) -> Answer:
    """A 200 carrying a reply event: same id and extensions as the event it answers."""
    event = CloudEvent(answered.id, source, event_type, orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
                       "application/json", now_rfc3339(), extensions=dict(answered.extensions))
    return Answer(200, event)
