"""The HTTP side of the event-driven detectors (outlier, drift): a delivery read into CloudEvents,
a core's `Answer` written back, a rejection answered with its 4xx. The cores never see a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.protocol.cloudevents import CloudEvent, CloudEventError, batch_from_http, from_http, is_batch, to_binary
from seismo.protocol.types import model_of
from seismo.services import senders
from seismo.services.common import BodyTooLarge, error, read_body
from seismo.services.detector_events import Answer, ForbiddenEvent, Rejection, answer_items, count_rejection


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


def refuse(exc: Rejection, served_model: str | None, rejected: Counter, service: str) -> Response:
    """The 4xx answer for a rejection, counted by reason and logged."""
    count_rejection(exc, served_model, rejected, service)
    return error(exc.status, str(exc))


def respond(answer: Answer) -> Response:
    """A single delivery's answer: the reply in binary mode, or an empty body with the status."""
    if answer.reply is None:
        return Response(status_code=answer.status)
    headers, body = to_binary(answer.reply)
    return Response(body, status_code=answer.status, headers=headers)


async def answer_batch(items: list[CloudEvent | CloudEventError], answer: Callable[[CloudEvent], Awaitable[Answer]],
                       served_model: str | None, rejected: Counter, service: str) -> Response:
    """Every event of a batch answered at once, one `{"id", "status", ...}` per item in order."""
    results = await answer_items(items, answer, served_model, rejected, service)
    return Response(orjson.dumps({"results": results}), media_type="application/json")


class Detector(Protocol):
    """What a detector core offers the event ingress."""

    name: str

    @property
    def rejected(self) -> Counter: ...
    @property
    def served_model(self) -> str | None: ...
    @property
    def max_event_bytes(self) -> int: ...
    @property
    def max_batch_events(self) -> int: ...

    async def answer(self, event: CloudEvent, headers: Mapping[str, Any] | None = None) -> Answer: ...


class DetectorEndpoints:
    """The one route of an event-driven detector: `POST /`, a single event or the broker's batch."""

    def __init__(self, core: Detector):
        self.core = core

    def routes(self) -> list[Route]:
        return [Route("/", self.deliver, methods=["POST"])]

    async def deliver(self, request: Request) -> Response:
        core = self.core
        try:
            if is_batch(request.headers):  # the broker delivers batches to triggers that declare `batch`
                items = await read_batch(request, core.max_event_bytes, core.max_batch_events)
                return await answer_batch(items, core.answer, core.served_model, core.rejected, core.name)
            event = await read_event(request, core.max_event_bytes)
            return respond(await core.answer(event, request.headers))
        except Rejection as exc:
            return refuse(exc, core.served_model, core.rejected, core.name)
