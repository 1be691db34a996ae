"""The broker's core (`seismo serve broker`): a durable CloudEvents broker with Knative Broker semantics.

Ingress (`POST /` or `POST /{namespace}/{broker}`) answers 202 once the event and its pending
deliveries are committed to the journal; 400 names what is wrong with an invalid event; 413 when it is
over the size limit. Triggers are read from a YAML file (see seismo/broker/triggers.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from seismo.broker.dispatcher import Dispatcher, DispatchMetrics
from seismo.broker.journal import GroupCommitter, IncomingEvent, Journal
from seismo.broker.replicas import Replicas
from seismo.broker.triggers import Trigger, TriggerIndex
from seismo.labels import LabelValues, event_type_label
from seismo.protocol.cloudevents import CloudEvent, CloudEventError, escape_id, to_binary
from seismo.protocol.types import model_of
from seismo.services import senders
from seismo.services.auth import AuthSettings, TokenSet, sender_token
from seismo.services.base import Service
from seismo.services.broker.settings import BrokerSettings
from seismo.tasks import cancel_and_wait, stopped_tasks
from seismo.tracing import Tracing
from seismo.transport.poster import EventPoster

log = logging.getLogger(__name__)


class _Metrics(DispatchMetrics):
    def __init__(self, registry: CollectorRegistry):
        self.received = Counter("seismo_broker_events_received", "Events accepted by the ingress", ["model", "type"], registry=registry)
        self.rejected = Counter("seismo_broker_events_rejected", "Events refused by the ingress", ["reason"], registry=registry)
        self.unmatched = Counter("seismo_broker_events_unmatched", "Accepted events no trigger matched", ["type"], registry=registry)
        self.replies = Counter("seismo_broker_replies", "Reply events ingested from subscribers' answers", ["type"], registry=registry)
        self.deliveries = Counter("seismo_broker_deliveries", "Delivery attempts by trigger and outcome", ["trigger", "outcome"], registry=registry)
        self.batch_events = Histogram("seismo_broker_batch_events", "Events per batched delivery (triggers with `batch`)", ["trigger"],
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000), registry=registry)
        self.retries = Counter("seismo_broker_retries", "Deliveries scheduled for another attempt", ["trigger"], registry=registry)
        self.dead = Counter("seismo_broker_dead_letters", "Events that exhausted their retries", ["trigger", "destination"], registry=registry)
        self.backlog = Gauge("seismo_broker_backlog", "Deliveries pending per trigger", ["trigger"], registry=registry)
        self.dead_kept = Gauge("seismo_broker_dead_letter_table", "Events kept in the dead-letter table", ["trigger"], registry=registry)
        self.journal_bytes = Gauge("seismo_broker_journal_bytes", "Bytes in use in the journal file", registry=registry)
        self.retention_removed = Counter("seismo_broker_retention_removed", "Entries removed by retention", ["what"], registry=registry)
        self.latency = Histogram(
            "seismo_broker_delivery_seconds", "Time for a subscriber to answer a delivery", ["trigger"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry,
        )

    def delivered(self, trigger: str, seconds: float) -> None:
        self.deliveries.labels(trigger, "delivered").inc()
        self.latency.labels(trigger).observe(seconds)

    def failed_attempt(self, trigger: str, reason: str) -> None:
        self.deliveries.labels(trigger, f"failed_{reason}" if reason in ("network", "unsendable") else "failed_http").inc()

    def retried(self, trigger: str) -> None:
        self.retries.labels(trigger).inc()

    def dead_lettered(self, trigger: str, kept: bool) -> None:
        self.dead.labels(trigger, "table" if kept else "sink").inc()

    def batch_sent(self, trigger: str, events: int) -> None:
        self.batch_events.labels(trigger).observe(events)


class Broker(Service):
    """Ingress plus dispatcher around one journal; the app's lifespan starts and stops it."""

    name = "broker"

    def __init__(self, settings: BrokerSettings, triggers: list[Trigger], registry: CollectorRegistry,
                 auth: AuthSettings | None = None, tracing: Tracing | None = None):
        self.settings = settings
        self.auth = auth or AuthSettings()
        self.tracing = tracing  # the dispatcher's (made there when none is handed in)
        # With auth on, every journaled event carries the identity that sent it (seismo.services.senders).
        self.stamps = TokenSet(self.auth).enabled and self.auth.events != "open"
        self.triggers = triggers
        self.replicas = Replicas(settings.replicas)  # a malformed spec fails here, naming its part
        self._matching = TriggerIndex(triggers).matching
        self.metrics = _Metrics(registry)
        for trigger in triggers:  # every series exists from the start, so dashboards show zeros
            self.metrics.backlog.labels(trigger.name)
            self.metrics.dead_kept.labels(trigger.name)
        self.committer: GroupCommitter | None = None
        self.dispatcher: Dispatcher | None = None
        self.client: EventPoster | None = None
        self._gauges_task: asyncio.Task | None = None
        self._ready = False
        self.journal_full = False
        self._last_retention = 0.0
        models = {t.filter_attributes["inferenceservicename"] for t in triggers if "inferenceservicename" in t.filter_attributes}
        self.model_label = LabelValues(models)

    @property
    def ready(self) -> bool:
        return self._ready

    def why_not_ready(self) -> str | None:
        if not self._ready:
            return "not ready"
        if self.journal_full:
            return "broker journal is full: it refuses events until deliveries drain"
        return None

    def stopped(self) -> list[str]:
        dead = stopped_tasks([self._gauges_task])
        if self.dispatcher:
            dead += self.dispatcher.stopped()
        if self.committer:
            dead += self.committer.stopped()
        return dead

    def count_rejected(self, reason: str) -> None:
        self.metrics.rejected.labels(reason).inc()

    async def start(self) -> None:
        journal = Journal(self.settings.journal_path, self.settings.synchronous)
        self.committer = GroupCommitter(journal)
        self.committer.start()
        self.client = EventPoster(max_connections=self.settings.delivery_concurrency * max(1, len(self.triggers)),
                                  bearer=sender_token(self.auth, senders.BROKER))
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
            tracing=self.tracing,
            replicas=self.replicas,
        )
        self.dispatcher.start()
        self._gauges_task = asyncio.create_task(self._refresh_gauges(), name="broker-gauges-and-retention")
        backlog = await self.committer.read(journal.backlog)
        if backlog:
            log.info("resuming pending deliveries from %s: %s", self.settings.journal_path, backlog)
        self._ready = True
        log.info("broker ready on port %d with %d triggers", self.settings.port, len(self.triggers))

    async def stop(self) -> None:
        self._ready = False
        await cancel_and_wait([self._gauges_task])
        if self.dispatcher:
            await self.dispatcher.stop()
        if self.committer:
            await self.committer.close()
        if self.client:
            await self.client.close()

    async def _refresh_gauges(self) -> None:
        assert self.committer is not None
        journal = self.committer.journal
        while True:
            try:
                backlog = await self.committer.read(journal.backlog)
                kept = await self.committer.read(journal.dead_letter_counts)
                for trigger in self.triggers:
                    self.metrics.backlog.labels(trigger.name).set(backlog.get(trigger.name, 0))
                    self.metrics.dead_kept.labels(trigger.name).set(kept.get(trigger.name, 0))
                if time.time() - self._last_retention >= 60.0:
                    self._last_retention = time.time()
                    removed = await self.committer.read(
                        journal.expire_dead_letters, time.time() - self.settings.dead_letter_retention_seconds, self.settings.max_dead_letters)
                    if removed:
                        self.metrics.retention_removed.labels("dead_letters").inc(removed)
                        log.info("retention: removed %d dead letters from the journal", removed)
                await self.make_room()
            except Exception:
                log.exception("refreshing backlog gauges failed")
            await asyncio.sleep(1.0)

    async def make_room(self) -> bool:
        """Shed the oldest dead letters beyond their byte budget, or while the journal is full, then
        measure the journal again; True when it is below its limit. Runs every second, and at once when
        the ingress finds the journal full, so a burst of events no subscriber takes cannot stop it."""
        assert self.committer is not None
        journal = self.committer.journal
        shed = await self.committer.read(journal.shed_dead_letters, self.settings.max_dead_letter_bytes, self.settings.max_journal_bytes)
        if shed:
            self.metrics.retention_removed.labels("dead_letters_shed").inc(shed)
            log.warning("shed the %d oldest dead letters: they held more than %d bytes or the journal was full",
                        shed, self.settings.max_dead_letter_bytes)
        size = await self.committer.read(journal.size_bytes)
        self.metrics.journal_bytes.set(size)
        full = size >= self.settings.max_journal_bytes
        if full != self.journal_full:
            log.warning("journal %s: %d bytes in use (limit %d)", "full, refusing new events" if full else "below its limit again",
                        size, self.settings.max_journal_bytes)
        self.journal_full = full
        return not full

    async def room_made(self) -> bool:
        """`make_room` for the ingress: a failure there is a full journal (503), never a 500."""
        try:
            return await self.make_room()
        except Exception:
            log.exception("making room in the full journal failed")
            return False

    def refusal(self, event: CloudEvent, sender: str | None) -> str | None:
        """Why `sender` may not publish `event` (counted as rejected `forbidden_sender`); None when it may."""
        why = senders.refusal(sender, event) if self.stamps else None
        if why is not None:
            self.metrics.rejected.labels("forbidden_sender").inc()
            log.warning("refused event %s: %s", escape_id(event.id), why)
        return why

    async def publish(self, event: CloudEvent, sender: str | None = None) -> int:
        """Journal the event for every matching trigger, stamped with its sender when auth is on;
        returns how many triggers matched."""
        assert self.committer is not None and self.dispatcher is not None
        event = senders.stamp(event, sender if self.stamps else None)
        attributes = {"type": event.type, "source": event.source, "id": event.id, **event.extensions}
        if event.subject is not None:
            attributes["subject"] = event.subject
        matched = self._matching(attributes)
        self.metrics.received.labels(self.model_label(model_of(event)), event_type_label(event.type)).inc()
        if not matched:
            self.metrics.unmatched.labels(event_type_label(event.type)).inc()
            return 0
        headers, body = to_binary(event)
        await self.committer.ingest(IncomingEvent(event.id, event.type, headers, body, matched))
        self.dispatcher.wake(matched)
        return len(matched)

    async def publish_batch(self, items: list[CloudEvent | CloudEventError], sender: str | None = None) -> list[dict]:
        """Journal a batch's good events together (one group commit); one result per item, in order:
        202 journaled, 400 refused (its reason), 403 not this sender's to send, 503 not journaled (the
        sender retries that one)."""
        refused = {id(item): why for item in items if isinstance(item, CloudEvent) and (why := self.refusal(item, sender))}
        events = [item for item in items if isinstance(item, CloudEvent) and id(item) not in refused]
        outcomes = iter(await asyncio.gather(*(self.publish(event, sender) for event in events), return_exceptions=True))
        results: list[dict] = []
        for item in items:
            if isinstance(item, CloudEventError):
                self.metrics.rejected.labels("invalid").inc()
                results.append({"status": 400, "error": str(item)})
                continue
            if id(item) in refused:
                results.append({"id": item.id, "status": 403, "error": refused[id(item)]})
                continue
            outcome = next(outcomes)
            if isinstance(outcome, BaseException):
                log.error("journal write failed for event %s: %r", escape_id(item.id), outcome)
                self.metrics.rejected.labels("journal_error").inc()
                results.append({"id": item.id, "status": 503, "error": f"event not stored, retry: {type(outcome).__name__}"})
            else:
                results.append({"id": item.id, "status": 202})
        return results

    async def _ingest_reply(self, event: CloudEvent, trigger: Trigger) -> None:
        """A subscriber's reply, sent as the trigger's `replies` identity; one that identity may not
        send is dropped (counted as rejected `forbidden_sender`), and the delivery still counts as done."""
        sender = trigger.replies or f"trigger:{trigger.name}"
        if self.refusal(event, sender):
            return
        await self.publish(event, sender)
        self.metrics.replies.labels(event_type_label(event.type)).inc()
