"""The logger's core (`seismo serve logger`): stores every logged event as one record per prediction.

`POST /` takes the CloudEvents the broker delivers (request, response, detector replies, feedback;
KServe and Seldon types) and folds each into its prediction's record. The answer is 200 only once the
record is committed, so the broker retries anything not stored. Reads: `GET /v1/records/{id}` and
`GET /v1/records?model=&since=&until=&limit=`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from seismo.batching import ThreadBatcher
from seismo.embeddings.extract import OUTPUT_EXTENSION, VERSION_EXTENSION, EmbeddingSource, drift_log_key, load_sources
from seismo.labels import LabelValues, event_type_label, http_code_label
from seismo.protocol.cloudevents import CloudEvent, CloudEventError, escape_id, from_http, to_structured
from seismo.protocol.limits import check_prediction_id
from seismo.protocol.seldon_graph import NO_GRAPHS, SeldonGraphs, load_graphs
from seismo.protocol.types import RECORD_EXTENSIONS, EventKind, kind_of, model_of, prediction_id_of
from seismo.services import senders
from seismo.services.base import Service
from seismo.services.logger.settings import MAX_LINEAGE_DEPTH, READ_CONCURRENCY, STORE_FAILING_SECONDS, LoggerSettings
from seismo.store import Record, RecordStore, RecordUpdate
from seismo.store.base import KEPT_ASIDE, DeadLetter, Stored, StoreUnavailable, response_view
from seismo.tasks import cancel_and_wait, stopped_tasks
from seismo.times import parse_timestamp, rfc3339
from seismo.tracing import Tracing, fail, parent_of

log = logging.getLogger(__name__)


def _event_time(event: CloudEvent, received: float) -> float:
    if event.time:
        try:
            return parse_timestamp(event.time)
        except ValueError:
            pass
    return received


def update_from_event(event: CloudEvent, received: float, embedding_sources: Mapping[str, EmbeddingSource] | None = None,
                      graphs: SeldonGraphs = NO_GRAPHS) -> RecordUpdate:
    """What an accepted event contributes to its record. ValueError if it is not a type we store.

    A non-root node of a described Seldon graph gets its own record (`seismo.protocol.seldon_graph`);
    drift events are about a window, not a record, and keep the deployment's name."""
    kind = kind_of(event.type)
    if kind is None:
        raise ValueError(f"event type {event.type!r} is not one the logger stores")
    status = event.extensions.get("statuscode")
    extensions = {k: v for k, v in event.extensions.items() if k in RECORD_EXTENSIONS}
    prediction_id, model = prediction_id_of(event), model_of(event)
    if kind is not EventKind.DRIFT:  # every id a record gets must be one GET /v1/records/{id} can name
        check_prediction_id(prediction_id, "event id (ce-id or requestid)")
    place = graphs.place(event.extensions, prediction_id) if kind is not EventKind.DRIFT else None
    if place is not None:
        prediction_id, model = place.prediction_id, place.model
        if place.parent_id is not None:
            extensions["parentid"] = place.parent_id
    source = embedding_sources.get(model) if embedding_sources and kind is EventKind.RESPONSE else None
    if source is not None and VERSION_EXTENSION not in extensions:  # a foreign model's embedding, named by config
        extensions[VERSION_EXTENSION], extensions[OUTPUT_EXTENSION] = source.version, source.output
    return RecordUpdate(
        prediction_id=prediction_id,
        kind=kind,
        event_type=event.type,
        model=model,
        time=_event_time(event, received),
        body=event.data,
        content_type=event.datacontenttype,
        status=int(status) if status and status.isdigit() else None,
        model_version=event.extensions.get("modelversion"),
        extensions=extensions,
    )


def drift_window_of(update: RecordUpdate) -> tuple[str, int, dict]:
    """(model, window number, result) of a drift event, or ValueError naming what is missing."""
    try:
        result = orjson.loads(update.body)
        window = result["window"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ValueError("a drift event's data must be a JSON object with the tested 'window' number") from None
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window < 2**53:
        raise ValueError(f"a drift event's 'window' must be a non-negative integer, got {str(window)[:40]}")
    if not isinstance(result.get("is_drift"), bool):
        raise ValueError("a drift event's 'is_drift' must be true or false")
    p_val = result.get("p_val")
    if p_val is not None and (isinstance(p_val, bool) or not isinstance(p_val, (int, float)) or not 0 <= p_val <= 1):
        raise ValueError(f"a drift event's 'p_val' must be a number in [0, 1], got {str(p_val)[:40]}")
    model = result.get("model") or update.model
    if not isinstance(model, str) or model != update.model:
        raise ValueError("a drift event's 'model' must be the model its event names (inferenceservicename)")
    return drift_log_key(model, result), window, result


class _LoggerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.received = Counter("seismo_logger_events_received", "Events received", ["model", "type"], registry=registry)
        self.stored = Counter("seismo_logger_events_stored", "Events folded into a record", ["model", "type"], registry=registry)
        self.conflicts = Counter("seismo_logger_events_conflicting", "Requests or responses for a prediction id that already had a "
                                 "different one (kept aside in the record's `conflicts` annotation, not merged), and drift results "
                                 "for a window that already had a different one (kept beside it, marked conflict)", ["model", "type"],
                                 registry=registry)
        self.duplicates = Counter("seismo_logger_events_duplicate", "Redelivered events that changed nothing", ["model", "type"],
                                  registry=registry)
        self.rejected = Counter("seismo_logger_events_rejected", "Events refused, by reason", ["reason"], registry=registry)
        self.store_seconds = Histogram(
            "seismo_logger_store_seconds", "Time to commit one batch of events to the store",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
        )
        self.dead_letters = Counter("seismo_logger_dead_letters", "Dead letters received from the broker, by the subscriber's answer",
                                    ["type", "code"], registry=registry)
        self.retention_removed = Counter("seismo_logger_retention_removed", "Entries removed by retention", ["what"], registry=registry)


class RecordLogger(Service):
    """The logger without HTTP: folds accepted events into the record store, answers reads, runs retention.

    Store calls run on one writer thread (`ThreadBatcher`), so a batch of events is one transaction and
    the event loop never waits on SQLite or Elasticsearch."""

    name = "logger"

    def __init__(self, settings: LoggerSettings, registry: CollectorRegistry, store: RecordStore | None = None,
                 tracing: Tracing | None = None):
        self.settings = settings
        self.metrics = _LoggerMetrics(registry)
        self.tracing = tracing or Tracing("logger")  # handed in by create_app; made here when a test builds the core alone
        self._given_store = store
        self.store: RecordStore | None = None
        self._ready = False
        self._tasks: list[asyncio.Task] = []
        self.embedding_sources = load_sources(settings.embeddings_config)
        self.seldon_graphs = load_graphs(settings.seldon_graphs)
        self._reference: Any = None  # the embedding reference, loaded on the first clusters request
        self.model_label = LabelValues(m.strip() for m in settings.models.split(",") if m.strip())
        self.writer: ThreadBatcher[RecordUpdate, Stored] = ThreadBatcher(self._write_batch, settings.max_batch, name="store-writer")
        self._reads = asyncio.Semaphore(READ_CONCURRENCY)
        self.store_failing_since: float | None = None  # the first of the failed writes since the last that succeeded
        self.store_error = ""

    @property
    def ready(self) -> bool:
        return self._ready

    def why_not_ready(self) -> str | None:
        """Why /readyz says 503: starting, or every write has failed for STORE_FAILING_SECONDS (a pipeline
        that stores nothing must not look healthy; the broker keeps the events meanwhile)."""
        if not self._ready:
            return "starting or stopping"
        if self.store_failing_since is not None and time.monotonic() - self.store_failing_since > STORE_FAILING_SECONDS:
            return f"the record store has refused every write for {time.monotonic() - self.store_failing_since:.0f} s: {self.store_error}"
        return None

    def _store(self) -> RecordStore:
        if self.store is None:
            raise RuntimeError("the logger is not started")
        return self.store

    def _write_batch(self, updates: list[RecordUpdate]) -> list[Stored]:
        started = time.perf_counter()
        results = self._store().apply(updates)
        self.metrics.store_seconds.observe(time.perf_counter() - started)
        return results

    async def start(self) -> None:
        self.store = self._given_store or self.settings.open_store()
        if hasattr(self.store, "models"):  # Elasticsearch: indices for the configured models only
            setattr(self.store, "models", frozenset(self.model_label.known))  # noqa: B010 (not every store has it)
        self.writer.start()
        if self.settings.retention_seconds > 0 or self.settings.max_store_bytes > 0:
            self._tasks = [asyncio.create_task(self._retention(), name="logger-retention")]
        self._ready = True
        log.info("logger ready on port %d, storing to %s", self.settings.port, self.settings.describe_store())

    async def stop(self) -> None:
        self._ready = False
        await cancel_and_wait(self._tasks)
        await self.writer.close(self._store().close if self._given_store is None else None)

    def stopped(self) -> list[str]:
        return self.writer.stopped() + stopped_tasks(self._tasks)

    def count_rejected(self, reason: str) -> None:
        self.metrics.rejected.labels(reason).inc()

    def parse(self, headers: Mapping[str, str], body: bytes) -> CloudEvent:
        """One delivered event; CloudEventError (a 400, counted) naming the problem."""
        try:
            return from_http(headers, body)
        except CloudEventError as exc:
            self.count_rejected("invalid")
            log.warning("rejected event: %s", exc)
            raise

    def accept(self, headers: Mapping[str, str], body: bytes) -> tuple[CloudEvent, RecordUpdate, tuple[str, int, dict] | None]:
        """Parse and check one delivered event; CloudEventError or ValueError (a 400) naming the problem."""
        return self.accept_event(self.parse(headers, body))

    def accept_event(self, event: CloudEvent) -> tuple[CloudEvent, RecordUpdate, tuple[str, int, dict] | None]:
        """Check one decoded event: what it adds to its record; ValueError (a 400) naming the problem."""
        try:
            update = update_from_event(event, time.time(), self.embedding_sources, self.seldon_graphs)
            drift_window = drift_window_of(update) if update.kind is EventKind.DRIFT else None
        except (CloudEventError, ValueError) as exc:
            self.count_rejected("invalid")
            log.warning("rejected event: %s", exc)
            raise
        return event, update, drift_window

    async def store_event(self, event: CloudEvent, update: RecordUpdate, drift_window: tuple[str, int, dict] | None,
                          trace_parent: Mapping[str, str] | None = None) -> Stored:
        """Fold an accepted event into its record once committed; True if it changed the record.

        StoreUnavailable when the store failed (nothing was stored). The `store` span continues
        `trace_parent` (a single delivery's HTTP traceparent), else the event's own trace extension."""
        model, event_type = self.model_label(update.model), event_type_label(event.type)
        self.metrics.received.labels(model, event_type).inc()
        with self.tracing.span(f"store {event_type}", parent_of(trace_parent, event.extensions), "SERVER",
                               {"seismo.prediction_id": update.prediction_id, "seismo.model": update.model,
                                "cloudevents.event_type": event.type}) as span:
            try:
                if drift_window is not None and await self.writer.call(self._store().add_drift_window, *drift_window) == KEPT_ASIDE:
                    self.metrics.conflicts.labels(model, event_type).inc()
                    log.warning("drift result for %s window %d differs from the one kept first: kept beside it, marked conflict",
                                escape_id(drift_window[0]), drift_window[1])
                changed = await self.writer.submit(update)
            except Exception as exc:
                self.count_rejected("store_error")
                self.store_failing_since = self.store_failing_since or time.monotonic()
                self.store_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.error("store write failed for %s: %s", escape_id(update.prediction_id), exc)
                fail(span, f"store unavailable: {type(exc).__name__}")
                raise StoreUnavailable(type(exc).__name__) from exc
            if span is not None:
                span.set_attribute("seismo.stored", changed)
        self.store_failing_since = None
        if changed == KEPT_ASIDE:
            self.metrics.conflicts.labels(model, event_type).inc()
            log.warning("event %s (%s) conflicts with the record's first one: kept aside, not merged",
                        escape_id(update.prediction_id), event_type)
        else:
            (self.metrics.stored if changed else self.metrics.duplicates).labels(model, event_type).inc()
        return changed

    def forbidden(self, identity: str | None, event: CloudEvent) -> str | None:
        """Why `identity` may not send `event` (seismo.services.senders), counted; None when it may."""
        why = senders.refusal(identity, event)
        if why is not None:
            self.count_rejected("forbidden_sender")
            log.warning("refused event %s: %s", escape_id(event.id), why)
        return why

    async def store_batch(self, items: list[CloudEvent | CloudEventError], identity: str | None = None) -> list[dict]:
        """A batched delivery: every good event stored together (one transaction), one result per item
        in order: 200 stored (or a duplicate), 400 refused with its reason, 403 not its sender's to send,
        503 not stored (retry it)."""

        async def one(item: CloudEvent | CloudEventError) -> dict:
            if isinstance(item, CloudEventError):
                self.count_rejected("invalid")
                return {"status": 400, "error": str(item)}
            if why := self.forbidden(identity, item):
                return {"id": item.id, "status": 403, "error": why}
            try:
                event, update, drift_window = self.accept_event(item)
            except ValueError as exc:
                return {"id": item.id, "status": 400, "error": str(exc)}
            try:
                stored = await self.store_event(event, update, drift_window)
            except StoreUnavailable as exc:
                return {"id": item.id, "status": 503, "error": f"store unavailable: {exc}"}
            return {"id": item.id, "status": 200, "stored": stored}

        return list(await asyncio.gather(*(one(item) for item in items)))  # submitted together: one group commit

    async def read(self, fn, *args):
        """A read off the writer's thread (the SQLite store reads on a connection of its own), at most
        READ_CONCURRENCY at once: a long read never delays storing predictions."""
        async with self._reads:
            return await asyncio.to_thread(fn, *args)

    async def drift_windows(self, model: str | None, limit: int) -> list[dict]:
        return await self.read(self._store().drift_windows, model, limit)

    def _clusters(self, model: str, since: float | None, limit: int) -> dict:
        """Production embeddings of `model` (the first `limit` records from `since`) clustered with the reference."""
        from seismo.detect import load_detector
        from seismo.embeddings.clusters import ProductionPoint, cohorts, comparable, correctness

        assert self.settings.embedding_reference_path is not None
        if self._reference is None:
            self._reference = load_detector(self.settings.embedding_reference_path)
        reference = self._reference.x_ref
        records = self._store().query(model, since, None, limit, requests=False)  # the requests (most of the bytes) are not used
        vectors, points = [], []
        for record in records:
            view = response_view(record)  # the request (for images, most of the bytes) is not needed here
            if (not view["embedding"] or len(view["embedding"][0]) != reference.shape[1]
                    or not comparable(self._reference, view["embedding_version"])):
                continue
            correct = correctness(view)
            scores = (view["annotations"].get("outlier") or {}).get("instance_score") if isinstance(view["annotations"].get("outlier"), dict) else None
            for i, vector in enumerate(view["embedding"]):
                vectors.append(vector)
                score = scores[i] if isinstance(scores, list) and i < len(scores) and isinstance(scores[i], (int, float)) else None
                points.append(ProductionPoint(record.prediction_id, correct[i] if correct and i < len(correct) else None, score))
        if not vectors:
            return {"model": model, "clusters": [], "reference_points": len(reference), "production_points": 0, "production_noise": 0}
        report = cohorts(reference, np.asarray(vectors, dtype=np.float64), points)
        report.pop("labels")
        return {"model": model, **report}

    async def clusters(self, model: str, since: float | None, limit: int) -> dict:
        return await self.read(self._clusters, model, since, limit)  # minutes of CPU at most: off the event loop

    async def embedding_versions(self, model: str | None) -> list[dict]:
        rows = await self.read(self._store().embedding_versions, model)
        return [{**row, "first": rfc3339(row["first"]), "last": rfc3339(row["last"])} for row in rows]

    async def record(self, prediction_id: str) -> Record | None:
        return await self.read(self._store().get, prediction_id)

    def _lineage(self, prediction_id: str) -> list[Record] | None:
        """The record and its upstream records, nearest first, following `parentid`; None if the first is unknown.

        A chain ends at a record without a parent, at a parent not stored (yet), at a cycle (a client may
        name any id as parent), or after MAX_LINEAGE_DEPTH hops."""
        store = self._store()
        record = store.get(prediction_id)
        if record is None:
            return None
        chain, seen = [record], {prediction_id}
        while len(chain) < MAX_LINEAGE_DEPTH:
            parent_id = chain[-1].extensions.get("parentid")
            if not parent_id or parent_id in seen:
                break
            parent = store.get(parent_id)
            if parent is None:
                break
            chain.append(parent)
            seen.add(parent_id)
        return chain

    async def lineage(self, prediction_id: str) -> list[Record] | None:
        return await self.read(self._lineage, prediction_id)

    async def records(self, model: str | None, since: float | None, until: float | None, limit: int) -> list[Record]:
        """At most `limit` records, and no more payload bytes than SEISMO_LOGGER_MAX_READ_BYTES (one record at least)."""
        return await self.read(self._store().query, model, since, until, limit, self.settings.max_read_bytes)

    async def dead_letter(self, event: CloudEvent) -> bool:
        """Count a dead letter and keep it whole in the store (every replica lists it, `seismo dead-letters
        replay` sends it again): True; False when it was kept already (the sink's retry). StoreUnavailable
        when it could not be kept: the sink answers 503 so the broker tries again."""
        code = event.extensions.get("knativeerrorcode") or "none"
        destination = event.extensions.get("knativeerrordest")
        event_type = event_type_label(event.type)
        letter = DeadLetter(DeadLetter.key_of(event.source, event.id, destination), event.id, event.type, model_of(event), time.time(),
                            code[:16], destination, to_structured(event))
        try:
            kept = await self.writer.call(self._store().add_dead_letter, letter)
        except Exception as exc:
            self.count_rejected("store_error")
            log.error("could not keep the dead letter %s: %s", escape_id(event.id), exc)
            raise StoreUnavailable(type(exc).__name__) from exc
        if kept:
            self.metrics.dead_letters.labels(event_type, http_code_label(code)).inc()
            log.warning("dead letter: event %s (%s) for %s, subscriber answered %s", escape_id(event.id), event_type,
                        escape_id(destination or "?"), escape_id(code))
        return kept

    async def dead_letters(self, model: str | None, limit: int) -> list[DeadLetter]:
        return await self.read(self._store().dead_letters, model, limit)

    async def _retention(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retention_interval_seconds)
            try:
                await self.apply_retention()
            except Exception as exc:  # the store may be down for a while: try again next time
                log.warning("retention failed: %r", exc)

    async def apply_retention(self) -> None:
        """Remove what is older than the retention, then the oldest records while the store is over its size cap."""
        store = self._store()
        removed: dict[str, int] = {}
        if self.settings.retention_seconds > 0:
            removed = await self.writer.call(store.expire, time.time() - self.settings.retention_seconds)
        if self.settings.max_store_bytes > 0 and hasattr(store, "shrink_to"):
            removed["records_over_size"] = await self.writer.call(store.shrink_to, self.settings.max_store_bytes)
        for what, count in removed.items():
            if count:
                self.metrics.retention_removed.labels(what).inc(count)
                log.info("retention: removed %d %s", count, what.replace("_", " "))
