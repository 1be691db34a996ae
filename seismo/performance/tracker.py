"""The metrics server's work, without HTTP: feedback in, joins through the record store, windows out.

Every method here blocks (SQLite, the record store); the service runs them on one worker thread, so
the ledger sees one writer and a batch of feedback is one transaction.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from seismo.embeddings.extract import embedding_of
from seismo.performance.config import ALL, ConfigError, ModelConfig
from seismo.performance.ledger import Ledger, Lookback, ScoredItem, SeenItem, pending_lock, scored_lock
from seismo.performance.prometheus import PerformanceMetrics
from seismo.performance.report import PerformanceReport, business, estimated, realized
from seismo.performance.scoring import ScoringError, cohorts_of, predictions_of, score, truthy
from seismo.protocol.binary import load_document
from seismo.protocol.feedback import Feedback, FeedbackError, parse_feedback
from seismo.protocol.payloads import PayloadError, instances_of
from seismo.store import Record, RecordStore

log = logging.getLogger(__name__)
GROUPS = ("model", "holdout")
MAX_INPUT_DIMS = 4096
"""Inputs wider than this are not kept for the diagnosis (an image model should compare embeddings)."""


QUALITY_MEMORY = 10_000
"""Prediction ids per model the data-quality count remembers, so a record the scan reads twice counts once."""
MAX_QUALITY_FINDINGS = 10_000
"""Findings held for publishing at most (the sink is down or slow): more are counted (queue_full) and dropped."""


@dataclass(frozen=True)
class QualityFinding:
    """What the data-quality check found in one logged request, for its record's `quality` annotation."""

    prediction_id: str
    model: str
    instances: int
    issues: tuple[tuple[str, str, int], ...]  # (feature label, issue, instances)

    def data(self) -> dict[str, Any]:
        return {"model": self.model, "instances": self.instances,
                "issues": [{"feature": feature, "issue": issue, "instances": count} for feature, issue, count in self.issues]}


@dataclass(frozen=True)
class Incoming:
    feedback: Feedback
    received_at: float


@dataclass(frozen=True)
class Outcome:
    status: str  # scored | pending | rejected
    prediction_id: str | None = None
    model: str | None = None
    instances: int = 0
    message: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in {"status": self.status, "prediction_id": self.prediction_id, "model": self.model,
                                   "instances": self.instances, "error": self.message}.items() if v is not None}


def feedback_to_json(feedback: Feedback) -> bytes:
    """What a pending feedback keeps: enough to parse it back unchanged."""
    return orjson.dumps({"prediction_id": feedback.prediction_id, "model": feedback.model, "truth": feedback.truth.tolist(),
                         "cohort": feedback.cohort, "tags": feedback.tags, "holdout": feedback.holdout})


def _json_body(body: bytes | None) -> Any:
    """A stored request or response as a document (JSON, or OIP binary tensors as arrays); None if neither."""
    if not body:
        return None
    try:
        return load_document(body, what="stored payload")
    except PayloadError:
        return None


MAX_UNANSWERED = 10_000
"""Predictions per model waiting for their response at most; beyond it they are counted (no_response), not
remembered: a model logged without responses would otherwise fill the ledger."""
RECHECK_BATCH = 1000
"""The oldest waiting predictions looked up again per scan."""


def _awaits_response(record: Record) -> bool:
    """Read before its response was stored (an error answer has no scores to wait for)."""
    return record.response is None and (record.status or 200) < 400


class Tracker:
    def __init__(self, models: dict[str, ModelConfig], ledger: Ledger, store: RecordStore, metrics: PerformanceMetrics,
                 pending_ttl: float, late_after: float, max_calibration_error: float):
        self.models, self.ledger, self.store, self.metrics = models, ledger, store, metrics
        self.pending_ttl, self.late_after, self.max_calibration_error = pending_ttl, late_after, max_calibration_error
        # Prediction ids whose quality was counted lately, per model: the scan re-reads the record it resumes at.
        self._quality_counted: dict[str, OrderedDict[str, None]] = {}
        # Findings to publish (None: no sink, nothing collected); the service takes them after each scan.
        self.quality_findings: list[QualityFinding] | None = None

    def config_for(self, model: str | None) -> ModelConfig:
        if model is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise ScoringError(f"feedback must name its 'model' (configured: {sorted(self.models)})")
        if model not in self.models:
            raise ScoringError(f"no metrics configuration for model {model!r} (configured: {sorted(self.models)})")
        return self.models[model]

    # -- feedback ---------------------------------------------------------------------------------

    def process(self, batch: list[Incoming]) -> list[Outcome]:
        """Score what can be scored, park what waits for its prediction; one ledger transaction."""
        # Feedback that is not self-contained always names its prediction (parse_feedback checks it).
        lookups = [i.feedback.prediction_id for i in batch if not i.feedback.self_contained and i.feedback.prediction_id]
        records = self.store.get_many(lookups) if lookups else {}
        planned: list[tuple[Incoming, Outcome, list[ScoredItem], Record | None]] = []
        for incoming in batch:
            fb = incoming.feedback
            record = records.get(fb.prediction_id) if fb.prediction_id else None
            if not fb.self_contained and (record is None or record.response is None):
                planned.append((incoming, Outcome("pending", fb.prediction_id, fb.model), [], None))
                continue
            try:
                config, items = self._score(fb, record, incoming.received_at)
            except (ScoringError, ConfigError, FeedbackError) as exc:
                planned.append((incoming, Outcome("rejected", fb.prediction_id, fb.model, message=str(exc)), [], record))
                continue
            planned.append((incoming, Outcome("scored", fb.prediction_id, config.name, len(items)), items, record))
        with self.ledger.transaction() as ledger:
            ledger.lock([*(scored_lock(outcome.model, item.key) for _, outcome, items, _ in planned if outcome.model for item in items),
                         *(pending_lock(i.feedback.prediction_id) for i, outcome, _, _ in planned
                           if outcome.status == "pending" and i.feedback.prediction_id)])  # every key first, in one order
            for incoming, outcome, items, record in planned:
                fb = incoming.feedback
                if outcome.status == "rejected":
                    continue
                if outcome.status == "pending":
                    # Counted under its model once that is known: now if the feedback names it, else
                    # when it joins (or under "unknown" when it is orphaned).
                    assert fb.prediction_id is not None  # pending feedback waits for its prediction by id
                    first = ledger.add_pending(fb.prediction_id, fb.model, incoming.received_at, feedback_to_json(fb))
                    if fb.model is not None:
                        self._count_received(ledger, fb.model, fb.reward, pending=first)
                    continue
                assert outcome.model is not None  # a scored outcome knows its model
                self._count_received(ledger, outcome.model, fb.reward)
                self._record(ledger, outcome.model, items, joined=record is not None)
        for _, outcome, _, _ in planned:
            if outcome.status == "rejected":
                self.metrics.rejected.labels(self.metrics.model_label(outcome.model), "invalid").inc()
        self.metrics.waiting.set(self.ledger.pending_count())
        return [outcome for _, outcome, _, _ in planned]

    def _count_received(self, ledger: Ledger, model: str, reward: float | None, pending: bool = False) -> None:
        ledger.bump(model, "received")
        self.metrics.received.labels(model).inc()
        if reward is not None:
            self.metrics.reward.labels(model).inc(reward)
        if pending:
            ledger.bump(model, "pending")
            self.metrics.pending.labels(model).inc()

    def _score(self, fb: Feedback, record: Record | None, received_at: float) -> tuple[ModelConfig, list[ScoredItem]]:
        if record is not None:
            if fb.model and fb.model != record.model:
                raise ScoringError(f"feedback names model {fb.model!r} but prediction {fb.prediction_id!r} was made by {record.model!r}")
            config = self.config_for(record.model)
            # The stored request matters only to cohort rules on features: not parsed otherwise.
            request = _json_body(record.request) if config.rules else None
            response, extensions = _json_body(record.response), record.extensions
            predicted_at = record.response_time or record.created_at
            if fb.self_contained and config.self_contained_feedback:
                response, request = fb.response, fb.request or request
        else:
            config = self.config_for(fb.model)
            if not config.self_contained_feedback:
                raise ScoringError(f"model {config.name!r} takes feedback only for logged predictions: send its 'prediction_id' "
                                   "(self-contained feedback is turned off in the metrics config)")
            response, request, extensions, predicted_at = fb.response, fb.request, {}, None
        rows = score(config, response, fb.truth)
        cohorts = cohorts_of(config, fb.cohort, extensions, request, len(rows))
        holdout = fb.holdout if fb.holdout is not None else truthy(extensions.get(config.holdout_extension, ""))
        group = "holdout" if holdout else "model"
        base = fb.prediction_id or str(uuid.uuid4())
        items = [ScoredItem(f"{base}#{r.row}", fb.prediction_id, group, received_at, predicted_at, r.predicted, r.truth, r.scores, cohorts[i])
                 for i, r in enumerate(rows)]
        return config, items

    def _record(self, ledger: Ledger, model: str, items: list[ScoredItem], joined: bool) -> None:
        """Inside a transaction: store scored items, count them once, observe the label delay."""
        config = self.models[model]
        if joined:
            ledger.bump(model, "joined")
            self.metrics.joined.labels(model).inc()
        if items and items[0].predicted_at is not None:
            delay = items[0].scored_at - items[0].predicted_at
            if delay >= 0:
                self.metrics.label_delay.labels(model).observe(delay)
            if delay > self.late_after:
                ledger.bump(model, "late")
                self.metrics.late.labels(model).inc()
        for item, outcome in zip(items, ledger.add_scored(model, items)):
            if outcome == "duplicate":
                self.metrics.duplicate.labels(model).inc()
                continue
            if outcome == "replaced":
                self.metrics.replaced.labels(model).inc()
                continue
            for cohort in item.cohorts:
                self.metrics.scored.labels(model, self.metrics.cohort_label(model, cohort), item.group).inc()
                if config.classification:
                    self.metrics.count_confusion(config.type, model, cohort, item.group, item.predicted, item.truth)

    # -- pending --------------------------------------------------------------------------------

    def join_pending(self, now: float | None = None) -> dict[str, int]:
        """Join pending feedback whose prediction is now stored; orphan what outlived the TTL."""
        now = now or time.time()
        waiting = self.ledger.pending_batch(now)
        if not waiting:
            return {"joined": 0, "orphaned": 0}
        records = self.store.get_many([row[0] for row in waiting])
        joinable = {pid for pid, _, _, _ in waiting if (r := records.get(pid)) is not None and r.response is not None}
        expired = {pid for pid, _, received_at, _ in waiting if pid not in joinable and received_at + self.pending_ttl < now}
        joined = orphaned = 0
        with self.ledger.transaction() as ledger:
            ledger.lock([*(scored_lock(records[pid].model, pid) for pid in joinable), *(pending_lock(pid) for pid in joinable | expired)])
            # Claimed first: with replicas sharing the ledger, only the one whose claim removed an item joins
            # (or orphans) it, so it counts once.
            for prediction_id, model, received_at, body in ledger.claim_pending(sorted(joinable | expired)):
                record = records.get(prediction_id)
                if prediction_id in joinable:
                    assert record is not None
                    try:
                        fb = parse_feedback(orjson.loads(body), prediction_id)
                        config, items = self._score(fb, record, received_at)
                    except (ScoringError, ConfigError, FeedbackError) as exc:
                        log.warning("pending feedback for %s could not be scored once joined: %s", prediction_id, exc)
                        self.metrics.rejected.labels(self.metrics.model_label(record.model), "invalid_after_join").inc()
                        continue
                    if model is None:  # its arrival was not counted yet: the model was unknown then
                        self._count_received(ledger, config.name, fb.reward, pending=True)
                    self._record(ledger, config.name, items, joined=True)
                    joined += 1
                elif received_at + self.pending_ttl >= now:  # a later truth replaced it since it was read: it waits on
                    ledger.add_pending(prediction_id, model, received_at, body)
                else:
                    if model is None:
                        self._count_received(ledger, "unknown", None, pending=True)
                    ledger.bump(model or "unknown", "orphaned")
                    self.metrics.orphaned.labels(self.metrics.model_label(model)).inc()
                    orphaned += 1
            ledger.postpone_pending([row[0] for row in waiting if row[0] not in joinable | expired], now)
        self.metrics.waiting.set(self.ledger.pending_count())
        return {"joined": joined, "orphaned": orphaned}

    # -- predictions for estimation ---------------------------------------------------------------

    def scan(self, now: float | None = None, settle: float = 1.0, lookback: float = 3600.0, limit: int = 500,
             wait: float = 300.0) -> int:
        """Read newly logged predictions of every model with scores into the ledger; how many were added.

        Records are read in creation order once `settle` old. One read before its response was stored
        is looked up again on every scan until it has one or is `wait` old (then counted as
        `no_response`): a response that comes late still counts."""
        now = now or time.time()
        until = now - settle
        added = 0
        for config in self.models.values():
            if not (config.has_probabilities or config.diagnosis.reference is not None or config.quality is not None):
                continue
            try:
                added += self._recheck_unanswered(config, now, wait)
            except Exception as exc:  # the rechecks must not hold up reading new predictions: they retry next scan
                self.metrics.rejected.labels(config.name, "recheck_failed").inc()
                log.warning("metrics: looking up %s's predictions that had no response yet failed: %r", config.name, exc)
            mark = self.ledger.scan_mark(config.name)
            since = mark if mark is not None else now - lookback
            while since < until:
                records = self.store.query(config.name, since, until, limit)
                items = [item for record in records for item in self._seen_items(config, record)]
                waiting = [(r.prediction_id, r.created_at) for r in records if _awaits_response(r)]
                with self.ledger.transaction() as ledger:
                    added += ledger.add_seen(config.name, items)
                    left_out = ledger.add_unanswered(config.name, waiting, MAX_UNANSWERED)
                    if len(records) < limit:
                        since = until
                    else:  # more to read: resume at the last one (re-reading it is harmless)
                        since = max(records[-1].created_at, since + 1e-6)
                    ledger.set_scan_mark(config.name, since)
                self.metrics.seen.labels(config.name).inc(len(items))
                if left_out:
                    self.metrics.rejected.labels(config.name, "no_response").inc(left_out)
        return added

    def _recheck_unanswered(self, config: ModelConfig, now: float, wait: float) -> int:
        waiting = self.ledger.unanswered(config.name, RECHECK_BATCH)
        if not waiting:
            return 0
        found = self.store.get_many([pid for pid, _ in waiting])
        answered = [found[pid] for pid, _ in waiting if pid in found and not _awaits_response(found[pid])]
        done = {r.prediction_id for r in answered}
        expired = [pid for pid, created_at in waiting if pid not in done and created_at < now - wait]
        items = [item for record in answered for item in self._seen_items(config, record)]
        with self.ledger.transaction() as ledger:
            added = ledger.add_seen(config.name, items)
            ledger.remove_unanswered(config.name, [*done, *expired])
        self.metrics.seen.labels(config.name).inc(len(items))
        if expired:
            self.metrics.rejected.labels(config.name, "no_response").inc(len(expired))
        return added

    def _seen_items(self, config: ModelConfig, record: Record) -> list[SeenItem]:
        response = _json_body(record.response)
        if response is None or (record.status or 200) >= 400:
            return []
        wants_inputs = config.diagnosis.reference is not None
        try:
            predictions = predictions_of(config, response)
            request = (_json_body(record.request) if config.rules or config.quality is not None
                       or (wants_inputs and config.diagnosis.inputs == "features") else None)
            cohorts = cohorts_of(config, None, record.extensions, request, len(predictions))
        except (ScoringError, ConfigError, ValueError):
            self.metrics.rejected.labels(config.name, "unreadable_prediction").inc()
            return []
        if config.quality is not None:
            try:
                self._count_quality(config, record, request, len(predictions))
            except Exception as exc:  # one odd request must not hold the scan at its record for good
                self.metrics.rejected.labels(config.name, "quality_failed").inc()
                log.warning("metrics: checking the data quality of %s's prediction %s failed: %r", config.name, record.prediction_id, exc)
        inputs = self._inputs_of(config, record, request, len(predictions)) if wants_inputs else None
        group = "holdout" if truthy(record.extensions.get(config.holdout_extension, "")) else "model"
        at = record.response_time or record.created_at
        return [SeenItem(f"{record.prediction_id}#{i}", group, at, p.scores, cohorts[i], None if inputs is None else inputs[i])
                for i, p in enumerate(predictions) if p.scores is not None or inputs is not None]

    def _count_quality(self, config: ModelConfig, record: Record, request: Any, n: int) -> None:
        """Count the request's values unlike the reference's (seismo.performance.quality), once per prediction."""
        assert config.quality is not None
        counted = self._quality_counted.setdefault(config.name, OrderedDict())
        if record.prediction_id in counted:
            return
        counted[record.prediction_id] = None
        while len(counted) > QUALITY_MEMORY:
            counted.popitem(last=False)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                rows = None if request is None else np.asarray(instances_of(request), dtype=np.float64)
        except (PayloadError, TypeError, ValueError):
            rows = None  # not numbers: counted as a type issue per instance
        if rows is not None and (rows.ndim == 0 or len(rows) != n):
            rows = np.empty((n, 0))  # not one row per prediction: the shape is what is wrong
        self.metrics.quality_instances.labels(config.name).inc(n)
        found = config.quality.check(rows, n)
        for (feature, issue), count in found.items():
            self.metrics.quality_issues.labels(config.name, feature, issue).inc(count)
        if found and self.quality_findings is not None:
            if len(self.quality_findings) >= MAX_QUALITY_FINDINGS:
                self.metrics.quality_annotations.labels(config.name, "queue_full").inc()
            else:
                issues = tuple((feature, issue, count) for (feature, issue), count in sorted(found.items()))
                self.quality_findings.append(QualityFinding(record.prediction_id, config.name, n, issues))

    def take_quality_findings(self) -> list[QualityFinding]:
        """The findings collected since the last call (called on the tracker's thread)."""
        if not self.quality_findings:
            return []
        taken, self.quality_findings = self.quality_findings, []
        return taken

    def _inputs_of(self, config: ModelConfig, record: Record, request: Any, n: int) -> np.ndarray | None:
        """Each instance's inputs for the diagnosis (n rows), or None (counted) when they cannot be read."""
        try:
            # Values beyond float32 become inf here (the diagnosis leaves non-finite rows out, with a note),
            # whatever the process's warning filters say.
            with np.errstate(over="ignore", invalid="ignore"):
                vectors = self._read_inputs(config, record, request)
        except (PayloadError, TypeError, ValueError):
            vectors = None
        if vectors is None or len(vectors) != n or vectors.size // max(n, 1) > MAX_INPUT_DIMS:
            self.metrics.rejected.labels(config.name, "unreadable_inputs").inc()
            return None
        return vectors.reshape(n, -1)

    @staticmethod
    def _read_inputs(config: ModelConfig, record: Record, request: Any) -> np.ndarray | None:
        if config.diagnosis.inputs == "embedding":
            found = embedding_of(record.response, record.extensions) if record.response else None
            return None if found is None else np.asarray(found.vectors, dtype=np.float32)
        return None if request is None else np.asarray(instances_of(request), dtype=np.float32)

    # -- reports ----------------------------------------------------------------------------------

    def report(self, model: str, cohort: str = ALL, group: str | None = None, window: Lookback = Lookback()) -> PerformanceReport:
        config = self.models[model]
        now = time.time()
        rows = self.ledger.scored_rows(model, cohort, group, window, now)
        seen = self.ledger.seen_scores(model, cohort, group, window, now) if config.has_probabilities else []
        groups = None
        if group is None:  # model-driven and holdout side by side
            groups = {g: realized(config, self.ledger.scored_rows(model, cohort, g, window, now)) for g in GROUPS}
        return PerformanceReport(model, config.type, cohort, group or "all", window.describe(), realized(config, rows),
                                 estimated(config, seen, rows, self.max_calibration_error),
                                 {**self.ledger.counts(model), "pending_now": self.ledger.pending_count()}, groups,
                                 business(config, rows, seen))

    def refresh_gauges(self, window: Lookback) -> None:
        combos: set[tuple[str, str, str | None]] = set()
        for model, cohort, group in self.ledger.groups():
            # Windows are computed only for cohorts that have gauges: clients may name thousands of cohorts,
            # and computing each one's window every refresh kept a core busy for nothing.
            if model in self.models and self.metrics.has_window_gauges(model, cohort):
                combos.update({(model, cohort, group), (model, cohort, None)})
        now = time.time()
        for model, cohort, group in sorted(combos, key=lambda c: (c[0], c[1], c[2] or "")):
            config = self.models[model]
            rows = self.ledger.scored_rows(model, cohort, group, window, now)
            seen = self.ledger.seen_scores(model, cohort, group, window, now) if config.has_probabilities else []
            self.metrics.set_window(model, cohort, group or "all", realized(config, rows), estimated(config, seen, rows, self.max_calibration_error),
                                    business(config, rows, seen))
