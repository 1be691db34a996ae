"""The metrics server's Prometheus metrics.

The confusion counters keep Seldon Core's metrics-server semantics under `seismo_` names, so its
Grafana queries work after renaming `seldon_metric_` to `seismo_metric_`: binary models count one of
TP/FP/FN/TN per instance (label `class` empty); multiclass models count TP for the true class when
right, else FN for the true class and FP for the predicted one (`class="CLASS_<i>"`; no TN, as in
Seldon). Counters cannot go down, so a later truth that replaces an earlier one is counted in
`seismo_metrics_feedback_replaced_total` and reflected in the windowed gauges and `/v1/performance`,
not subtracted from the counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from seismo.labels import OTHER, LabelValues

REALIZED = ("accuracy", "precision", "recall", "f1", "specificity", "mae", "mape", "rmse")
ESTIMATED = ("accuracy", "precision", "recall", "f1")
OTHER_COHORT = OTHER


class PerformanceMetrics:
    """`max_cohorts` cohort label values per model beyond `all` and the configured rules' cohorts; a
    cohort named by feedback or a header becomes a label value once `cohort_admit_after` of its
    instances were scored (seismo.labels: junk cohorts cannot lock real ones out), else `other`."""

    def __init__(self, registry: CollectorRegistry, max_cohorts: int = 50, known_cohorts: Mapping[str, Iterable[str]] | None = None,
                 cohort_admit_after: int = 10):
        self.max_cohorts = max_cohorts
        self.cohort_admit_after = cohort_admit_after
        self.known_cohorts = {model: {"all", *names} for model, names in (known_cohorts or {}).items()}
        self._cohorts: dict[str, LabelValues] = {}
        feedback = lambda name, doc: Counter(f"seismo_metrics_feedback_{name}", doc, ["model"], registry=registry)  # noqa: E731
        self.received = feedback("received", "Feedback messages accepted")
        self.joined = feedback("joined", "Feedback joined with its stored prediction by id")
        self.pending = feedback("pending", "Feedback that had to wait for its prediction to be stored")
        self.orphaned = feedback("orphaned", "Pending feedback whose prediction never showed up within the TTL")
        self.late = feedback("late", "Feedback whose truth came later than late_after_seconds after the prediction")
        self.duplicate = feedback("duplicate", "Instances whose truth was sent again unchanged (counted once)")
        self.replaced = feedback("replaced", "Instances whose earlier truth a later one replaced")
        self.reward = feedback("reward", "Sum of Seldon feedback rewards")
        self.rejected = Counter("seismo_metrics_feedback_rejected", "Feedback refused or dropped, by reason", ["model", "reason"], registry=registry)
        self.retention_removed = Counter("seismo_metrics_retention_removed", "Ledger rows removed by retention", ["what"], registry=registry)
        self.waiting = Gauge("seismo_metrics_feedback_waiting", "Feedback pending now", registry=registry)
        self.scored = Counter("seismo_metrics_instances_scored", "Instances scored with ground truth",
                              ["model", "cohort", "group"], registry=registry)
        self.seen = Counter("seismo_metrics_predictions_seen", "Logged predictions read for estimation", ["model"], registry=registry)
        self.quality_instances = Counter("seismo_data_quality_instances", "Logged instances checked against the reference's schema",
                                         ["model"], registry=registry)
        self.quality_issues = Counter("seismo_data_quality_issues", "Values unlike the reference's, by feature and issue (missing, "
                                      "out_of_range, unseen_category; shape and type per instance, feature *)",
                                      ["model", "feature", "issue"], registry=registry)
        self.quality_annotations = Counter("seismo_data_quality_annotations", "Data-quality findings posted for the records' `quality` "
                                           "annotation (outcome published), or given up (queue_full, sink_failed)",
                                           ["model", "outcome"], registry=registry)
        self.label_delay = Histogram(
            "seismo_metrics_label_delay_seconds", "Time from prediction to its ground truth", ["model"],
            buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400), registry=registry,
        )
        confusion = lambda name: Counter(f"seismo_metric_{name}", f"Seldon-style {name.replace('_', ' ')} count",  # noqa: E731
                                         ["model", "cohort", "group", "class"], registry=registry)
        self.tp, self.fp = confusion("true_positive"), confusion("false_positive")
        self.fn, self.tn = confusion("false_negative"), confusion("true_negative")
        labels = ["model", "cohort", "group"]
        self.realized = {name: Gauge(f"seismo_performance_{name}", f"Realized {name} over the sliding window", labels, registry=registry)
                         for name in REALIZED}
        self.estimated = {name: Gauge(f"seismo_performance_estimated_{name}", f"Estimated {name} (CBPE) over the sliding window",
                                      labels, registry=registry) for name in ESTIMATED}
        self.window_instances = Gauge("seismo_performance_window_instances", "Instances with truth in the sliding window", labels, registry=registry)
        self.calibration = Gauge("seismo_performance_calibration_error", "Expected calibration error on the window's labelled predictions",
                                 labels, registry=registry)

        self.business = {
            ("realized", "per_prediction"): Gauge("seismo_business_value_per_prediction",
                                                  "Realized value per labelled prediction over the sliding window (the metrics config's business unit)",
                                                  labels, registry=registry),
            ("realized", "total"): Gauge("seismo_business_value_window_total", "Realized value of the sliding window's labelled predictions",
                                         labels, registry=registry),
            ("estimated", "per_prediction"): Gauge("seismo_business_estimated_value_per_prediction",
                                                   "Expected value per logged prediction from its class probabilities (no truth needed)",
                                                   labels, registry=registry),
        }

        self.diagnosis = Gauge("seismo_diagnosis_verdict", "1 for the failure mode the latest diagnosis names (seismo.diagnosis), 0 for the others",
                               ["model", "cohort", "verdict"], registry=registry)
        self.diagnosis_confidence = Gauge("seismo_diagnosis_confidence", "Confidence of the latest diagnosis's verdict",
                                          ["model", "cohort"], registry=registry)
        self.diagnosis_failures = Counter("seismo_diagnosis_failures", "Diagnoses that failed (the loop carries on)", ["model"],
                                          registry=registry)

    def set_diagnosis(self, model: str, cohort: str, verdict: str, confidence: float, verdicts: Iterable[str]) -> None:
        label = self._cohort_values(model).peek(cohort)  # a diagnosis is no sighting: scored instances admit cohorts
        if label == OTHER:  # cohorts not admitted as label values would overwrite each other's verdicts
            return
        for name in verdicts:
            self.diagnosis.labels(model, label, name).set(1.0 if name == verdict else 0.0)
        self.diagnosis_confidence.labels(model, label).set(confidence)

    def model_label(self, model: str | None) -> str:
        """Configured models by name; a name only a client sent is `other`."""
        return model if model is not None and model in self.known_cohorts else OTHER

    def _cohort_values(self, model: str) -> LabelValues:
        values = self._cohorts.get(model)
        if values is None:
            values = self._cohorts[model] = LabelValues(self.known_cohorts.get(model, {"all"}), self.max_cohorts, self.cohort_admit_after)
        return values

    def cohort_label(self, model: str, cohort: str) -> str:
        """Cohort names come from users' feedback and headers: bounded per model (see the class)."""
        return self._cohort_values(model)(cohort)

    def count_confusion(self, model_type: str, model: str, cohort: str, group: str, predicted: float, truth: float) -> None:
        cohort = self.cohort_label(model, cohort)
        p, t = int(predicted), int(truth)
        if model_type == "binary":
            counter = (self.tp if p == 1 else self.fn) if t == 1 else (self.tn if p == 0 else self.fp)
            counter.labels(model, cohort, group, "").inc()
        elif p == t:
            self.tp.labels(model, cohort, group, f"CLASS_{t}").inc()
        else:
            self.fn.labels(model, cohort, group, f"CLASS_{t}").inc()
            self.fp.labels(model, cohort, group, f"CLASS_{p}").inc()

    def has_window_gauges(self, model: str, cohort: str) -> bool:
        """Only configured and admitted cohorts get window gauges: a gauge per junk cohort is what the bound prevents."""
        values = self._cohorts.get(model)
        return cohort in self.known_cohorts.get(model, {"all"}) or (values is not None and cohort in values.admitted)

    def set_window(self, model: str, cohort: str, group: str, realized: dict, estimated: dict, business: dict | None = None) -> None:
        if not self.has_window_gauges(model, cohort):
            return

        self.window_instances.labels(model, cohort, group).set(realized.get("n", 0))
        for name, gauge in self.realized.items():
            value = realized.get(name)
            if isinstance(value, (int, float)):
                gauge.labels(model, cohort, group).set(value)
        for name, gauge in self.estimated.items():
            value = estimated.get(name)
            if isinstance(value, (int, float)):
                gauge.labels(model, cohort, group).set(value)
        error = estimated.get("calibration", {}).get("error")
        if isinstance(error, float):
            self.calibration.labels(model, cohort, group).set(error)
        for (kind, figure), gauge in self.business.items():
            value = ((business or {}).get(kind) or {}).get(figure)
            if isinstance(value, (int, float)) and (figure != "total" or (business or {})[kind].get("n")):
                gauge.labels(model, cohort, group).set(value)
