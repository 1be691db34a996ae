"""`seismo serve drift`: fills windows from inference requests and tests each full window.

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
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.batching import ThreadBatcher
from seismo.detect import DriftResult, load_detector
from seismo.detect.windows import Window, WindowStore
from seismo.events.cloudevents import CloudEvent, to_binary
from seismo.events.poster import EventPoster, SendError
from seismo.events.types import KSERVE_DRIFT
from seismo.retry import Backoff, is_transient, retry_async
from seismo.services.auth import auth_middleware
from seismo.services.common import DEFAULT_MAX_BODY_BYTES, EXCEPTION_HANDLERS, health_routes, one_of, stopped_tasks
from seismo.services.detector_events import accept, reply
from seismo.times import now_rfc3339, rfc3339
from seismo.topology import EXAMPLE_DETECTORS, SERVICE_PORTS, data_dir

log = logging.getLogger(__name__)


WindowMode = Literal["count", "tumbling", "sliding"]


class SinkRefused(Exception):
    def __init__(self, status: int):
        super().__init__(f"the sink answered HTTP {status}")
        self.status = status


class DriftSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_DRIFT_", validate_by_name=True, validate_by_alias=True)

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["drift"]
    """Port the broker delivers request events to."""
    detector_path: Path = EXAMPLE_DETECTORS / "drift"
    """A detector folder saved by `seismo fit drift` (or Detector.save)."""
    model: str = "image-classifier"
    """The model whose requests fill the windows; events for other models are rejected."""
    window_size: int = 1000
    """Instances per window (count mode), or the most a time window holds."""
    window_mode: Annotated[WindowMode, one_of("window_mode", WindowMode)] = "count"
    """count, tumbling (time) or sliding (time)."""
    window_seconds: float = 60.0
    """Span of a time window."""
    slide_seconds: float = 10.0
    """How often a sliding window is tested."""
    min_window: int = 50
    """Fewest instances a time window needs to be tested."""
    dedup_seconds: float = 86400.0
    """How long an event id is remembered, so a redelivered event is not added to a window twice."""
    state_path: Path = Field(default_factory=lambda: data_dir() / "drift-windows.db")
    """SQLite file holding window contents."""
    sink_url: str | None = Field(default=None, validation_alias=AliasChoices("SEISMO_DRIFT_SINK_URL", "K_SINK"))
    """Where results of windows tested outside a delivery are posted (the broker). K_SINK works too."""
    max_event_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest event body accepted; bigger ones get 413."""


def window_payload(model: str, window: Window, result: DriftResult, detector_kind: str) -> dict:
    return {**result.to_json(), "model": model, "window": window.number, "size": len(window.rows),
            "start": rfc3339(window.start), "end": rfc3339(window.end), "detector": detector_kind}


def create_app(settings: DriftSettings, registry: CollectorRegistry) -> Starlette:
    if not any((settings.detector_path / name).exists() for name in ("config.json", "config.toml", "meta.dill")):
        raise ValueError(f"no detector at {settings.detector_path}: fit one with `seismo fit drift --reference FILE --out DIR` "
                         "(or `make model` for the example) and set SEISMO_DRIFT_DETECTOR_PATH")
    if settings.window_size < 2:
        raise ValueError(f"window_size must be at least 2, not {settings.window_size}")
    windows_tested = Counter("seismo_drift_windows", "Windows tested, by outcome", ["model", "outcome"], registry=registry)
    instances = Counter("seismo_drift_instances", "Instances added to windows", ["model"], registry=registry)
    rejected = Counter("seismo_drift_events_rejected", "Events not used, by reason", ["model", "reason"], registry=registry)
    unpublished = Counter("seismo_drift_results_unpublished", "Window results that could not be sent anywhere", ["model", "reason"], registry=registry)
    p_value = Gauge("seismo_drift_p_value", "Last window's p-value", ["model", "detector"], registry=registry)
    distance = Gauge("seismo_drift_distance", "Last window's distance", ["model", "detector"], registry=registry)
    feature_p = Gauge("seismo_drift_feature_p_value", "Last window's p-value per feature", ["model", "detector", "feature"], registry=registry)
    feature_d = Gauge("seismo_drift_feature_distance", "Last window's distance per feature", ["model", "detector", "feature"], registry=registry)
    flag = Gauge("seismo_drift_detected", "1 if the last window drifted", ["model"], registry=registry)
    fill = Gauge("seismo_drift_window_fill", "Instances waiting in the current window", ["model"], registry=registry)
    state: dict = {"detector": None, "store": None, "poster": None, "tasks": []}
    duplicates = Counter("seismo_drift_events_duplicate", "Redelivered events (by event id) that added nothing", ["model"], registry=registry)
    source = f"http://{settings.host}:{settings.port}/"

    def test(window: Window) -> dict:
        detector = state["detector"]
        result = detector.predict(window.rows)
        kind = detector.kind
        windows_tested.labels(window.model, "drift" if result.is_drift else "no_drift").inc()
        p_value.labels(window.model, kind).set(result.p_val)
        distance.labels(window.model, kind).set(result.distance)
        flag.labels(window.model).set(1 if result.is_drift else 0)
        for _name, values, gauge in (("p", result.feature_p_vals, feature_p), ("d", result.feature_distances, feature_d)):
            if values is not None:
                for j, v in enumerate(values):
                    gauge.labels(window.model, kind, str(j)).set(float(v))
        log.info("drift: %s window %d (%d instances): drift=%s p=%.3g", window.model, window.number, len(window.rows), result.is_drift, result.p_val)
        return window_payload(window.model, window, result, kind)

    def finish(window: Window, event_id: str | None) -> dict:
        """Test a window and make its result durable before anyone hears of it."""
        payload = test(window)
        state["store"].finish(window, orjson.dumps(payload), event_id)
        return payload

    def add_batch(items: list[tuple[str, np.ndarray, str]]) -> list[list[dict] | None]:
        out: list[list[dict] | None] = []
        for model, rows, event_id in items:
            complete = state["store"].add(model, rows, event_id=event_id)
            if complete is None:  # a redelivery: answer with what the first delivery's windows gave
                out.append(None)
                continue
            fill.labels(model).set(state["store"].pending(model))
            out.append([finish(w, event_id) for w in complete])
        return out

    def earlier_results(model: str, event_id: str) -> list[dict]:
        return [orjson.loads(p) for p in state["store"].results_for(model, event_id)]

    def due_windows() -> list[dict]:
        state["store"].forget(time.time() - settings.dedup_seconds)
        return [finish(w, None) for w in state["store"].due()]

    batcher: ThreadBatcher = ThreadBatcher(add_batch, 64, name="drift-windows")

    async def publish(payload: dict, answered: CloudEvent | None) -> None:
        """Post a result tested outside the delivery that answers it (time windows, extra windows)."""
        if state["poster"] is None:
            unpublished.labels(payload["model"], "no_sink").inc()
            log.warning("drift result for %s window %s not published: no sink configured", payload["model"], payload["window"])
            return
        extensions = dict(answered.extensions) if answered else {"inferenceservicename": payload["model"]}
        event = CloudEvent(answered.id if answered else str(uuid.uuid4()), source, KSERVE_DRIFT,
                           orjson.dumps(payload), "application/json", now_rfc3339(), extensions=extensions)
        headers, body = to_binary(event)

        async def post() -> None:
            answer = await state["poster"].post(settings.sink_url, headers, body, 10.0)
            if answer.status >= 300:
                raise SinkRefused(answer.status)

        def transient(exc: Exception) -> str | None:
            if isinstance(exc, SendError):
                return str(exc)
            return f"HTTP {exc.status}" if isinstance(exc, SinkRefused) and is_transient(exc.status) else None

        try:
            await retry_async(post, 5, Backoff(0.2, 3.2, jitter=False), f"publishing drift window {payload['window']}", transient)
        except (SendError, SinkRefused) as exc:
            unpublished.labels(payload["model"], "sink_failed").inc()
            log.warning("drift result for %s window %s not published: %s", payload["model"], payload["window"], exc)

    async def handle(request: Request) -> Response:
        detector = state["detector"]
        accepted = await accept(request, settings.max_event_bytes, settings.model, detector.instance_shape, rejected, "drift")
        if isinstance(accepted, Response):
            return accepted
        event, array = accepted
        results = await batcher.submit((settings.model, array, event.id))
        if results is None:
            duplicates.labels(settings.model).inc()
            results = await batcher.call(earlier_results, settings.model, event.id)
        else:
            instances.labels(settings.model).inc(len(array))
        if not results:
            return Response(status_code=202)
        for extra in results[:-1]:  # an event that filled more than one window
            await publish(extra, event)
        return reply(event, KSERVE_DRIFT, source, results[-1])

    async def clock() -> None:
        if settings.window_mode == "count":  # count windows are tested on arrival; only the dedup ids expire here
            while True:
                await asyncio.sleep(60.0)
                try:
                    await batcher.call(state["store"].forget, time.time() - settings.dedup_seconds)
                except Exception:
                    log.exception("expiring dedup ids failed")
        while True:
            await asyncio.sleep(min(1.0, settings.slide_seconds))
            try:
                for payload in await batcher.call(due_windows):
                    await publish(payload, None)
            except Exception:
                log.exception("testing time windows failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        detector = load_detector(settings.detector_path)
        state["detector"] = detector
        state["store"] = WindowStore(settings.state_path, detector.instance_shape, settings.window_size, settings.window_mode,
                                     settings.window_seconds, settings.slide_seconds, settings.min_window)
        fill.labels(settings.model).set(state["store"].pending(settings.model))
        if settings.sink_url:
            state["poster"] = EventPoster(8)
            await state["poster"].start()
        batcher.start()
        # Windows taken but not recorded when the service last stopped: test them now. A count window's
        # event will be redelivered (it was never answered) and gets this result; a time window's goes to the sink.
        for window, event_id in state["store"].unfinished():
            payload = await batcher.call(finish, window, event_id)
            log.info("drift: %s window %d recovered after a restart", window.model, window.number)
            if event_id is None:
                await publish(payload, None)
        ticker = asyncio.create_task(clock(), name="drift-clock")
        state["tasks"] = [ticker]
        log.info("drift detector %s for %r ready on port %d (%s windows of %d; %d instances carried over)", detector.kind,
                 settings.model, settings.port, settings.window_mode, settings.window_size, state["store"].pending(settings.model))
        try:
            yield
        finally:
            if ticker:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            await batcher.close(state["store"].close)
            if state["poster"]:
                await state["poster"].close()

    routes = [Route("/", handle, methods=["POST"]),
              *health_routes(registry, lambda: state["detector"] is not None, lambda: batcher.stopped() + stopped_tasks(state["tasks"]))]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=auth_middleware(event_paths=("/",)))
