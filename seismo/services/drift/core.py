"""The drift service's core (`seismo serve drift`): fills windows from inference requests and tests each full window.

Count windows (default 1000 instances) are tested when an event fills one; the answer to that
delivery is an `org.kubeflow.serving.inference.drift` reply (same id and extensions), which the broker
publishes and the logger keeps in its drift log. Time windows (tumbling or sliding) are tested by a
clock, outside any delivery, so their results are posted to the sink (the broker) instead. Window
contents live in SQLite, committed before the service answers: a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from seismo.batching import ThreadBatcher
from seismo.detect import load_detector
from seismo.detect.drift import PredictionDrift
from seismo.detect.windows import LEASE_SECONDS, Window, WindowResult, WindowStore
from seismo.embeddings.extract import load_sources
from seismo.protocol.cloudevents import CloudEvent
from seismo.protocol.types import KSERVE_DRIFT, EventKind, kind_of, model_of
from seismo.services.auth import AuthSettings, sender_token
from seismo.services.base import running
from seismo.services.detector_events import Answer, EventDetector, Rejection, instances_of_event, reply
from seismo.services.drift.settings import DriftSettings
from seismo.services.embedding_drift import EmbeddingWindows
from seismo.services.publish import SinkRefused, publish_event
from seismo.tasks import cancel_and_wait, stopped_tasks
from seismo.times import now_rfc3339, parse_timestamp
from seismo.tracing import Tracing, parent_of
from seismo.transport.poster import EventPoster, SendError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowWork:
    """One event's rows for the window thread: feature rows of a request, or (`embedding`) the
    embedding vectors of a response with their version and the guard's note."""

    rows: np.ndarray
    event_id: str
    embedding: bool = False
    version: str | None = None
    note: str | None = None
    at: float | None = None
    """The event's time (CloudEvent `time`), which time windows take rows by; None: arrival."""


def event_time(event: CloudEvent) -> float | None:
    """The event's `time` attribute as epoch seconds; None when absent or unreadable (the rows take their arrival)."""
    if not event.time:
        return None
    try:
        return parse_timestamp(event.time)
    except ValueError:
        return None


class _DriftMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.windows_tested = Counter("seismo_drift_windows", "Windows tested, by outcome", ["model", "outcome"], registry=registry)
        self.instances = Counter("seismo_drift_instances", "Instances added to windows", ["model"], registry=registry)
        self.rejected = Counter("seismo_drift_events_rejected", "Events not used, by reason", ["model", "reason"], registry=registry)
        self.unpublished = Counter("seismo_drift_results_unpublished", "Window results that could not be sent anywhere",
                                   ["model", "reason"], registry=registry)
        self.p_value = Gauge("seismo_drift_p_value", "Last window's p-value", ["model", "detector"], registry=registry)
        self.distance = Gauge("seismo_drift_distance", "Last window's distance", ["model", "detector"], registry=registry)
        self.p_threshold = Gauge("seismo_drift_p_value_threshold", "The p-value the last window's test had to fall below (after its "
                                 "correction for several features): the dashboards' threshold line", ["model", "detector"], registry=registry)
        self.feature_p = Gauge("seismo_drift_feature_p_value", "Last window's p-value per feature", ["model", "detector", "feature"],
                               registry=registry)
        self.feature_d = Gauge("seismo_drift_feature_distance", "Last window's distance per feature", ["model", "detector", "feature"],
                               registry=registry)
        self.flag = Gauge("seismo_drift_detected", "1 if the last window drifted", ["model"], registry=registry)
        self.effect = Gauge("seismo_drift_effect_size", "Last window's effect size (largest KS gap or its detector's; seismo.detect.effect)",
                            ["model", "detector"], registry=registry)
        self.effect_floor = Gauge("seismo_drift_effect_floor", "The effect size a significant window had to reach to count as drift",
                                  ["model", "detector"], registry=registry)
        self.fill = Gauge("seismo_drift_window_fill", "Instances waiting in the current window", ["model"], registry=registry)
        self.duplicates = Counter("seismo_drift_events_duplicate", "Redelivered events (by event id) that added nothing", ["model"],
                                  registry=registry)


class DriftService(EventDetector):
    """The drift detector without HTTP: windows in SQLite, tests, results published or answered.

    Window work runs on one thread (`ThreadBatcher`), so the store and the detector never block the
    event loop; the clock task tests time windows and expires remembered event ids."""

    name = "drift"

    def __init__(self, settings: DriftSettings, registry: CollectorRegistry, auth: AuthSettings | None = None,
                 tracing: Tracing | None = None):
        if not settings.input_detector and settings.embedding_detector_path is None:
            raise ValueError("SEISMO_DRIFT_INPUT_DETECTOR=false without SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH leaves this service "
                             "nothing to test: set one of them")
        if settings.input_detector and not any((settings.detector_path / name).exists()
                                               for name in ("config.json", "config.toml", "meta.dill")):
            raise ValueError(f"no detector at {settings.detector_path}: fit one with `seismo fit drift --reference FILE --out DIR` "
                             "(or `make model` for the example) and set SEISMO_DRIFT_DETECTOR_PATH "
                             "(or SEISMO_DRIFT_INPUT_DETECTOR=false to test response embeddings alone)")
        if settings.window_size < 2:
            raise ValueError(f"window_size must be at least 2, not {settings.window_size}")
        if settings.embedding_detector_path is not None and not (settings.embedding_detector_path / "config.json").exists():
            raise ValueError(f"no embedding detector at {settings.embedding_detector_path}: fit one with `seismo fit embedding` "
                             "or unset SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH")
        if settings.embedding_window_size < 20:
            raise ValueError(f"embedding_window_size must be at least 20, not {settings.embedding_window_size}")
        self.embedding_sources = load_sources(settings.embeddings_config)
        self.embeddings: EmbeddingWindows | None = None
        self.settings = settings
        self.registry = registry
        self.auth = auth
        self.tracing = tracing or Tracing("drift")  # handed in by create_app; made here when a test builds the core alone
        self.metrics = _DriftMetrics(registry)
        self.sampling_metrics(registry)
        self.source = f"http://{settings.host}:{settings.port}/"
        self.detector: Any = None
        self._store: WindowStore | None = None  # the input windows; None while the input detector is off
        self._started = False
        self._poster: EventPoster | None = None
        self._tasks: list[asyncio.Task] = []
        self.batcher: ThreadBatcher[WindowWork, list[dict] | None] = ThreadBatcher(self._add_batch, 64, name="drift-windows")

    @property
    def ready(self) -> bool:
        return self._started

    @property
    def store(self) -> WindowStore:
        return running(self._store, "drift")

    @property
    def rejected(self) -> Counter:
        return self.metrics.rejected

    async def answer(self, event: CloudEvent, headers: Mapping[str, Any] | None = None) -> Answer:
        """One event's answer: a drift reply when it filled a window, else 202. Rejection when it cannot
        be used. `headers`: the single delivery's (trace context)."""
        if self.sampled_out(event):
            return Answer(204)
        with self.tracing.span("drift window", parent_of(headers or {}, event.extensions), "SERVER",
                               {"seismo.prediction_id": event.id, "cloudevents.event_type": event.type}) as span:
            results = await self._add_to_windows(event)
            if span is not None and results:
                span.set_attribute("seismo.window_tested", True)
                span.set_attribute("seismo.drift", bool(results[-1].get("is_drift", results[-1].get("cluster_drift"))))
        return reply(event, KSERVE_DRIFT, self.source, results[-1]) if results else Answer(202)

    async def _add_to_windows(self, event: CloudEvent) -> list[dict]:
        """Response events with an embedding detector: embedding windows; request events: feature windows."""
        model = self.settings.model
        if self.embeddings is not None and kind_of(event.type) is EventKind.RESPONSE:
            if model_of(event) != model:
                raise Rejection("unknown_model", f"no detector for model {model_of(event)!r} here (this one watches "
                                f"{model!r})", model_of(event))
            return await self.add_embeddings(event)
        if not self.settings.input_detector:
            raise Rejection("input_detector_off", f"{event.type} events are not tested here: SEISMO_DRIFT_INPUT_DETECTOR is false "
                            "(the broker should send this service response events only)", model_of(event))
        shape = self.detector.instance_shape if self.detector is not None else None
        event, array = instances_of_event(event, model, shape)
        return await self.add(event, array)

    def stopped(self) -> list[str]:
        return self.batcher.stopped() + stopped_tasks(self._tasks)

    async def start(self) -> None:
        settings = self.settings
        if settings.input_detector:
            detector = load_detector(settings.detector_path)
            if settings.effect_floor is not None and hasattr(detector, "effect_floor"):
                detector.effect_floor = settings.effect_floor
            self.detector = detector
            assert detector.instance_shape is not None  # a loaded detector is fitted
            self._store = WindowStore(settings.postgres_url or settings.state_path, detector.instance_shape, settings.window_size,
                                      settings.window_mode, settings.window_seconds, settings.slide_seconds, settings.min_window,
                                      grace=settings.window_grace_seconds)
            self.metrics.fill.labels(settings.model).set(self.store.pending(settings.model))
        if settings.sink_url:
            self._poster = EventPoster(8, bearer=sender_token(self.auth, "drift"))
            await self._poster.start()
        if settings.embedding_detector_path is not None:
            self.embeddings = EmbeddingWindows(settings.embedding_detector_path, settings.model, settings.embedding_window_size,
                                               settings.postgres_url or settings.embedding_state_path, settings.embedding_allow_minor,
                                               self.embedding_sources, self.registry, self.lease, self.with_share,
                                               effect_floor=settings.effect_floor)
        self.batcher.start()
        await self._recover()
        self._tasks = [asyncio.create_task(self._clock(), name="drift-clock")]
        if self._store is not None:
            log.info("drift detector %s for %r ready on port %d (%s windows of %d; %d instances carried over)", self.detector.kind,
                     settings.model, settings.port, settings.window_mode, settings.window_size, self.store.pending(settings.model))
        else:
            log.info("drift service for %r ready on port %d: embedding windows of %d; input detector off", settings.model,
                     settings.port, settings.embedding_window_size)
        self._started = True

    @property
    def lease(self) -> float | None:
        """How long a window taken but not recorded belongs to the replica that took it: None on SQLite (one
        process: whatever is unfinished at the start is this one's), else seismo.detect.windows.LEASE_SECONDS."""
        return LEASE_SECONDS if self.settings.postgres_url else None

    async def _recover(self) -> None:
        """Windows taken but not recorded (this service stopped, or a replica sharing the store died): test them
        now. A count window's event will be redelivered (it was never answered) and gets this result; a time
        window's goes to the sink."""
        if self.embeddings is not None:
            for payload in await self.batcher.call(self.embeddings.recover):
                await self.publish(payload, None)
        if self._store is None:
            return
        for window, event_id in await self.batcher.call(self.store.unfinished, self.lease):
            payload = await self.batcher.call(self._finish, window, event_id)
            log.info("drift: %s window %d recovered (taken but never recorded)", window.model, window.number)
            if event_id is None:
                await self.publish(payload, None)

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        embeddings = self.embeddings

        def close_stores() -> None:
            if self._store is not None:
                self._store.close()
            if embeddings is not None:
                embeddings.close()

        await self.batcher.close(close_stores)
        if self._poster:
            await self._poster.close()

    def test(self, window: Window) -> WindowResult:
        detector = self.detector
        result = detector.predict(window.rows)
        kind = detector.kind
        m = self.metrics
        m.windows_tested.labels(window.model, "drift" if result.is_drift else "no_drift").inc()
        m.p_value.labels(window.model, kind).set(result.p_val)
        m.distance.labels(window.model, kind).set(result.distance)
        if result.effect_size is not None:
            m.effect.labels(window.model, kind).set(result.effect_size)
            m.effect_floor.labels(window.model, kind).set(result.effect_floor)
        if not isinstance(detector, PredictionDrift):  # it decides on a distance (PSI, JS), not on its p-value
            m.p_threshold.labels(window.model, kind).set(result.threshold)
        m.flag.labels(window.model).set(1 if result.is_drift else 0)
        for values, gauge in ((result.feature_p_vals, m.feature_p), (result.feature_distances, m.feature_d)):
            if values is not None:
                for j, v in enumerate(values):
                    gauge.labels(window.model, kind, str(j)).set(float(v))
        log.info("drift: %s window %d (%d instances): drift=%s p=%.3g", window.model, window.number, len(window.rows), result.is_drift, result.p_val)
        return WindowResult(window.model, window.number, len(window.rows), window.start, window.end, kind, result,
                            getattr(detector, "detector_version", None))

    def _finish(self, window: Window, event_id: str | None) -> dict:
        """Test a window and make its result durable before anyone hears of it."""
        payload = self.with_share(self.test(window).to_json())
        self.store.finish(window, orjson.dumps(payload), event_id)
        return payload

    def _add_batch(self, items: list[WindowWork]) -> list[list[dict] | None]:
        """Every event of the batch into its windows, each store committed once for all of them (group
        commit: a commit per event was the service's largest cost); each event still goes in alone, so
        a failing one undoes only itself before the batcher retries the others on their own."""
        embeddings = self.embeddings
        with contextlib.ExitStack() as stack:
            if any(not item.embedding for item in items):
                stack.enter_context(self.store.batch())
            if embeddings is not None and any(item.embedding for item in items):
                stack.enter_context(embeddings.store.batch())
            out = [self._add_one(item) for item in items]
        if any(not item.embedding for item in items):
            self.metrics.fill.labels(self.settings.model).set(self.store.pending(self.settings.model))
        return out

    def _add_one(self, item: WindowWork) -> list[dict] | None:
        if item.embedding:
            assert self.embeddings is not None  # embedding work is submitted only when they are configured
            return self.embeddings.add(item.rows, item.event_id, item.version, item.note)
        complete = self.store.add(self.settings.model, item.rows, event_id=item.event_id, at=item.at)
        if complete is None:  # a redelivery: answer with what the first delivery's windows gave
            return None
        return [self._finish(w, item.event_id) for w in complete]

    def _earlier_results(self, model: str, event_id: str) -> list[dict]:
        return [orjson.loads(p) for p in self.store.results_for(model, event_id)]

    def _forget_seen(self) -> None:
        """Expire remembered event ids and recorded results past `dedup_seconds`, in the input windows and the
        embedding windows alike (before, the embedding store kept every response event's id for good)."""
        older_than = time.time() - self.settings.dedup_seconds
        if self._store is not None:
            self.store.forget(older_than)
        if self.embeddings is not None:
            self.embeddings.store.forget(older_than)

    def _due_windows(self) -> list[dict]:
        self._forget_seen()
        return [self._finish(w, None) for w in self.store.due()]

    async def add(self, event: CloudEvent, rows: np.ndarray) -> list[dict]:
        """Add an accepted event's instances; the results of the windows it filled (a redelivery gets the
        first delivery's). All but the last are published here; the last is the caller's to answer with."""
        model = self.settings.model
        results = await self.batcher.submit(WindowWork(rows, event.id, at=event_time(event)))
        if results is None:
            self.metrics.duplicates.labels(model).inc()
            results = await self.batcher.call(self._earlier_results, model, event.id)
        else:
            self.metrics.instances.labels(model).inc(len(rows))
        for extra in results[:-1]:  # an event that filled more than one window
            await self.publish(extra, event)
        return results

    async def add_embeddings(self, event: CloudEvent) -> list[dict]:
        """A response event's embeddings into the embedding windows; the results of windows it filled
        (all but the last published here). Rejection when it carries a malformed or refused embedding."""
        embeddings = self.embeddings
        assert embeddings is not None
        found = embeddings.vectors_of(event)
        if found is None:
            self.metrics.rejected.labels(self.settings.model, "no_embedding").inc()
            return []
        vectors, version, note = found
        results = await self.batcher.submit(WindowWork(vectors, event.id, True, version, note))
        if results is None:
            self.metrics.duplicates.labels(self.settings.model).inc()
            results = await self.batcher.call(embeddings.earlier_results, event.id)
        for extra in results[:-1]:
            await self.publish(extra, event)
        return results

    async def publish(self, payload: dict, answered: CloudEvent | None) -> None:
        """Post a result tested outside the delivery that answers it (time windows, extra windows)."""
        if self._poster is None or not self.settings.sink_url:
            self.metrics.unpublished.labels(payload["model"], "no_sink").inc()
            log.warning("drift result for %s window %s not published: no sink configured", payload["model"], payload["window"])
            return
        extensions = dict(answered.extensions) if answered else {"inferenceservicename": payload["model"]}
        event = CloudEvent(answered.id if answered else str(uuid.uuid4()), self.source, KSERVE_DRIFT,
                           orjson.dumps(payload), "application/json", now_rfc3339(), extensions=extensions)
        try:
            await publish_event(self._poster, self.settings.sink_url, event, f"publishing drift window {payload['window']}")
        except (SendError, SinkRefused) as exc:
            self.metrics.unpublished.labels(payload["model"], "sink_failed").inc()
            log.warning("drift result for %s window %s not published: %s", payload["model"], payload["window"], exc)

    async def _clock(self) -> None:
        if self.settings.window_mode == "count" or self._store is None:  # count windows are tested on arrival; only the dedup ids expire here
            while True:
                await asyncio.sleep(60.0)
                try:
                    await self.batcher.call(self._forget_seen)
                    if self.lease is not None:  # a replica sharing the store may have died holding a window
                        await self._recover()
                except Exception:
                    log.exception("expiring dedup ids failed")
        while True:
            await asyncio.sleep(min(1.0, self.settings.slide_seconds))
            try:
                for payload in await self.batcher.call(self._due_windows):
                    await self.publish(payload, None)
            except Exception:
                log.exception("testing time windows failed")
