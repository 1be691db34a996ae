"""The broker over HTTP: the ingress (`POST /`, `POST /{namespace}/{broker}`) and `GET /v1/triggers`."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.broker.triggers import Trigger, load_triggers
from seismo.protocol.cloudevents import CloudEvent, CloudEventError, batch_from_http, escape_id, from_http, is_batch
from seismo.services import senders
from seismo.services.api.broker import OPERATIONS
from seismo.services.app import build_app
from seismo.services.auth import AuthSettings
from seismo.services.broker.core import Broker
from seismo.services.broker.settings import DEFAULT_TRIGGERS, INPUT_TRIGGERS, BrokerSettings
from seismo.services.common import BodyTooLarge, JSONResponse, error, read_body
from seismo.tracing import Tracing

log = logging.getLogger(__name__)


class BrokerEndpoints:
    def __init__(self, broker: Broker):
        self.broker = broker

    def routes(self) -> list[Route]:
        return [
            Route("/", self.ingress, methods=["POST"]),
            Route("/{namespace}/{broker}", self.ingress, methods=["POST"]),
            Route("/v1/triggers", self.list_triggers, methods=["GET"]),
        ]

    async def ingress(self, request: Request) -> Response:
        broker, settings = self.broker, self.broker.settings
        if not broker.ready:
            return error(503, "broker is starting or stopping")
        if broker.journal_full and not await broker.room_made():
            broker.count_rejected("journal_full")
            return error(503, f"broker journal is full ({settings.max_journal_bytes} bytes in use); retry later",
                         headers={"Retry-After": "5"})
        try:
            body = await read_body(request, settings.max_event_bytes)
            if is_batch(request.headers):  # Seismo's own model server sends several events at once
                items = batch_from_http(body, settings.max_batch_events)
                return JSONResponse({"results": await broker.publish_batch(items, senders.caller(request.scope))})
            event = from_http(request.headers, body)
        except BodyTooLarge as exc:
            broker.count_rejected("too_large")
            return error(413, str(exc))
        except CloudEventError as exc:
            broker.count_rejected("invalid")
            return error(400, str(exc))
        return await self._publish(event, senders.caller(request.scope))

    async def _publish(self, event: CloudEvent, sender: str | None) -> Response:
        broker = self.broker
        if why := broker.refusal(event, sender):
            return error(403, why)
        try:
            await broker.publish(event, sender)
        except Exception as exc:
            log.exception("journal write failed for event %s", escape_id(event.id))
            broker.count_rejected("journal_error")
            return error(503, f"event not stored, retry: {type(exc).__name__}")
        return Response(status_code=202)

    async def list_triggers(self, request: Request) -> Response:
        return JSONResponse({"triggers": [
            {"name": t.name, "filter": {"attributes": dict(t.filter_attributes)}, "subscriber": {"uri": t.subscriber_uri}}
            for t in self.broker.triggers
        ]})


def create_app(settings: BrokerSettings, registry: CollectorRegistry, triggers: list[Trigger] | None = None) -> Starlette:
    """The `Broker` (on `app.state.broker`) behind its ingress; `triggers` default to the settings' file."""
    auth = AuthSettings()
    if triggers is None:
        triggers = load_triggers(settings.triggers_file)
        if settings.input_detectors and settings.triggers_file == DEFAULT_TRIGGERS:  # a file of one's own lists all its triggers
            triggers += load_triggers(INPUT_TRIGGERS)
    broker = Broker(settings, triggers, registry, auth, Tracing("broker"))
    return build_app(broker, BrokerEndpoints(broker).routes(), registry, OPERATIONS, event_paths=("*",), auth=auth)
