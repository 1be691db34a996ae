"""The model server's event sender: CloudEvents to a sink, off the request path.

`log()` never blocks and never fails a prediction: it puts the event in a bounded queue and returns.
Sender tasks deliver events in binary mode through one pooled client, retrying network errors, 5xx
and 429 with capped exponential backoff for as long as the event holds its place in the queue. An
event leaves the queue only when delivered or when dropped, and every drop is counted with its
reason: `queue_full` (the queue was at capacity), `rejected` (the sink answered another 4xx), or
`shutdown` (still queued when the server stopped and the drain timed out), or `unsendable` (an event
HTTP cannot carry, or an unexpected error while sending it: never retried, never fatal to a sender).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from seismo.protocol.cloudevents import BATCH_CONTENT_TYPE, CloudEvent, escape_id, to_batch, to_binary
from seismo.protocol.types import model_of
from seismo.retry import Backoff, is_transient
from seismo.tasks import cancel_and_wait
from seismo.transport.poster import EventPoster, SendError, Unsendable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventSenderConfig:
    sink_url: str
    capacity: int = 10_000
    """Events held at most, queued or being sent."""
    overflow: str = "drop_newest"
    """When full: drop_newest (keep what is queued) or drop_oldest (keep the freshest)."""
    on_client_error: str = "drop"
    """A 4xx other than 429 from the sink: drop (count it) or retry like a 5xx."""
    concurrency: int = 16
    """Sends in flight at once."""
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    timeout: float = 5.0
    batch_size: int = 1
    """Events sent in one request at most. Above 1, queued events go out together in CloudEvents'
    batched mode, which only Seismo's own broker takes (Knative's ingress and KServe's peers take single
    events): a sink that refuses a batch as a whole gets its events one by one, and no more batches."""
    batch_bytes: int = 8 * 1024 * 1024
    """Event data in one batch at most (a batch is one request body for the broker's size limit)."""
    linger: float = 0.0
    """Seconds a batching sender waits for more events when fewer than a batch are queued (one sender
    at a time): at low load one request then carries several predictions' events instead of one's,
    and a request's fixed cost is most of what logging costs the model server per prediction."""


class EventSender:
    def __init__(self, config: EventSenderConfig, client: EventPoster, registry: CollectorRegistry):
        if config.overflow not in ("drop_newest", "drop_oldest"):
            raise ValueError(f"overflow policy must be drop_newest or drop_oldest, not {config.overflow!r}")
        if config.on_client_error not in ("drop", "retry"):
            raise ValueError(f"on_client_error must be drop or retry, not {config.on_client_error!r}")
        self.config = config
        self.client = client
        self._queue: collections.deque[CloudEvent] = collections.deque()
        self._sending = 0  # events taken from the queue but not yet delivered or dropped
        self._queued = asyncio.Semaphore(0)  # one permit per queued event: a new event wakes one sender
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task] = []
        self._batches_taken = True  # until the sink refuses a batch as a whole
        self._lingering = False  # a sender is waiting for its batch to fill: the others leave new events to it
        self._more = asyncio.Event()  # set when an event is queued while a sender lingers
        self.sent = Counter("seismo_model_events_sent", "Events the sink accepted", ["model", "type"], registry=registry)
        self.retried = Counter("seismo_model_events_retried", "Send attempts that failed and will be retried", ["model", "reason"], registry=registry)
        self.dropped = Counter("seismo_model_events_dropped", "Events given up, by reason", ["model", "reason"], registry=registry)
        self.depth = Gauge("seismo_model_event_queue_depth", "Events held: queued or being sent", registry=registry)
        self.depth.set_function(lambda: len(self._queue) + self._sending)
        self.latency = Histogram(
            "seismo_model_event_send_seconds", "Time for the sink to accept one event (successful sends)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=registry,
        )

    @property
    def held(self) -> int:
        return len(self._queue) + self._sending

    def stopped(self) -> list[str]:
        """Sender tasks that ended (none should before stop()): /healthz reports them."""
        return [t.get_name() for t in self._tasks if t.done()]

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sender(), name=f"event-sender-{i}") for i in range(self.config.concurrency)]

    def log(self, event: CloudEvent) -> None:
        """Queue an event for delivery; never blocks, never raises."""
        if self.held >= self.config.capacity:
            if self.config.overflow == "drop_oldest" and self._queue:
                victim = self._queue.popleft()
                self.dropped.labels(model_of(victim), "queue_full").inc()
                self._queue.append(event)  # takes the victim's permit
                return
            self.dropped.labels(model_of(event), "queue_full").inc()
            return
        self._queue.append(event)
        self._idle.clear()
        self._queued.release()
        if self._lingering:
            self._more.set()

    async def _take_more(self, first: CloudEvent) -> list[CloudEvent]:
        """`first` and whatever else is queued now, up to the batch limits (never waits for more).

        Everything queued goes, including events another idle sender was already woken for: a
        prediction's request and response events are logged together, and sending them in one request
        instead of two halves the logging's HTTP cost at low load. Such a sender finds the queue empty
        when it runs and goes back to waiting (see `_sender`), so each event is still sent once."""
        batch, size = [first], len(first.data)
        while (len(batch) < self.config.batch_size and self._queue
               and size + len(self._queue[0].data) <= self.config.batch_bytes):
            if not self._queued.locked():
                await self._queued.acquire()  # free now: its permit is taken at once
            # else: the event's permit went to a sender already woken for it; that sender will find nothing.
            event = self._queue.popleft()
            batch.append(event)
            size += len(event.data)
        return batch

    async def _linger(self) -> None:
        """Wait until a batch's worth is queued or `linger` has passed (the caller holds one event)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.linger
        self._lingering = True
        try:
            while len(self._queue) + 1 < self.config.batch_size and self.config.linger > 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._more.clear()
                try:
                    await asyncio.wait_for(self._more.wait(), remaining)
                except TimeoutError:
                    break
        finally:
            self._lingering = False

    async def _sender(self) -> None:
        while True:
            await self._queued.acquire()
            # Woken for an event a batching sender took along, or for one a lingering sender will take:
            # nothing to do. (A lingering sender gives every event it leaves queued a permit again.)
            if not self._queue or self._lingering:
                continue
            event = self._queue.popleft()
            if self.config.batch_size > 1 and self._batches_taken:
                if self.config.linger > 0 and len(self._queue) + 1 < self.config.batch_size:
                    self._sending += 1  # held while it waits: counted in the depth and the capacity
                    try:
                        await self._linger()
                    except asyncio.CancelledError:
                        self.dropped.labels(model_of(event), "shutdown").inc()
                        raise
                    finally:
                        self._sending -= 1
                    batch = await self._take_more(event)
                    for _ in self._queue:  # what it leaves behind may have lost its permit to a sender that stood aside
                        self._queued.release()
                    await self._send_batch(batch)
                    continue
                await self._send_batch(await self._take_more(event))
                continue
            self._sending += 1
            try:
                await self._deliver(event)
            except asyncio.CancelledError:
                self.dropped.labels(model_of(event), "shutdown").inc()
                raise
            except Exception as exc:  # one bad event must never end a sender
                self.dropped.labels(model_of(event), "unsendable").inc()
                log.error("event %s dropped: unexpected error while sending it: %r", escape_id(event.id), exc)
            finally:
                self._sending -= 1
                if not self._queue and self._sending == 0:
                    self._idle.set()

    async def _deliver(self, event: CloudEvent) -> None:
        headers, body = to_binary(event)
        model = model_of(event)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = await self.client.post(self.config.sink_url, headers, body, self.config.timeout)
            except Unsendable as exc:
                self.dropped.labels(model, "unsendable").inc()
                log.error("event %s dropped: it cannot be sent over HTTP (%s)", escape_id(event.id), exc)
                return
            except SendError as exc:
                reason, detail = "network", str(exc)
            else:
                if response.status < 300:
                    self.latency.observe(time.perf_counter() - started)
                    self.sent.labels(model, event.type).inc()
                    return
                code = response.status
                if not is_transient(code) and self.config.on_client_error == "drop":
                    self.dropped.labels(model, "rejected").inc()
                    log.warning("sink refused event %s (%s) with %d: %s", escape_id(event.id), event.type, code, response.body[:200])
                    return
                reason, detail = ("throttled" if code == 429 else f"http_{code // 100}xx"), f"HTTP {code}"
            self.retried.labels(model, reason).inc()
            attempt += 1
            delay = Backoff(self.config.initial_backoff, self.config.max_backoff).delay(attempt)
            if attempt == 1 or attempt % 20 == 0:
                log.warning("sending event %s to %s failed (%s); retrying (attempt %d)", escape_id(event.id), self.config.sink_url, detail, attempt)
            await asyncio.sleep(delay)

    async def _send_batch(self, batch: list[CloudEvent]) -> None:
        """Deliver events in one batched request; the sink's per-event results decide each one's fate."""
        self._sending += len(batch)
        pending = batch
        try:
            pending = await self._deliver_batch(batch)
        except asyncio.CancelledError:
            for event in pending:
                self.dropped.labels(model_of(event), "shutdown").inc()
            raise
        except Exception as exc:  # one bad batch must never end a sender
            for event in pending:
                self.dropped.labels(model_of(event), "unsendable").inc()
            log.error("%d events dropped: unexpected error while sending them as a batch: %r", len(pending), exc)
            pending = []
        finally:
            self._sending -= len(batch)
            if not self._queue and self._sending == 0:
                self._idle.set()

    async def _deliver_batch(self, batch: list[CloudEvent]) -> list[CloudEvent]:
        """Retry what the sink did not take until all is taken or dropped; returns [] when done.

        A sink that refuses the batch as a whole (400/415: it does not take batched mode) gets these
        events one by one, and the logger sends single events from then on."""
        pending, attempt = batch, 0
        while pending:
            started = time.perf_counter()
            try:
                response = await self.client.post(self.config.sink_url, {"content-type": BATCH_CONTENT_TYPE}, to_batch(pending),
                                                  self.config.timeout)
            except SendError as exc:
                reason, detail = "network", str(exc)
            else:
                code = response.status
                if code in (400, 415) and attempt == 0 and len(pending) == len(batch):
                    log.warning("the sink %s refused a batch (%d: %s); sending single events from now on", self.config.sink_url, code,
                                response.body[:200])
                    self._batches_taken = False
                    for event in pending:
                        await self._deliver(event)
                    return []
                if code < 300:
                    pending = self._settle(pending, response.body, time.perf_counter() - started)
                    if not pending:
                        return []
                    reason, detail = "http_5xx", f"{len(pending)} events not stored"
                elif is_transient(code):
                    reason, detail = ("throttled" if code == 429 else f"http_{code // 100}xx"), f"HTTP {code}"
                else:
                    for event in pending:
                        self.dropped.labels(model_of(event), "rejected").inc()
                    log.warning("sink refused a batch of %d events with %d: %s", len(pending), code, response.body[:200])
                    return []
            for event in pending:
                self.retried.labels(model_of(event), reason).inc()
            attempt += 1
            if attempt == 1 or attempt % 20 == 0:
                log.warning("sending %d events to %s failed (%s); retrying (attempt %d)", len(pending), self.config.sink_url, detail, attempt)
            await asyncio.sleep(Backoff(self.config.initial_backoff, self.config.max_backoff).delay(attempt))
        return []

    def _settle(self, pending: list[CloudEvent], body: bytes, seconds: float) -> list[CloudEvent]:
        """Count each event by its result in the sink's answer; the ones to send again."""
        try:
            results = orjson.loads(body)["results"]
            if not isinstance(results, list) or len(results) != len(pending):
                raise ValueError("one result per event expected")
            statuses = [int(r["status"]) for r in results]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            statuses = [202] * len(pending)  # a 2xx without per-event results: the sink took them all
        again = []
        for event, status in zip(pending, statuses, strict=True):
            model = model_of(event)
            if status < 300:
                self.latency.observe(seconds)
                self.sent.labels(model, event.type).inc()
            elif is_transient(status) or self.config.on_client_error == "retry":
                again.append(event)
            else:
                self.dropped.labels(model, "rejected").inc()
                log.warning("sink refused event %s (%s) in a batch with %d", escape_id(event.id), event.type, status)
        return again

    async def drain(self, timeout: float) -> bool:
        """Wait until everything held is delivered or dropped; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, drain_timeout: float = 5.0) -> None:
        if not await self.drain(drain_timeout):
            log.warning("stopping with %d events undelivered; counted as dropped (shutdown)", self.held)
        await cancel_and_wait(self._tasks)
        for event in self._queue:
            self.dropped.labels(model_of(event), "shutdown").inc()
        self._queue.clear()
