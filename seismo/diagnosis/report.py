"""`GET /v1/diagnosis`'s answer: a verdict per model and cohort, with the evidence behind it."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from seismo.diagnosis.cascade import upstream_changes
from seismo.diagnosis.evidence import (
    MIN_WINDOW,
    change_point,
    class_drift,
    concentration,
    inputs_drift,
    ks_test,
    row_errors,
    usable_inputs,
    window_performance,
)
from seismo.diagnosis.reference import Reference, load_reference
from seismo.diagnosis.rules import Evidence, OwnPerformance, Thresholds, UpstreamChange, Verdict, decide
from seismo.performance.config import ALL, ModelConfig
from seismo.performance.ledger import Ledger
from seismo.store import RecordStore
from seismo.times import rfc3339


class Diagnoser:
    """Holds each model's reference (read once); every call reads the ledger and the store afresh."""

    def __init__(self, models: dict[str, ModelConfig], ledger: Ledger, store: RecordStore, thresholds: Thresholds | None = None,
                 max_cohorts: int = 50):
        self.models = models
        self.max_cohorts = max_cohorts
        self.ledger = ledger
        self.store = store
        self.thresholds = thresholds
        self._references: dict[str, Reference] = {}

    def reference(self, model: str) -> Reference:
        if model not in self._references:
            self._references[model] = load_reference(self.models[model].diagnosis, model)
        return self._references[model]

    def cohorts(self, model: str) -> list[str]:
        """`all` and the largest `max_cohorts` others: a client can name any number of cohorts in feedback,
        and each diagnosed cohort costs ledger reads on the metrics server's one worker thread."""
        found = self.ledger.largest_cohorts(model, self.max_cohorts + 1)
        return [ALL, *sorted(c for c in found if c != ALL)[: self.max_cohorts]]

    def evidence(self, model: str, cohort: str, since: float | None) -> Evidence:
        config = self.models[model]
        reference = self.reference(model)
        t = self.thresholds_for(config)
        series = self.ledger.scored_series(model, cohort, since)
        notes = list(reference.notes)
        keys, times, vectors = self.ledger.input_series(model, cohort, since)
        dimension = reference.inputs.shape[1] if reference.inputs is not None else None
        keys, inputs, left_out = usable_inputs(keys, vectors, dimension)
        if left_out:
            notes.append(f"{left_out} instances' inputs left out (not {dimension} finite values)")
        names = _feature_names(config, reference)
        against_reference, against_first = inputs_drift(reference, inputs, config.diagnosis.window, names)
        evidence = Evidence(len(series), reference.metric, reference.validation_error, input_vs_reference=against_reference,
                            input_vs_first=against_first, notes=notes)
        size = min(config.diagnosis.window, len(series) // 2)
        if len(series) < t.min_labelled or size < MIN_WINDOW:
            return evidence
        errors = row_errors(config, series)
        first = window_performance(config, series, errors, slice(0, size))
        latest = window_performance(config, series, errors, slice(len(series) - size, len(series)))
        split = change_point(series.at, errors)
        prediction = (class_drift(series.predicted[:size], series.predicted[-size:]) if config.classification
                      else ks_test(series.predicted[:size].reshape(-1, 1), series.predicted[-size:].reshape(-1, 1), ["prediction"]))
        by_key = dict(zip(keys, inputs))
        upstream = [self._with_downstream(config, series, errors, self._with_own_performance(u, since))
                    for u in upstream_changes(self.store, model, split, since)] if cohort == ALL else []
        return replace(evidence, first=first, latest=latest, change_point=split, prediction_drift=prediction,
                       concentration=concentration(reference, errors, series.keys, by_key), upstream=upstream)

    @staticmethod
    def _with_downstream(config: ModelConfig, series: Any, errors: np.ndarray, change: UpstreamChange) -> UpstreamChange:
        """This model's error before vs after the upstream model changed (the series is oldest first)."""
        if change.changed_at is None:
            return change
        k = int(np.searchsorted(series.at, change.changed_at))
        if min(k, len(series) - k) < MIN_WINDOW:
            return change
        return replace(change, downstream_before=window_performance(config, series, errors, slice(0, k)),
                       downstream_after=window_performance(config, series, errors, slice(k, len(series))))

    def _with_own_performance(self, change: UpstreamChange, since: float | None) -> UpstreamChange:
        """The upstream model's own error before and after it changed, when it is configured here and got truth."""
        config = self.models.get(change.model)
        if config is None or change.changed_at is None:
            return change
        series = self.ledger.scored_series(change.model, ALL, since)
        if len(series) == 0:
            return change
        after = series.at >= change.changed_at
        if min(int(after.sum()), int((~after).sum())) < MIN_WINDOW:
            return change

        def error(rows: np.ndarray) -> float:
            if config.classification:
                return float((series.predicted[rows] != series.truth[rows]).mean())
            return float(np.abs(series.predicted[rows] - series.truth[rows]).sum() / max(float(np.abs(series.truth[rows]).sum()), 1e-12))

        own = OwnPerformance("error_rate" if config.classification else "relative_mae", error(~after), error(after),
                             int((~after).sum()), int(after.sum()))
        return replace(change, own=own)

    def thresholds_for(self, config: ModelConfig) -> Thresholds:
        base = self.thresholds or Thresholds()
        return replace(base, tolerance=config.diagnosis.tolerance)

    def diagnose(self, model: str, since: float | None = None, cohort: str | None = None) -> dict[str, Any]:
        config = self.models[model]
        out: dict[str, Any] = {"model": model, "since": None if since is None else rfc3339(since), "at": rfc3339(time.time()),
                               "cohorts": {}}
        for name in ([cohort] if cohort else self.cohorts(model)):
            evidence = self.evidence(model, name, since)
            verdict = decide(evidence, self.thresholds_for(config))
            out["cohorts"][name] = verdict_json(verdict, evidence)
        return out


def verdict_json(verdict: Verdict, evidence: Evidence) -> dict[str, Any]:
    doc: dict[str, Any] = {"verdict": verdict.verdict, "confidence": round(float(verdict.confidence), 4), "reasons": verdict.reasons,
                           "evidence": _plain(evidence.to_json())}
    if verdict.culprit is not None:
        doc["culprit"] = _plain({**verdict.culprit, "at": None if verdict.culprit.get("at") is None else rfc3339(verdict.culprit["at"])})
    return doc


def _feature_names(config: ModelConfig, reference: Reference) -> list[str]:
    return list(config.features) or reference.feature_names


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to None, times (keys ending in start/end/at) to RFC 3339."""
    if isinstance(value, dict):
        return {k: (rfc3339(v) if k in ("start", "end", "change_point", "changed_at") and isinstance(v, (int, float)) and np.isfinite(v)
                    else _plain(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
