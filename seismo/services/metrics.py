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
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.batching import ThreadBatcher
from seismo.diagnosis.report import Diagnoser
from seismo.diagnosis.rules import VERDICTS
from seismo.events.cloudevents import CloudEventError, from_http
from seismo.events.feedback import FeedbackError, parse_feedback
from seismo.events.limits import is_prediction_id
from seismo.events.seldon_graph import load_graphs
from seismo.events.types import SELDON_FEEDBACK, prediction_id_of
from seismo.performance.config import ALL, ConfigError, check_cohort_name, load_models
from seismo.performance.ledger import Ledger, Lookback
from seismo.performance.prometheus import PerformanceMetrics
from seismo.performance.report import PerformanceReport
from seismo.performance.scoring import truthy
from seismo.performance.tracker import GROUPS, Incoming, Tracker
from seismo.services import senders
from seismo.services.api.metrics import OPERATIONS
from seismo.services.auth import auth_middleware
from seismo.services.common import (
    EXCEPTION_HANDLERS,
    BodyTooLarge,
    JSONResponse,
    cancel_and_wait,
    error,
    header_dict,
    health_routes,
    parse_json,
    read_body,
    stopped_tasks,
)
from seismo.services.openapi import openapi_route
from seismo.store.settings import StoreSettings
from seismo.times import parse_duration, parse_timestamp
from seismo.topology import CONFIG_DIR, SERVICE_PORTS, data_dir
from seismo.tracing import Tracing, binary_trace, fail, trace_headers

log = logging.getLogger(__name__)
EXAMPLE_CONFIG = CONFIG_DIR / "metrics.yaml"
MAX_OUTCOME_IDS = 1000
"""Prediction ids one `GET /v1/outcomes` may name (a report asks for its page of points at once)."""


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
    max_feedback_batch: int = Field(1000, ge=1)
    """Most feedback objects in one `POST /feedback` JSON array; more get 413."""
    retention_seconds: float = 30 * 86400.0
    """Scored truth and predictions read for estimation older than this leave the ledger (0: kept forever)."""
    diagnosis_interval_seconds: float = 60.0
    """How often every configured model is diagnosed for the seismo_diagnosis_* gauges (0: only on request)."""
    diagnosis_lookback: str = "7d"
    """The range the periodic diagnosis covers (GET /v1/diagnosis takes its own `since`)."""
    seldon_graphs: Path | None = None
    """The SeldonDeployment manifests the logger reads (its `SEISMO_LOGGER_SELDON_GRAPHS`): Seldon feedback
    events of a graph node whose `<deployment>.<node>` model is configured here score that node's record."""


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


def parse_since(text: str | None) -> float | None:
    """`since`: an RFC 3339 time or epoch seconds, or a duration meaning that long ago (7d); None: everything kept."""
    if text is None or text == "":
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(f"'since' must be an RFC 3339 time (2026-11-22T10:00:00Z), epoch seconds or a duration like 7d; got {text[:60]!r}") from None


class StoreUnavailable(Exception):
    """The record store failed while feedback was processed (a 503: the sender or the broker retries)."""


class MetricsService:
    """The metrics server without HTTP: feedback in, joined with stored predictions, performance out.

    The `Tracker` does the work on one thread (`ThreadBatcher`); background loops join pending
    feedback, read new predictions, refresh the gauges and expire old ledger rows."""

    def __init__(self, settings: MetricsSettings, registry: CollectorRegistry):
        self.settings = settings
        self.tracing = Tracing("metrics")
        self.models = load_models(settings.config_file)
        self.seldon_graphs = load_graphs(settings.seldon_graphs)
        self.default_window = parse_window(settings.window, Lookback())
        self.metrics = PerformanceMetrics(registry, settings.max_cohorts,
                                          {name: [rule.name for rule in config.rules] for name, config in self.models.items()},
                                          settings.cohort_admit_after)
        self._tracker: Tracker | None = None
        self._diagnoser: Diagnoser | None = None
        self._close: Callable[[], None] | None = None
        self._loops: list[asyncio.Task] = []
        self.batcher: ThreadBatcher[Incoming, Any] = ThreadBatcher(lambda batch: self.tracker.process(batch), 256, name="metrics")

    @property
    def ready(self) -> bool:
        return self._tracker is not None

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            raise RuntimeError("the metrics server is not started")
        return self._tracker

    def stopped(self) -> list[str]:
        return self.batcher.stopped() + stopped_tasks(self._loops)

    async def start(self) -> None:
        settings = self.settings
        store = settings.open_store()
        ledger = Ledger(settings.state_path)
        tracker = Tracker(self.models, ledger, store, self.metrics, settings.pending_ttl_seconds, settings.late_after_seconds,
                          settings.max_calibration_error)
        self._tracker = tracker
        self._diagnoser = Diagnoser(self.models, ledger, store, max_cohorts=settings.max_cohorts)

        def close() -> None:
            ledger.close()
            store.close()

        self._close = close
        self.metrics.waiting.set(ledger.pending_count())
        self.batcher.start()
        lookback = self.default_window.seconds or 3600.0
        self._loops = [
            asyncio.create_task(self._every(settings.join_interval_seconds, "joining pending feedback", tracker.join_pending)),
            asyncio.create_task(self._every(settings.scan_interval_seconds, "reading predictions",
                                            lambda: tracker.scan(settle=settings.scan_settle_seconds, lookback=lookback))),
            asyncio.create_task(self._every(settings.refresh_interval_seconds, "refreshing gauges", tracker.refresh_gauges,
                                            self.default_window)),
        ]
        if settings.diagnosis_interval_seconds > 0:
            self._loops.append(asyncio.create_task(self._every(settings.diagnosis_interval_seconds, "diagnosing", self._diagnose_all,
                                                               first=min(settings.diagnosis_interval_seconds, 5.0))))
        if settings.retention_seconds > 0:
            self._loops.append(asyncio.create_task(self._every(300.0, "retention", self._expire, ledger, settings.retention_seconds)))
        log.info("metrics server ready on port %d for %s (window %s)", settings.port,
                 ", ".join(f"{m.name} ({m.type})" for m in self.models.values()), self.default_window.describe())

    async def stop(self) -> None:
        self._tracker = None
        await cancel_and_wait(self._loops)
        await self.batcher.close(self._close)

    async def _every(self, seconds: float, what: str, fn: Callable[..., Any], *args: Any, first: float | None = None) -> None:
        await asyncio.sleep(seconds if first is None else first)
        while True:
            try:
                await self.batcher.call(fn, *args)
            except Exception as exc:  # the store may be down for a while: keep trying, say so
                log.warning("metrics: %s failed: %s", what, exc)
            await asyncio.sleep(seconds)

    def _expire(self, ledger: Ledger, seconds: float) -> None:
        removed = ledger.expire_scored(time.time() - seconds)
        if removed:
            self.metrics.retention_removed.labels("ledger").inc(removed)

    def count_rejected(self, reason: str) -> None:
        self.metrics.rejected.labels("unknown", reason).inc()

    def incoming(self, doc: Any, headers: Mapping[str, str], prediction_id: str | None = None, model: str | None = None) -> Incoming:
        """Feedback from a body (plain or Seldon) with the cohort headers; FeedbackError/ValueError (a 400) otherwise."""
        feedback = parse_feedback(doc, prediction_id)
        cohort_header = headers.get("x-seismo-cohort")
        holdout_header = headers.get("x-seismo-holdout")
        changes: dict[str, Any] = {}
        if feedback.cohort is None and cohort_header:
            changes["cohort"] = cohort_header
        if feedback.holdout is None and holdout_header:
            changes["holdout"] = truthy(holdout_header)
        if feedback.model is None and model:
            changes["model"] = model
        if changes:
            feedback = replace(feedback, **changes)
        if feedback.cohort is not None:
            check_cohort_name(feedback.cohort, "cohort")
        return Incoming(feedback, time.time())

    def incoming_event(self, headers: Mapping[str, str], body: bytes, identity: str | None = None) -> Incoming:
        """Feedback from a Seldon feedback CloudEvent; CloudEventError/ValueError (a 400) otherwise, and
        PermissionError (a 403) when `identity` may not send feedback (seismo.services.senders)."""
        event = from_http(headers, body)
        if event.type != SELDON_FEEDBACK:
            raise ValueError(f"event type {event.type!r} is not feedback ({SELDON_FEEDBACK})")
        if why := senders.refusal(identity, event):
            raise PermissionError(why)
        has_id = "requestid" in event.extensions
        prediction_id, model = prediction_id_of(event) if has_id else None, event.extensions.get("inferenceservicename")
        # Seldon sends the graph's feedback to every node with a logger. A node the metrics config names
        # (`<deployment>.<node>`) scores its own record; any other node's copy joins the puid (the root,
        # the graph's output) and counts as a duplicate of the root's.
        place = self.seldon_graphs.place(event.extensions, prediction_id) if prediction_id else None
        if place is not None and place.model in self.models:
            prediction_id, model = place.prediction_id, place.model
        return self.incoming(event.json_data(), headers, prediction_id, model)

    async def submit(self, item: Incoming) -> Any:
        """Join (or keep pending) one piece of feedback; its outcome. StoreUnavailable if the store failed."""
        try:
            return await self.batcher.submit(item)
        except Exception as exc:
            self.metrics.rejected.labels(self.metrics.model_label(item.feedback.model), "store_error").inc()
            log.error("feedback for %s not processed: %s", item.feedback.prediction_id, exc)
            raise StoreUnavailable(type(exc).__name__) from exc

    def resolve_model(self, model: str | None) -> str:
        """The model a performance read is about; LookupError (404) or ValueError (400) naming the problem."""
        if model is None:
            if len(self.models) != 1:
                raise ValueError(f"name a 'model' (configured: {sorted(self.models)})")
            return next(iter(self.models))
        if model not in self.models:
            raise LookupError(f"no metrics configuration for model {model[:200]!r} (configured: {sorted(self.models)})")
        return model

    async def outcomes(self, model: str, prediction_ids: list[str]) -> dict:
        """Each named prediction's scored instances: predicted, truth, and (classification) whether they agree."""
        found = await self.batcher.call(self.tracker.ledger.outcomes, model, prediction_ids)
        classification = self.models[model].classification
        return {"model": model, "outcomes": {pid: [{"predicted": p, "truth": t, **({"correct": p == t} if classification else {})}
                                                   for p, t in rows] for pid, rows in found.items()}}

    async def report(self, model: str, cohort: str, group: str | None, window: Lookback) -> PerformanceReport:
        return await self.batcher.call(self.tracker.report, model, cohort, group, window)

    @property
    def diagnoser(self) -> Diagnoser:
        if self._diagnoser is None:
            raise RuntimeError("the metrics server is not started")
        return self._diagnoser

    async def diagnose(self, model: str, since: float | None, cohort: str | None) -> dict:
        doc = await self.batcher.call(self.diagnoser.diagnose, model, since, cohort)
        self._export(doc)
        return doc

    def _export(self, doc: dict) -> None:
        for cohort, result in doc["cohorts"].items():
            self.metrics.set_diagnosis(doc["model"], cohort, result["verdict"], result["confidence"], VERDICTS)

    def _diagnose_all(self) -> None:
        """Every configured model over the lookback (runs on the worker thread); one model's failure
        is counted and logged, the others are still diagnosed."""
        since = time.time() - parse_duration(self.settings.diagnosis_lookback)
        for model in self.models:
            try:
                self._export(self.diagnoser.diagnose(model, since))
            except Exception:
                self.metrics.diagnosis_failures.labels(model).inc()
                log.exception("diagnosis of %s failed", model)


def create_app(settings: MetricsSettings, registry: CollectorRegistry) -> Starlette:
    """Routes that translate HTTP to the `MetricsService` (on `app.state.metrics`) and back."""
    core = MetricsService(settings, registry)

    async def submit(item: Incoming, headers: Mapping[str, str]) -> Response:
        # The feedback's span continues the sender's traceparent (a feedback event's: the delivery's, else its own).
        parent = (trace_headers(headers) or binary_trace(headers)) if core.tracing.enabled else None
        with core.tracing.span("feedback", parent, "SERVER",
                               {"seismo.prediction_id": item.feedback.prediction_id, "seismo.model": item.feedback.model}) as span:
            try:
                outcome = await core.submit(item)
            except StoreUnavailable as exc:  # 503 so the sender (or the broker) retries
                fail(span, "record store unavailable")
                return error(503, f"record store unavailable: {exc}")
            if span is not None:
                span.set_attribute("seismo.feedback_status", outcome.status)
        if outcome.status == "rejected":
            return error(400, outcome.message or "feedback rejected")
        return JSONResponse(outcome.to_json(), status_code=200 if outcome.status == "scored" else 202)

    async def feedback_body(request: Request) -> Response:
        headers = header_dict(request)  # read several times per feedback: one pass instead of a scan each
        try:
            doc = parse_json(await read_body(request, settings.max_body_bytes), "feedback body")
            if isinstance(doc, list) and request.url.path == "/feedback":
                return await submit_many(doc, headers)
            item = core.incoming(doc, headers)
        except BodyTooLarge as exc:
            core.count_rejected("too_large")
            return error(413, str(exc))
        except (FeedbackError, ConfigError, ValueError) as exc:
            core.count_rejected("invalid")
            return error(400, str(exc))
        return await submit(item, headers)

    async def submit_many(docs: list, headers: Mapping[str, str]) -> Response:
        """A JSON array of feedback (ground truth arriving in bulk, from a labelling job): each item is
        checked and answered on its own, in order; the valid ones are joined together in the worker's
        batches. 503 when the store failed for any item: a retry of the whole array is safe, because
        feedback already scored counts as a duplicate, not twice."""
        if not docs:
            raise ValueError("the feedback array is empty")
        if len(docs) > settings.max_feedback_batch:
            core.count_rejected("too_large")
            return error(413, f"{len(docs)} feedback items in one request; at most {settings.max_feedback_batch} "
                              "(SEISMO_METRICS_MAX_FEEDBACK_BATCH)")
        results: list[dict[str, Any]] = [{} for _ in docs]
        accepted: list[tuple[int, Incoming]] = []
        for number, doc in enumerate(docs):
            try:
                accepted.append((number, core.incoming(doc, headers)))
            except (FeedbackError, ConfigError, ValueError) as exc:
                core.count_rejected("invalid")
                results[number] = {"status": "rejected", "error": f"item {number}: {exc}"}
        with core.tracing.span("feedback", trace_headers(headers), "SERVER", {"seismo.feedback_items": len(docs)}) as span:
            outcomes = await asyncio.gather(*(core.submit(item) for _, item in accepted), return_exceptions=True)
            unavailable = [o for o in outcomes if isinstance(o, StoreUnavailable)]
            if unavailable:
                fail(span, "record store unavailable")
        for (number, _), outcome in zip(accepted, outcomes, strict=True):
            if isinstance(outcome, StoreUnavailable):
                results[number] = {"status": "unavailable", "error": f"record store unavailable: {outcome}"}
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results[number] = outcome.to_json()
        counts = {status: sum(r["status"] == status for r in results) for status in ("scored", "pending", "rejected", "unavailable")}
        if counts["rejected"] == len(results):  # nothing taken: the client's mistake, answered as one
            first = results[0]["error"]
            return JSONResponse({"error": f"no feedback item was taken; {first}" + (" (and the others)" if len(results) > 1 else ""),
                                 **counts, "results": results}, status_code=400)
        return JSONResponse({**counts, "results": results}, status_code=503 if unavailable else 200)

    async def feedback_event(request: Request) -> Response:
        try:
            item = core.incoming_event(request.headers, await read_body(request, settings.max_body_bytes), senders.caller(request.scope))
        except BodyTooLarge as exc:
            core.count_rejected("too_large")
            return error(413, str(exc))
        except PermissionError as exc:
            core.count_rejected("forbidden_sender")
            log.warning("refused feedback event: %s", exc)
            return error(403, str(exc))
        except (CloudEventError, FeedbackError, ConfigError, ValueError) as exc:
            core.count_rejected("invalid")
            return error(400, str(exc))
        return await submit(item, request.headers)

    def model_of(request: Request) -> str | Response:
        """The `model` a read is about, or the 404/400 answer naming the problem."""
        try:
            return core.resolve_model(request.query_params.get("model"))
        except LookupError as exc:
            return error(404, str(exc.args[0]))
        except ValueError as exc:
            return error(400, str(exc))

    async def diagnosis(request: Request) -> Response:
        params = request.query_params
        model = model_of(request)
        if isinstance(model, Response):
            return model
        try:
            since = parse_since(params.get("since"))
            cohort = params.get("cohort") or None
            if cohort is not None:
                check_cohort_name(cohort, "cohort")
        except (ValueError, ConfigError) as exc:
            return error(400, str(exc))
        return JSONResponse(await core.diagnose(model, since, cohort))

    async def outcomes(request: Request) -> Response:
        model = model_of(request)
        if isinstance(model, Response):
            return model
        ids = [i for i in (request.query_params.get("ids") or "").split(",") if i]
        if not ids or len(ids) > MAX_OUTCOME_IDS:
            return error(400, f"'ids' names 1 to {MAX_OUTCOME_IDS} prediction ids, comma-separated; got {len(ids)}")
        bad = next((i for i in ids if not is_prediction_id(i)), None)
        if bad is not None:
            return error(400, f"'ids': {bad[:60]!r} cannot be a prediction id")
        return JSONResponse(await core.outcomes(model, ids))

    async def performance(request: Request) -> Response:
        params = request.query_params
        model = model_of(request)
        if isinstance(model, Response):
            return model
        group = params.get("group") or None
        if group not in (None, "all", *GROUPS):
            return error(400, f"'group' must be all, model or holdout; got {group!r}")
        try:
            window = parse_window(params.get("window"), core.default_window)
        except ValueError as exc:
            return error(400, str(exc))
        report = await core.report(model, params.get("cohort") or ALL, None if group == "all" else group, window)
        return JSONResponse(report.to_json())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await core.start()
        try:
            yield
        finally:
            await core.stop()

    routes = [
        Route("/", feedback_event, methods=["POST"]),
        Route("/feedback", feedback_body, methods=["POST"]),
        Route("/api/v1.0/feedback", feedback_body, methods=["POST"]),
        Route("/v1/performance", performance, methods=["GET"]),
        Route("/v1/diagnosis", diagnosis, methods=["GET"]),
        Route("/v1/outcomes", outcomes, methods=["GET"]),
        *health_routes(registry, lambda: core.ready, core.stopped), openapi_route("metrics", OPERATIONS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=auth_middleware(event_paths=("/",)))
    app.state.metrics = core
    return app
