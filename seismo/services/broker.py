"""`seismo serve broker`: a durable CloudEvents broker with Knative Broker semantics.

Ingress (`POST /` or `POST /{namespace}/{broker}`) answers 202 once the event and its pending
deliveries are committed to the journal; 400 names what is wrong with an invalid event; 413 when it is
over the size limit. Triggers are read from a YAML file (see seismo/broker/triggers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.broker.dispatcher import DispatchMetrics, Dispatcher
from seismo.broker.journal import GroupCommitter, IncomingEvent, Journal
from seismo.broker.triggers import Trigger, load_triggers
from seismo.events.cloudevents import CloudEvent, CloudEventError, from_http, to_binary
from seismo.events.types import model_of
from seismo.http import EventPoster
from seismo.services.common import (
    EXCEPTION_HANDLERS,
    BodyTooLarge,
    JSONResponse,
    data_dir,
    error,
    health_routes,
    read_body,
)

log = logging.getLogger(__name__)
DEFAULT_TRIGGERS = Path(__file__).resolve().parent.parent / "config" / "triggers.yaml"


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_BROKER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8090
    """Ingress and API port."""
    triggers_file: Path = DEFAULT_TRIGGERS
    """YAML file of triggers (Knative Trigger spec shape)."""
    journal_path: Path = Field(default_factory=lambda: data_dir() / "broker.db")
    """SQLite file holding events until every matching trigger has them."""
    synchronous: str = "full"
    """SQLite synchronous mode: `full` survives power loss, `normal` only a process crash (faster)."""
    max_event_bytes: int = 10 * 1024 * 1024
    """Largest event body accepted; bigger ones get 413."""
    delivery_concurrency: int = 32
    """Deliveries in flight at once, per trigger."""
    max_backoff_seconds: float = 60.0
    """Cap on the wait between retries, whatever the backoff policy computes."""
    poll_interval_seconds: float = 0.25
    """How often an idle trigger looks for retries that came due."""


class _Metrics(DispatchMetrics):
    def __init__(self, registry: CollectorRegistry):
        self.received = Counter("seismo_broker_events_received", "Events accepted by the ingress", ["model", "type"], registry=registry)
        self.rejected = Counter("seismo_broker_events_rejected", "Events refused by the ingress", ["reason"], registry=registry)
        self.unmatched = Counter("seismo_broker_events_unmatched", "Accepted events no trigger matched", ["type"], registry=registry)
        self.replies = Counter("seismo_broker_replies", "Reply events ingested from subscribers' answers", ["type"], registry=registry)
        self.deliveries = Counter("seismo_broker_deliveries", "Delivery attempts by trigger and outcome", ["trigger", "outcome"], registry=registry)
        self.retries = Counter("seismo_broker_retries", "Deliveries scheduled for another attempt", ["trigger"], registry=registry)
        self.dead = Counter("seismo_broker_dead_letters", "Events that exhausted their retries", ["trigger", "destination"], registry=registry)
        self.backlog = Gauge("seismo_broker_backlog", "Deliveries pending per trigger", ["trigger"], registry=registry)
        self.dead_kept = Gauge("seismo_broker_dead_letter_table", "Events kept in the dead-letter table", ["trigger"], registry=registry)
        self.latency = Histogram(
            "seismo_broker_delivery_seconds", "Time for a subscriber to answer a delivery", ["trigger"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry,
        )

    def delivered(self, trigger: str, seconds: float) -> None:
        self.deliveries.labels(trigger, "delivered").inc()
        self.latency.labels(trigger).observe(seconds)

    def failed_attempt(self, trigger: str, reason: str) -> None:
        self.deliveries.labels(trigger, f"failed_{reason}" if reason == "network" else "failed_http").inc()

    def retried(self, trigger: str) -> None:
        self.retries.labels(trigger).inc()

    def dead_lettered(self, trigger: str, kept: bool) -> None:
        self.dead.labels(trigger, "table" if kept else "sink").inc()


class Broker:
    """Ingress plus dispatcher around one journal; the app's lifespan starts and stops it."""

    def __init__(self, settings: BrokerSettings, triggers: list[Trigger], registry: CollectorRegistry):
        self.settings = settings
        self.triggers = triggers
        self.metrics = _Metrics(registry)
        for trigger in triggers:  # every series exists from the start, so dashboards show zeros
            self.metrics.backlog.labels(trigger.name)
            self.metrics.dead_kept.labels(trigger.name)
        self.committer: GroupCommitter | None = None
        self.dispatcher: Dispatcher | None = None
        self.client: EventPoster | None = None
        self._gauges_task: asyncio.Task | None = None
        self.ready = False

    async def start(self) -> None:
        journal = Journal(self.settings.journal_path, self.settings.synchronous)
        self.committer = GroupCommitter(journal)
        self.committer.start()
        self.client = EventPoster(max_connections=self.settings.delivery_concurrency * max(1, len(self.triggers)))
        await self.client.start()
        self.dispatcher = Dispatcher(
            self.triggers,
            self.committer,
            self.client,
            self._ingest_reply,
            self.metrics,
            concurrency=self.settings.delivery_concurrency,
            max_backoff=self.settings.max_backoff_seconds,
            poll_interval=self.settings.poll_interval_seconds,
        )
        self.dispatcher.start()
        self._gauges_task = asyncio.create_task(self._refresh_gauges())
        backlog = await self.committer.read(journal.backlog)
        if backlog:
            log.info("resuming pending deliveries from %s: %s", self.settings.journal_path, backlog)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._gauges_task:
            self._gauges_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gauges_task
        if self.dispatcher:
            await self.dispatcher.stop()
        if self.committer:
            await self.committer.close()
        if self.client:
            await self.client.close()

    async def _refresh_gauges(self) -> None:
        assert self.committer is not None
        while True:
            try:
                backlog = await self.committer.read(self.committer.journal.backlog)
                kept = await self.committer.read(self.committer.journal.dead_letter_counts)
                for trigger in self.triggers:
                    self.metrics.backlog.labels(trigger.name).set(backlog.get(trigger.name, 0))
                    self.metrics.dead_kept.labels(trigger.name).set(kept.get(trigger.name, 0))
            except Exception:
                log.exception("refreshing backlog gauges failed")
            await asyncio.sleep(1.0)

    async def publish(self, event: CloudEvent) -> int:
        """Journal the event for every matching trigger; returns how many triggers matched."""
        assert self.committer is not None and self.dispatcher is not None
        attributes = {"type": event.type, "source": event.source, "id": event.id, **event.extensions}
        if event.subject is not None:
            attributes["subject"] = event.subject
        matched = tuple(t.name for t in self.triggers if t.matches(attributes))
        self.metrics.received.labels(model_of(event), event.type).inc()
        if not matched:
            self.metrics.unmatched.labels(event.type).inc()
            return 0
        headers, body = to_binary(event)
        await self.committer.ingest(IncomingEvent(event.id, event.type, headers, body, matched))
        self.dispatcher.wake(matched)
        return len(matched)

    async def _ingest_reply(self, event: CloudEvent) -> None:
        await self.publish(event)
        self.metrics.replies.labels(event.type).inc()


def create_app(settings: BrokerSettings, registry: CollectorRegistry, triggers: list[Trigger] | None = None) -> Starlette:
    broker = Broker(settings, triggers if triggers is not None else load_triggers(settings.triggers_file), registry)

    async def ingress(request: Request) -> Response:
        if not broker.ready:
            return error(503, "broker is starting or stopping")
        try:
            body = await read_body(request, settings.max_event_bytes)
        except BodyTooLarge as exc:
            broker.metrics.rejected.labels("too_large").inc()
            return error(413, str(exc))
        try:
            event = from_http(request.headers, body)
        except CloudEventError as exc:
            broker.metrics.rejected.labels("invalid").inc()
            return error(400, str(exc))
        try:
            await broker.publish(event)
        except Exception as exc:
            log.exception("journal write failed for event %s", event.id)
            broker.metrics.rejected.labels("journal_error").inc()
            return error(503, f"event not stored, retry: {type(exc).__name__}")
        return Response(status_code=202)

    async def list_triggers(request: Request) -> Response:
        return JSONResponse(
            {
                "triggers": [
                    {"name": t.name, "filter": {"attributes": dict(t.filter_attributes)}, "subscriber": {"uri": t.subscriber_uri}}
                    for t in broker.triggers
                ]
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await broker.start()
        log.info("broker ready on port %d with %d triggers", settings.port, len(broker.triggers))
        try:
            yield
        finally:
            await broker.stop()

    routes = [
        Route("/", ingress, methods=["POST"]),
        Route("/{namespace}/{broker}", ingress, methods=["POST"]),
        Route("/v1/triggers", list_triggers, methods=["GET"]),
        *health_routes(registry, lambda: broker.ready),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.broker = broker
    return app
