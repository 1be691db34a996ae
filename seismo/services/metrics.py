"""`seismo serve metrics`: model performance from ground-truth feedback, realized and estimated.

Feedback arrives as `POST /feedback` (Seismo's body), `POST /api/v1.0/feedback` (Seldon's), or
`io.seldon.serving.feedback` CloudEvents from the broker at `POST /`. Feedback that carries the
response is scored at once; feedback that names a prediction id is joined with the stored record
(the logger's SQLite file or Elasticsearch), or waits as pending until the prediction is stored or
its TTL runs out. `GET /v1/performance` answers the current numbers; Prometheus gets counters and
windowed gauges. Background loops: join pending feedback, read new predictions for estimation,
refresh the gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.batching import ThreadBatcher
from seismo.events.cloudevents import CloudEventError, from_http
from seismo.events.feedback import FeedbackError, parse_feedback
from seismo.events.types import SELDON_FEEDBACK, prediction_id_of
from seismo.performance.config import ALL, ConfigError, check_cohort_name, load_models
from seismo.performance.ledger import Ledger, Lookback
from seismo.performance.prometheus import PerformanceMetrics
from seismo.performance.scoring import truthy
from seismo.performance.tracker import GROUPS, Incoming, Tracker
from seismo.services.auth import auth_middleware
from seismo.services.common import (
    EXCEPTION_HANDLERS,
    BodyTooLarge,
    JSONResponse,
    error,
    health_routes,
    parse_json,
    read_body,
    stopped_tasks,
)
from seismo.store.settings import StoreSettings
from seismo.times import parse_duration
from seismo.topology import CONFIG_DIR, SERVICE_PORTS, data_dir

log = logging.getLogger(__name__)
EXAMPLE_CONFIG = CONFIG_DIR / "metrics.yaml"


class MetricsSettings(StoreSettings):
    """The store settings name the logger's record store, read to join feedback by prediction id."""

    model_config = SettingsConfigDict(env_prefix="SEISMO_METRICS_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["metrics"]
    """Port for feedback, events and performance reads."""
    config_file: Path = EXAMPLE_CONFIG
    """YAML with each model's metric type, threshold, features and cohort rules."""
    state_path: Path = Field(default_factory=lambda: data_dir() / "metrics.db")
    """SQLite file with scored feedback, pending feedback and the predictions read for estimation."""
    window: str = "1h"
    """The gauges' sliding window: a duration (30s, 15m, 1h, 7d) or a count of newest instances (1000)."""
    pending_ttl_seconds: float = 86400.0
    """How long feedback waits for its prediction to be stored before it is counted as orphaned."""
    late_after_seconds: float = 3600.0
    """Truth arriving later than this after its prediction is counted as late."""
    max_calibration_error: float = 0.05
    """Estimates are flagged unreliable when the expected calibration error on labelled rows exceeds this."""
    join_interval_seconds: float = 1.0
    """How often pending feedback is matched against the store."""
    scan_interval_seconds: float = 2.0
    """How often newly logged predictions are read for estimation."""
    scan_settle_seconds: float = 1.0
    """Predictions are read once this old, so their response event has been stored too."""
    refresh_interval_seconds: float = 5.0
    """How often the windowed gauges are recomputed."""
    max_cohorts: int = 50
    """Cohort label values per model exported to Prometheus beyond `all` and the configured rules' cohorts; more are `other`."""
    cohort_admit_after: int = 10
    """A cohort named only by feedback or a header becomes a label value after this many scored instances."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest feedback body accepted; bigger ones get 413."""
    retention_seconds: float = 30 * 86400.0
    """Scored truth and predictions read for estimation older than this leave the ledger (0: kept forever)."""


def parse_window(text: str | None, default: Lookback) -> Lookback:
    """`30s`/`15m`/`1h`/`7d` (time), `1000` (newest instances), `all`; ValueError naming the problem."""
    if text is None or text == "":
        return default
    if text == "all":
        return Lookback()
    if text.isascii() and text.isdigit() and int(text) > 0:
        return Lookback(count=int(text))
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = 0.0
    if seconds > 0:
        return Lookback(seconds=seconds)
    raise ValueError(f"'window' must be a duration like 30s, 15m, 1h or 7d, a positive count like 1000, or 'all'; got {text!r}")


def create_app(settings: MetricsSettings, registry: CollectorRegistry) -> Starlette:
    models = load_models(settings.config_file)
    default_window = parse_window(settings.window, Lookback())
    metrics = PerformanceMetrics(registry, settings.max_cohorts, {name: [rule.name for rule in config.rules] for name, config in models.items()},
                                 settings.cohort_admit_after)
    state: dict = {"tracker": None, "loops": []}
    batcher: ThreadBatcher = ThreadBatcher(lambda batch: state["tracker"].process(batch), 256, name="metrics")

    def incoming(request: Request, doc, prediction_id: str | None = None) -> Incoming:
        feedback = parse_feedback(doc, prediction_id)
        cohort_header = request.headers.get("x-seismo-cohort")
        holdout_header = request.headers.get("x-seismo-holdout")
        changes = {}
        if feedback.cohort is None and cohort_header:
            changes["cohort"] = cohort_header
        if feedback.holdout is None and holdout_header:
            changes["holdout"] = truthy(holdout_header)
        if changes:
            feedback = replace(feedback, **changes)
        if feedback.cohort is not None:
            check_cohort_name(feedback.cohort, "cohort")
        return Incoming(feedback, time.time())

    async def submit(item: Incoming) -> Response:
        try:
            outcome = await batcher.submit(item)
        except Exception as exc:  # the record store is unreachable: 503 so the sender (or the broker) retries
            metrics.rejected.labels(metrics.model_label(item.feedback.model), "store_error").inc()
            log.error("feedback for %s not processed: %s", item.feedback.prediction_id, exc)
            return error(503, f"record store unavailable: {type(exc).__name__}")
        if outcome.status == "rejected":
            return error(400, outcome.message or "feedback rejected")
        return JSONResponse(outcome.to_json(), status_code=200 if outcome.status == "scored" else 202)

    async def feedback_body(request: Request) -> Response:
        try:
            body = await read_body(request, settings.max_body_bytes)
            item = incoming(request, parse_json(body, "feedback body"))
        except BodyTooLarge as exc:
            metrics.rejected.labels("unknown", "too_large").inc()
            return error(413, str(exc))
        except (FeedbackError, ConfigError, ValueError) as exc:
            metrics.rejected.labels("unknown", "invalid").inc()
            return error(400, str(exc))
        return await submit(item)

    async def feedback_event(request: Request) -> Response:
        try:
            body = await read_body(request, settings.max_body_bytes)
            event = from_http(request.headers, body)
            if event.type != SELDON_FEEDBACK:
                raise ValueError(f"event type {event.type!r} is not feedback ({SELDON_FEEDBACK})")
            has_id = "requestid" in event.extensions
            item = incoming(request, event.json_data(), prediction_id_of(event) if has_id else None)
            named = event.extensions.get("inferenceservicename")
            if item.feedback.model is None and named:
                item = Incoming(replace(item.feedback, model=named), item.received_at)
        except BodyTooLarge as exc:
            metrics.rejected.labels("unknown", "too_large").inc()
            return error(413, str(exc))
        except (CloudEventError, FeedbackError, ConfigError, ValueError) as exc:
            metrics.rejected.labels("unknown", "invalid").inc()
            return error(400, str(exc))
        return await submit(item)

    async def performance(request: Request) -> Response:
        params = request.query_params
        tracker: Tracker = state["tracker"]
        model = params.get("model")
        if model is None:
            if len(models) != 1:
                return error(400, f"name a 'model' (configured: {sorted(models)})")
            model = next(iter(models))
        if model not in models:
            return error(404, f"no metrics configuration for model {model!r} (configured: {sorted(models)})")
        group = params.get("group") or None
        if group not in (None, "all", *GROUPS):
            return error(400, f"'group' must be all, model or holdout; got {group!r}")
        try:
            window = parse_window(params.get("window"), default_window)
        except ValueError as exc:
            return error(400, str(exc))
        report = await batcher.call(tracker.report, model, params.get("cohort") or ALL, None if group == "all" else group, window)
        return JSONResponse(report)

    async def every(seconds: float, what: str, fn, *args) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await batcher.call(fn, *args)
            except Exception as exc:  # the store may be down for a while: keep trying, say so
                log.warning("metrics: %s failed: %s", what, exc)

    def expire(ledger: Ledger, seconds: float) -> None:
        removed = ledger.expire_scored(time.time() - seconds)
        if removed:
            metrics.retention_removed.labels("ledger").inc(removed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        store = settings.open_store()
        ledger = Ledger(settings.state_path)
        tracker = Tracker(models, ledger, store, metrics, settings.pending_ttl_seconds, settings.late_after_seconds,
                          settings.max_calibration_error)
        state["tracker"] = tracker
        metrics.waiting.set(ledger.pending_count())
        batcher.start()
        lookback = default_window.seconds or 3600.0
        loops = [
            asyncio.create_task(every(settings.join_interval_seconds, "joining pending feedback", tracker.join_pending)),
            asyncio.create_task(every(settings.scan_interval_seconds, "reading predictions",
                                      lambda: tracker.scan(settle=settings.scan_settle_seconds, lookback=lookback))),
            asyncio.create_task(every(settings.refresh_interval_seconds, "refreshing gauges", tracker.refresh_gauges, default_window)),
        ]
        if settings.retention_seconds > 0:
            loops.append(asyncio.create_task(every(300.0, "retention", expire, ledger, settings.retention_seconds)))
        state["loops"] = loops
        log.info("metrics server ready on port %d for %s (window %s)", settings.port,
                 ", ".join(f"{m.name} ({m.type})" for m in models.values()), default_window.describe())
        try:
            yield
        finally:
            state["tracker"] = None
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            def close() -> None:
                ledger.close()
                store.close()

            await batcher.close(close)

    routes = [
        Route("/", feedback_event, methods=["POST"]),
        Route("/feedback", feedback_body, methods=["POST"]),
        Route("/api/v1.0/feedback", feedback_body, methods=["POST"]),
        Route("/v1/performance", performance, methods=["GET"]),
        *health_routes(registry, lambda: state["tracker"] is not None, lambda: batcher.stopped() + stopped_tasks(state["loops"])),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=auth_middleware(event_paths=("/",)))
