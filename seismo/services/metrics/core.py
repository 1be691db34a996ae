"""The metrics server's core (`seismo serve metrics`): model performance from ground-truth feedback, realized and estimated.

Feedback arrives as `POST /feedback` (Seismo's body), `POST /api/v1.0/feedback` (Seldon's), or
`io.seldon.serving.feedback` CloudEvents from the broker at `POST /`. Feedback that carries the
response is scored at once; feedback that names a prediction id is joined with the stored record
(the logger's SQLite file or Elasticsearch), or waits as pending until the prediction is stored or
its TTL runs out. `GET /v1/performance` answers the current numbers; Prometheus gets counters and
windowed gauges. Background loops: join pending feedback, read new predictions for estimation,
refresh the gauges. With a sink (SEISMO_METRICS_SINK_URL), what the data-quality check finds in a
logged request goes to the broker as an `io.seismo.inference.quality` event for the record's annotations.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from seismo.batching import ThreadBatcher
from seismo.diagnosis.report import Diagnoser
from seismo.diagnosis.rules import VERDICTS
from seismo.performance.config import check_cohort_name, load_models
from seismo.performance.ledger import Ledger, Lookback
from seismo.performance.prometheus import PerformanceMetrics
from seismo.performance.report import PerformanceReport
from seismo.performance.scoring import truthy
from seismo.performance.tracker import Incoming, QualityFinding, Tracker
from seismo.protocol.cloudevents import CloudEvent, from_http
from seismo.protocol.feedback import Feedback, parse_feedback
from seismo.protocol.seldon_graph import load_graphs
from seismo.protocol.types import SEISMO_QUALITY, SELDON_FEEDBACK, prediction_id_of
from seismo.services import senders
from seismo.services.api.metrics import Feedback as ApiFeedback
from seismo.services.api.metrics import Refused
from seismo.services.auth import sender_token
from seismo.services.base import Service, running
from seismo.services.metrics.settings import MetricsSettings
from seismo.services.publish import publish_event
from seismo.services.queries import parse_window
from seismo.store.base import StoreUnavailable
from seismo.tasks import cancel_and_wait, stopped_tasks
from seismo.times import now_rfc3339, parse_duration
from seismo.tracing import Tracing, fail, trace_headers
from seismo.transport.poster import EventPoster

log = logging.getLogger(__name__)


class MetricsService(Service):
    """The metrics server without HTTP: feedback in, joined with stored predictions, performance out.

    The `Tracker` does the work on one thread (`ThreadBatcher`); background loops join pending
    feedback, read new predictions, refresh the gauges and expire old ledger rows."""

    name = "metrics"

    def __init__(self, settings: MetricsSettings, registry: CollectorRegistry, tracing: Tracing | None = None):
        self.settings = settings
        self.tracing = tracing or Tracing("metrics")  # handed in by create_app; made here when a test builds the core alone
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
        self._poster: EventPoster | None = None
        self.source = f"http://{settings.host}:{settings.port}/"
        self.batcher: ThreadBatcher[Incoming, Any] = ThreadBatcher(lambda batch: self.tracker.process(batch), 256, name="metrics")

    @property
    def ready(self) -> bool:
        return self._tracker is not None

    @property
    def tracker(self) -> Tracker:
        return running(self._tracker, "metrics")

    def stopped(self) -> list[str]:
        return self.batcher.stopped() + stopped_tasks(self._loops)

    async def start(self) -> None:
        settings = self.settings
        store = settings.open_store()
        ledger = Ledger(settings.postgres_url or settings.state_path)  # shared by every replica on PostgreSQL
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
            asyncio.create_task(self._every(settings.scan_interval_seconds, "reading predictions", lambda: tracker.scan(
                settle=settings.scan_settle_seconds, lookback=lookback, wait=settings.scan_wait_seconds))),
            asyncio.create_task(self._every(settings.refresh_interval_seconds, "refreshing gauges", tracker.refresh_gauges,
                                            self.default_window)),
        ]
        if settings.sink_url:
            tracker.quality_findings = []
            self._poster = EventPoster(4, bearer=sender_token(None, "metrics"))
            await self._poster.start()
            self._loops.append(asyncio.create_task(self._publish_quality(settings.sink_url), name="metrics-quality-publisher"))
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
        if self._poster is not None:
            await self._poster.close()
        await self.batcher.close(self._close)

    async def _every(self, seconds: float, what: str, fn: Callable[..., Any], *args: Any, first: float | None = None) -> None:
        await asyncio.sleep(seconds if first is None else first)
        while True:
            try:
                await self.batcher.call(fn, *args)
            except Exception as exc:  # the store may be down for a while: keep trying, say so
                log.warning("metrics: %s failed: %s", what, exc)
            await asyncio.sleep(seconds)

    async def _publish_quality(self, sink_url: str, concurrency: int = 8) -> None:
        """Post what the scans' data-quality checks found, a few at a time; what the sink never takes is counted."""
        while True:
            await asyncio.sleep(self.settings.scan_interval_seconds)
            try:
                findings = await self.batcher.call(self.tracker.take_quality_findings)
                for start in range(0, len(findings), concurrency):
                    await asyncio.gather(*(self._post_finding(sink_url, f) for f in findings[start:start + concurrency]))
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad round stop the loop (/healthz would report it)
                log.exception("metrics: publishing data-quality findings failed")

    async def _post_finding(self, sink_url: str, finding: QualityFinding) -> None:
        assert self._poster is not None  # started with the sink
        event = CloudEvent(str(uuid.uuid4()), self.source, SEISMO_QUALITY, orjson.dumps(finding.data()), "application/json",
                           now_rfc3339(), extensions={"requestid": finding.prediction_id, "inferenceservicename": finding.model})
        try:
            await publish_event(self._poster, sink_url, event, f"the data-quality finding on {finding.prediction_id}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # SendError, SinkRefused, or a bug: counted, and the other findings still go
            self.metrics.quality_annotations.labels(finding.model, "sink_failed").inc()
            log.warning("metrics: the data-quality finding on %s's prediction %s not published: %r", finding.model, finding.prediction_id, exc)
            return
        self.metrics.quality_annotations.labels(finding.model, "published").inc()

    def _expire(self, ledger: Ledger, seconds: float) -> None:
        removed = ledger.expire_scored(time.time() - seconds)
        if removed:
            self.metrics.retention_removed.labels("ledger").inc(removed)

    def count_rejected(self, reason: str) -> None:
        self.metrics.rejected.labels("unknown", reason).inc()

    def incoming(self, feedback: Feedback, headers: Mapping[str, str], model: str | None = None) -> Incoming:
        """Parsed feedback with the cohort headers (and the event's model); ConfigError (a 400) for a bad cohort."""
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
        # Event ingress stays raw for speed: the domain parser the API model also calls.
        return self.incoming(parse_feedback(event.json_data(), prediction_id), headers, model)

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
        return running(self._diagnoser, "metrics")

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

    async def submit_many(self, items: Sequence[ApiFeedback | Refused], headers: Mapping[str, str]) -> tuple[int, dict]:
        """A JSON array of feedback (ground truth arriving in bulk, from a labelling job), each item parsed on
        its own (`Refused` when the parser refused it) and answered in order (the answer's status and body); the
        valid ones are joined together in the worker's batches. 503 when the store failed for any item: a retry
        of the whole array is safe, because feedback already scored counts as a duplicate, not twice. Its length is
        checked before it is parsed (seismo.services.api.metrics.FeedbackOrArray)."""
        if not items:
            raise ValueError("the feedback array is empty")
        results: list[dict[str, Any]] = [{} for _ in items]
        accepted: list[tuple[int, Incoming]] = []
        for number, item in enumerate(items):
            try:
                if isinstance(item, Refused):
                    raise ValueError(item.message)
                accepted.append((number, self.incoming(item.parsed, headers)))
            except ValueError as exc:  # ConfigError (a bad cohort header) among them
                self.count_rejected("invalid")
                results[number] = {"status": "rejected", "error": f"item {number}: {exc}"}
        with self.tracing.span("feedback", trace_headers(headers), "SERVER", {"seismo.feedback_items": len(items)}) as span:
            outcomes = await asyncio.gather(*(self.submit(item) for _, item in accepted), return_exceptions=True)
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
            return 400, {"error": f"no feedback item was taken; {first}" + (" (and the others)" if len(results) > 1 else ""),
                         **counts, "results": results}
        return 503 if unavailable else 200, {**counts, "results": results}
