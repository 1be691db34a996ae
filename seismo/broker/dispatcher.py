"""Delivery: one loop per trigger, so a slow or dead subscriber holds no other trigger back.

Each loop takes due deliveries from the journal, sends them concurrently (bounded), and writes each
outcome back: delivered (row removed), retry later (backoff as the trigger's delivery spec says), or
dead-lettered after the last retry (sent to the dead-letter sink with Knative's error extensions, or
kept in the dead-letter table when there is no sink or it refuses too).

A 2xx answer that carries a CloudEvent is a reply (Knative's contract): it is ingested as a new event.

A trigger with `batch` > 1 (a Seismo extension for subscribers that take CloudEvents' batched mode:
the logger, outlier and drift services) gets up to that many events per request; its answer's
per-event results (`{"results": [{"status", "error"?, "reply"?}]}`) decide each event's outcome as if
it had come alone, and a result's `reply` (a structured-mode CloudEvent) is journaled like a single
delivery's reply. A subscriber that refuses a batch as a whole (400 or 415) gets single events from
then on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from seismo.broker.journal import DeadLettered, Delivered, GroupCommitter, PendingDelivery, RetryLater
from seismo.broker.replicas import Replicas
from seismo.broker.triggers import Trigger
from seismo.protocol.cloudevents import (
    BATCH_CONTENT_TYPE,
    CloudEvent,
    CloudEventError,
    binary_to_structured_doc,
    from_http,
    from_structured_doc,
)
from seismo.tasks import cancel_and_wait
from seismo.tracing import Tracing, binary_trace, end
from seismo.transport.poster import EventPoster, SendError, Unsendable

log = logging.getLogger(__name__)

# Knative's dispatcher retries these statuses (and network errors); any other 4xx is final.
RETRYABLE_STATUSES = frozenset({404, 408, 409, 429})


@dataclass(frozen=True)
class Attempt:
    ok: bool
    code: int | None  # None: no HTTP answer (connection refused, timeout)
    error: str
    reply: CloudEvent | None = None
    seconds: float = 0.0
    final: bool = False  # nothing a retry could change (an event HTTP cannot carry): dead-letter now

    @property
    def retryable(self) -> bool:
        return not self.final and (self.code is None or self.code >= 500 or self.code in RETRYABLE_STATUSES)


MAX_BATCH_BYTES = 8 * 1024 * 1024
"""Event data in one batched delivery at most, well under the subscribers' 32 MiB body limit (a
bigger event goes alone: a 413 for a whole batch would dead-letter every event in it)."""


def _groups(items: list[PendingDelivery], per_request: int, max_bytes: int) -> list[list[PendingDelivery]]:
    """Consecutive groups of at most `per_request` items and `max_bytes` of bodies (one item always fits)."""
    groups: list[list[PendingDelivery]] = []
    current: list[PendingDelivery] = []
    size = 0
    for item in items:
        if current and (len(current) == per_request or size + len(item.body) > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item.body)
    if current:
        groups.append(current)
    return groups


class DispatchMetrics:
    """The hooks the dispatcher calls; the service wires them to Prometheus."""

    def delivered(self, trigger: str, seconds: float) -> None: ...
    def failed_attempt(self, trigger: str, reason: str) -> None: ...
    def retried(self, trigger: str) -> None: ...
    def dead_lettered(self, trigger: str, kept: bool) -> None: ...
    def batch_sent(self, trigger: str, events: int) -> None: ...


class Dispatcher:
    def __init__(
        self,
        triggers: list[Trigger],
        committer: GroupCommitter,
        client: EventPoster,
        ingest_reply: Callable[[CloudEvent, Trigger], Awaitable[None]],
        metrics: DispatchMetrics,
        concurrency: int = 32,
        max_backoff: float = 60.0,
        poll_interval: float = 0.25,
        tracing: Tracing | None = None,
        replicas: Replicas | None = None,
    ):
        self.triggers = triggers
        self.committer = committer
        self.client = client
        self.ingest_reply = ingest_reply
        self.metrics = metrics
        self.concurrency = concurrency
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.tracing = tracing or Tracing("broker")
        self.replicas = replicas or Replicas()
        self._wakeups = {t.name: asyncio.Event() for t in triggers}
        # Set when a delivery of the trigger finishes: a loop with every slot busy waits on it, not on the
        # poll interval (which capped a busy subscriber at concurrency / 0.25 s, about 128 events/s).
        self._freed = {t.name: asyncio.Event() for t in triggers}
        self._batching = {t.name for t in triggers if t.batch > 1}  # until a subscriber refuses a batch
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(t), name=f"trigger-{t.name}") for t in self.triggers]

    def stopped(self) -> list[str]:
        """Delivery loops that ended before stop() (none should): /healthz reports them."""
        return [t.get_name() for t in self._tasks if t.done()]

    def wake(self, trigger_names: tuple[str, ...]) -> None:
        for name in trigger_names:
            self._wakeups[name].set()

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)

    async def _run(self, trigger: Trigger) -> None:
        inflight: set[int] = set()
        slots = asyncio.Semaphore(self.concurrency)
        wakeup, freed = self._wakeups[trigger.name], self._freed[trigger.name]
        sends: set[asyncio.Task] = set()
        try:
            while True:
                per_request = trigger.batch if trigger.name in self._batching else 1
                capacity = self.concurrency * per_request
                free = capacity - len(inflight)
                if free < max(1, capacity // 4):  # busy: read the journal again once a quarter of the slots are free
                    freed.clear()
                    try:
                        await asyncio.wait_for(freed.wait(), self.poll_interval)
                    except TimeoutError:
                        pass
                    if capacity - len(inflight) < max(1, capacity // 4):
                        continue
                    free = capacity - len(inflight)
                batch = []
                try:
                    batch = await self.committer.read(self.committer.journal.due, trigger.name, time.time(), free, set(inflight))
                except Exception:
                    log.exception("trigger %s: reading the journal failed", trigger.name)
                    await asyncio.sleep(self.poll_interval)  # never spin on a failing journal
                if not batch:
                    wakeup.clear()
                    try:
                        await asyncio.wait_for(wakeup.wait(), self.poll_interval)
                    except TimeoutError:
                        pass
                    continue
                for group in _groups(batch, per_request, MAX_BATCH_BYTES):
                    await slots.acquire()
                    inflight.update(item.event_seq for item in group)
                    if per_request == 1:
                        task = asyncio.create_task(self._deliver(trigger, group[0], inflight, slots))
                    else:
                        task = asyncio.create_task(self._deliver_group(trigger, group, inflight, slots))
                    sends.add(task)
                    task.add_done_callback(sends.discard)
        finally:
            for task in sends:
                task.cancel()

    async def _deliver(self, trigger: Trigger, item: PendingDelivery, inflight: set[int], slots: asyncio.Semaphore) -> None:
        try:
            # The delivery's own span, child of the event's origin; the subscriber continues it (HTTP traceparent).
            span = self.tracing.start(f"deliver {trigger.name}", binary_trace(item.headers), "CLIENT",
                                      {"seismo.trigger": trigger.name, "seismo.attempt": item.attempts + 1})
            try:
                attempt = await self._send(trigger.subscriber_uri, {**item.headers, **self.tracing.context_of(span)}, item.body,
                                           trigger.delivery.timeout)
            except Exception as exc:  # a bug or an event nothing can send: dead-letter it, never retry in a loop
                log.exception("trigger %s: sending event %d failed unexpectedly", trigger.name, item.event_seq)
                attempt = Attempt(False, None, f"internal error: {type(exc).__name__}: {exc}"[:500], final=True)
            end(span, None if attempt.ok else attempt.error, **{"http.response.status_code": attempt.code})
            await self.committer.record(await self._settle(trigger, item, attempt))
        except asyncio.CancelledError:
            raise  # shutting down: the delivery stays pending in the journal and is sent after restart
        except Exception:
            log.exception("trigger %s: recording the outcome of event %d failed", trigger.name, item.event_seq)
            await asyncio.sleep(1.0)  # the journal is failing: hold the slot a moment instead of spinning
        finally:
            inflight.discard(item.event_seq)
            slots.release()
            self._freed[trigger.name].set()

    async def _deliver_group(self, trigger: Trigger, items: list[PendingDelivery], inflight: set[int], slots: asyncio.Semaphore) -> None:
        """Several events in one batched request; each outcome recorded as if it had been sent alone."""
        try:
            # One span per event (each in its own trace); a batched request has no single parent to name.
            spans = [self.tracing.start(f"deliver {trigger.name}", binary_trace(item.headers), "CLIENT",
                                        {"seismo.trigger": trigger.name, "seismo.batch_size": len(items)}) for item in items]
            try:
                attempts = await self._send_group(trigger, items)
            except Exception as exc:  # a bug: dead-letter them, never retry in a loop
                log.exception("trigger %s: sending a batch of %d events failed unexpectedly", trigger.name, len(items))
                attempts = [Attempt(False, None, f"internal error: {type(exc).__name__}: {exc}"[:500], final=True)] * len(items)
            for index, span in enumerate(spans):  # attempts None: the subscriber refused the batch as such
                end(span, None if attempts is None or attempts[index].ok else attempts[index].error)
            if attempts is None:  # the subscriber does not take batches: these go one by one, and so will the rest
                for item in items:
                    attempt = await self._send(trigger.subscriber_uri, item.headers, item.body, trigger.delivery.timeout)
                    await self.committer.record(await self._settle(trigger, item, attempt))
                return
            # Replies journaled together, then the outcomes (each a group commit).
            outcomes = await asyncio.gather(*(self._settle(trigger, item, attempt) for item, attempt in zip(items, attempts, strict=True)))
            await asyncio.gather(*(self.committer.record(outcome) for outcome in outcomes))
        except asyncio.CancelledError:
            raise  # shutting down: the deliveries stay pending in the journal and are sent after restart
        except Exception:
            log.exception("trigger %s: recording the outcomes of a batch failed", trigger.name)
            await asyncio.sleep(1.0)
        finally:
            inflight.difference_update(item.event_seq for item in items)
            slots.release()
            self._freed[trigger.name].set()

    async def _send_group(self, trigger: Trigger, items: list[PendingDelivery]) -> list[Attempt] | None:
        """One Attempt per item from one batched request; None when the subscriber refused the batch as a whole."""
        # Journaled events were checked at ingress: written out as they are, not parsed again.
        body = orjson.dumps([binary_to_structured_doc(item.headers, item.body) for item in items])
        self.metrics.batch_sent(trigger.name, len(items))
        started = time.perf_counter()
        try:
            response = await self.client.post(self.replicas.pick(trigger.subscriber_uri), {"content-type": BATCH_CONTENT_TYPE}, body,
                                              trigger.delivery.timeout)
        except SendError as exc:
            return [Attempt(False, None, str(exc)[:500], seconds=time.perf_counter() - started)] * len(items)
        seconds = time.perf_counter() - started
        if response.status in (400, 415):
            log.warning("trigger %s: %s refused a batch (%d: %s); sending single events from now on", trigger.name,
                        trigger.subscriber_uri, response.status, response.body[:200])
            self._batching.discard(trigger.name)
            return None
        if not 200 <= response.status < 300:
            text = response.body[:500].decode("utf-8", "replace")
            return [Attempt(False, response.status, f"HTTP {response.status}: {text}", seconds=seconds)] * len(items)
        try:
            results = orjson.loads(response.body)["results"]
            if not isinstance(results, list) or len(results) != len(items):
                raise ValueError("one result per event expected")
            answers = [(int(r["status"]), str(r.get("error", ""))[:500], r.get("reply")) for r in results]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):  # a 2xx without per-event results: all taken
            log.warning("trigger %s: %s answered a batch %d without one result per event; all %d counted delivered, no replies read",
                        trigger.name, trigger.subscriber_uri, response.status, len(items))
            answers = [(response.status, "", None)] * len(items)
        return [Attempt(200 <= code < 300, code, "" if 200 <= code < 300 else f"HTTP {code}: {error}",
                        self._batch_reply(trigger, reply) if 200 <= code < 300 else None, seconds)
                for code, error, reply in answers]

    @staticmethod
    def _batch_reply(trigger: Trigger, doc: object) -> CloudEvent | None:
        """A batched result's reply event (structured mode); an invalid one is logged and ignored, as a
        single delivery's invalid reply is."""
        if doc is None:
            return None
        try:
            return from_structured_doc(doc)
        except (CloudEventError, TypeError, ValueError) as exc:  # TypeError: orjson refuses data nested over 254 levels
            log.warning("trigger %s: subscriber %s replied with an invalid CloudEvent in a batch (%s); reply ignored",
                        trigger.name, trigger.subscriber_uri, exc)
            return None

    async def _settle(self, trigger: Trigger, item: PendingDelivery, attempt: Attempt):
        """The outcome to record for an attempt, after journaling its reply. The reply is journaled before
        the delivery counts as done: a crash in between redelivers the event (and the subscriber replies
        again) instead of losing the reply."""
        if attempt.ok and attempt.reply is not None:
            try:
                await self.ingest_reply(attempt.reply, trigger)
            except Exception as exc:  # the journal refused it: try the delivery again later (with backoff)
                log.error("trigger %s: the reply to event %d was not journaled: %r", trigger.name, item.event_seq, exc)
                attempt = Attempt(False, None, f"reply not journaled: {type(exc).__name__}"[:500])
        return await self._outcome(trigger, item, attempt)

    async def _outcome(self, trigger: Trigger, item: PendingDelivery, attempt: Attempt):
        if attempt.ok:
            self.metrics.delivered(trigger.name, attempt.seconds)
            return Delivered(trigger.name, item.event_seq)
        attempts = item.attempts + 1
        reason = "unsendable" if attempt.final else "network" if attempt.code is None else f"http_{attempt.code}"
        self.metrics.failed_attempt(trigger.name, reason)
        if attempt.retryable and attempts <= trigger.delivery.retry:
            self.metrics.retried(trigger.name)
            delay = trigger.delivery.backoff(attempts, self.max_backoff)
            log.info("trigger %s: event %d failed (%s); retry %d in %.2fs", trigger.name, item.event_seq, attempt.error, attempts, delay)
            return RetryLater(trigger.name, item.event_seq, attempts, time.time() + delay)
        kept = True
        sink = trigger.delivery.dead_letter_uri
        if sink:
            headers = dict(item.headers)
            headers["ce-knativeerrordest"] = trigger.subscriber_uri
            headers["ce-knativeerrorcode"] = "" if attempt.code is None else str(attempt.code)
            headers["ce-knativeerrordata"] = base64.b64encode(attempt.error.encode()[:1024]).decode()
            dead = await self._send(sink, headers, item.body, trigger.delivery.timeout)
            kept = not dead.ok
            if kept:
                log.error("trigger %s: dead-letter sink %s refused event %d too (%s)", trigger.name, sink, item.event_seq, dead.error)
        log.warning(
            "trigger %s: event %d dead-lettered after %d attempts (%s)%s",
            trigger.name, item.event_seq, attempts, attempt.error, "; kept in the dead-letter table" if kept else "",
        )
        self.metrics.dead_lettered(trigger.name, kept)
        return DeadLettered(trigger.name, item.event_seq, attempts, attempt.code, attempt.error, kept)

    async def _send(self, uri: str, headers: dict[str, str], body: bytes, timeout: float) -> Attempt:
        started = time.perf_counter()
        try:
            response = await self.client.post(self.replicas.pick(uri), headers, body, timeout)
        except Unsendable as exc:
            return Attempt(False, None, f"unsendable: {exc}"[:500], seconds=time.perf_counter() - started, final=True)
        except SendError as exc:
            return Attempt(False, None, str(exc)[:500], seconds=time.perf_counter() - started)
        seconds = time.perf_counter() - started
        if 200 <= response.status < 300:
            reply = None
            if any(k.startswith("ce-") for k in response.headers) or "cloudevents" in response.headers.get("content-type", ""):
                try:
                    reply = from_http(response.headers, response.body)
                except CloudEventError as exc:
                    log.warning("subscriber %s replied with an invalid CloudEvent (%s); reply ignored", uri, exc)
            return Attempt(True, response.status, "", reply, seconds)
        text = response.body[:500].decode("utf-8", "replace")
        return Attempt(False, response.status, f"HTTP {response.status}: {text}", seconds=seconds)
