"""Which failure mode a model suffers, from evidence already measured: pure decision rules.

The rules (docs/concepts/diagnosis.md):

1. Too little ground truth in the range: `no_ground_truth` (drift is still reported as evidence).
2. The latest window's error is not above the validation error by more than the tolerance, beyond
   sampling noise: `healthy`.
3. It is, and an upstream model (found through lineage) changed its outputs or its version after this
   model's first production window, or at a time after which this model's error rose beyond noise
   (so that a change inside a short first window still counts): `upstream_cascade`, naming the model,
   version and time.
4. The first production window was already that bad and the model has not declined since:
   `training_serving_skew` (production differed from training from the start; "if it matched before
   and then declined, it is drift, not skew").
5. It declined since the first window, and the inputs moved between then and now while the errors
   concentrate where they moved or the label-free estimate follows the fall: `data_drift`.
6. It declined otherwise (the inputs did not move, or the errors are not where they moved and the
   estimate, which cannot see a change of P(y|x), stays up): `concept_drift`.

Confidence is the probability, under a normal approximation, that the deciding comparisons go the
way they were read (for example that the latest error really is beyond validation + tolerance),
multiplied over the comparisons the verdict rests on: a verdict on 40 labels is less sure than the
same verdict on 4,000.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

VERDICTS = ("healthy", "concept_drift", "data_drift", "training_serving_skew", "upstream_cascade", "no_ground_truth")


@dataclass(frozen=True)
class Thresholds:
    min_labelled: int = 60
    """Labelled instances needed in the range before anything but `no_ground_truth` is said."""
    tolerance: float = 0.05
    """An error (1 - accuracy, or mean absolute error) this far above validation is a regression."""
    z: float = 2.5
    """...and that many standard errors beyond it (sampling noise on small windows is not a regression)."""
    alpha: float = 0.01
    """Significance of the input and output drift tests (Bonferroni over features)."""
    concentration: float = 2.0
    """Errors concentrate where inputs moved when novel inputs' error rate is this multiple of familiar ones'."""
    follows: float = 0.5
    """The label-free estimate follows a fall when it explains at least this share of it."""


@dataclass(frozen=True)
class WindowPerformance:
    """Realized (and, for classifiers with probabilities, estimated) error of one window of labelled instances."""

    n: int
    error: float
    se: float
    """Standard error of `error`."""
    start: float
    end: float
    estimated_error: float | None = None


@dataclass(frozen=True)
class DriftTest:
    """Two samples compared feature by feature (KS) or as classes (chi-squared)."""

    p_value: float
    """Bonferroni-corrected over features."""
    statistic: float
    """Mean KS statistic over features (or the chi-squared statistic)."""
    drifted_features: float
    """Share of features whose own corrected test rejects."""
    n_reference: int
    n_sample: int
    top_features: list[str] = field(default_factory=list)
    """The features that moved most, most first."""

    def drifted(self, alpha: float) -> bool:
        return self.p_value < alpha


@dataclass(frozen=True)
class Concentration:
    """Where errors are: in labelled instances unlike the training reference (novel) or like it."""

    n_novel: int
    n_familiar: int
    novel_error: float | None
    familiar_error: float | None

    @property
    def ratio(self) -> float | None:
        if self.novel_error is None or self.familiar_error is None:
            return None
        return self.novel_error / max(self.familiar_error, 1e-3)


@dataclass(frozen=True)
class OwnPerformance:
    """An upstream model judged on its own terms, before vs after its change: the document's story is an
    upstream model that got better (its own error fell) while the model it feeds got worse."""

    metric: str
    """`error_rate` (classifiers) or `relative_mae` (regression: sum |error| / sum |truth|, free of units)."""
    before: float
    after: float
    n_before: int
    n_after: int


@dataclass(frozen=True)
class UpstreamChange:
    """What an upstream model did around this model's change point."""

    model: str
    version_before: str | None
    version_after: str | None
    output_drift: DriftTest | None
    changed_at: float | None
    """When the new version first answered (or the change point, when only the outputs moved)."""
    n_links: int
    """How many of this model's predictions name a prediction of this model as parent."""
    own: OwnPerformance | None = None
    """The upstream model's own performance before and after it changed (when it gets ground truth too)."""
    downstream_before: WindowPerformance | None = None
    """This model's error on its labelled predictions before the upstream change, and after it (each at
    least 20): the direct evidence that the change hurt this model."""
    downstream_after: WindowPerformance | None = None

    @property
    def version_changed(self) -> bool:
        return self.version_before is not None and self.version_after is not None and self.version_before != self.version_after


@dataclass(frozen=True)
class Evidence:
    n_labelled: int
    metric: str
    """`accuracy` (errors are misclassifications) or `mae`."""
    validation_error: float | None
    first: WindowPerformance | None = None
    latest: WindowPerformance | None = None
    change_point: float | None = None
    input_vs_reference: DriftTest | None = None
    input_vs_first: DriftTest | None = None
    prediction_drift: DriftTest | None = None
    concentration: Concentration | None = None
    upstream: list[UpstreamChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.concentration is not None:
            out["concentration"]["ratio"] = self.concentration.ratio
        for doc, change in zip(out["upstream"], self.upstream):
            doc["version_changed"] = change.version_changed
        return out


@dataclass(frozen=True)
class Verdict:
    verdict: str
    confidence: float
    reasons: list[str]
    culprit: dict[str, Any] | None = None
    """For `upstream_cascade`: the upstream model, its version and when it moved."""


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _margin(value: float, threshold: float, se: float) -> float:
    """How many standard errors `value` lies above `threshold`."""
    return (value - threshold) / max(se, 1e-9)


def regressed(window: WindowPerformance, validation_error: float, t: Thresholds) -> bool:
    excess = window.error - validation_error
    return excess > t.tolerance and _margin(window.error, validation_error, window.se) >= t.z


def declined(first: WindowPerformance, latest: WindowPerformance, t: Thresholds) -> bool:
    se = math.hypot(first.se, latest.se)
    return latest.error - first.error > t.tolerance and _margin(latest.error, first.error, se) >= t.z


def estimate_follows(first: WindowPerformance, latest: WindowPerformance, t: Thresholds) -> bool | None:
    """Whether the label-free estimate fell with the realized performance (None: no estimate)."""
    if first.estimated_error is None or latest.estimated_error is None:
        return None
    realized_rise = latest.error - first.error
    if realized_rise <= 0:
        return None
    return (latest.estimated_error - first.estimated_error) / realized_rise >= t.follows


def _hurt(change: UpstreamChange, t: Thresholds) -> bool:
    """This model's error rose beyond noise from before the upstream change to after it."""
    before, after = change.downstream_before, change.downstream_after
    return before is not None and after is not None and declined(before, after, t)


def _culprit(evidence: Evidence, t: Thresholds) -> UpstreamChange | None:
    first_end = evidence.first.end if evidence.first is not None else float("-inf")
    moved = [u for u in evidence.upstream
             if (u.version_changed or (u.output_drift is not None and u.output_drift.drifted(t.alpha)))
             and (u.changed_at is None or u.changed_at >= first_end or _hurt(u, t))]
    if not moved:
        return None
    # A version change with moved outputs first, then the most significant output change.
    return min(moved, key=lambda u: (not u.version_changed, u.output_drift.p_value if u.output_drift else 1.0))


def decide(evidence: Evidence, t: Thresholds = Thresholds()) -> Verdict:
    latest, first, validation = evidence.latest, evidence.first, evidence.validation_error
    if evidence.n_labelled < t.min_labelled or latest is None or first is None:
        return Verdict("no_ground_truth", 1.0 - evidence.n_labelled / t.min_labelled if evidence.n_labelled < t.min_labelled else 0.5,
                       [f"{evidence.n_labelled} labelled instances in range; at least {t.min_labelled} are needed to judge performance"])
    if validation is None:
        validation = first.error  # no validation figure: the first production window is the baseline (the reference notes it)
    limit = validation + t.tolerance
    if not regressed(latest, validation, t):
        confidence = normal_cdf(_margin(limit, latest.error, latest.se))
        return Verdict("healthy", confidence, [f"latest error {latest.error:.3f} within validation {validation:.3f} + tolerance {t.tolerance}"])
    regression_conf = normal_cdf(_margin(latest.error, limit, latest.se))
    reasons = [f"latest error {latest.error:.3f} over {latest.n} labelled instances exceeds validation {validation:.3f} + {t.tolerance}"]

    culprit = _culprit(evidence, t)
    if culprit is not None:
        drift_conf = 1.0 - (culprit.output_drift.p_value if culprit.output_drift else 0.5)
        conf = regression_conf * (max(drift_conf, 0.9) if culprit.version_changed else drift_conf)
        what = (f"upstream model {culprit.model!r} changed version {culprit.version_before} -> {culprit.version_after}"
                if culprit.version_changed else f"upstream model {culprit.model!r}'s outputs moved")
        if culprit.own is not None:
            own = culprit.own
            trend = "improved" if own.after < own.before else "did not improve"
            what += f"; on its own terms it {trend} ({own.metric} {own.before:.3f} -> {own.after:.3f})"
        named: dict[str, Any] = {"model": culprit.model, "version": culprit.version_after, "previous_version": culprit.version_before,
                                 "at": culprit.changed_at}
        if culprit.own is not None:
            named["own_performance"] = asdict(culprit.own)
        return Verdict("upstream_cascade", conf, [*reasons, what], named)

    if not declined(first, latest, t) and regressed(first, validation, t):
        se = math.hypot(first.se, latest.se)
        steady = max(0.5, normal_cdf(_margin(first.error + t.tolerance, latest.error, se)))  # not declined, as the rule read it
        conf = regression_conf * normal_cdf(_margin(first.error, limit, first.se)) * steady
        return Verdict("training_serving_skew", conf, [
            *reasons, f"the first production window was already at error {first.error:.3f}: below validation from the start, not a decline"])

    moved = evidence.input_vs_first is not None and evidence.input_vs_first.drifted(t.alpha)
    ratio = evidence.concentration.ratio if evidence.concentration is not None else None
    concentrated = ratio is not None and ratio >= t.concentration
    follows = estimate_follows(first, latest, t)
    if moved and (concentrated or follows):
        signals = [s for s, on in ((f"errors concentrate on novel inputs ({ratio:.1f}x)" if ratio is not None else "", concentrated),
                                   ("the label-free estimate fell with it", bool(follows))) if on]
        drift_p = evidence.input_vs_first.p_value if evidence.input_vs_first is not None else 1.0
        conf = regression_conf * (1.0 - drift_p) * (0.95 if concentrated and follows else 0.85)
        return Verdict("data_drift", conf, [*reasons, "the inputs moved since the first production window", *signals])
    why = "the inputs did not move since the first production window" if not moved else \
        "the inputs moved, but the errors are not where they moved and the label-free estimate did not fall"
    decline_conf = normal_cdf(_margin(latest.error, first.error + t.tolerance, math.hypot(first.se, latest.se)))
    conf = regression_conf * max(decline_conf, 0.5) * (0.9 if not moved else 0.6)  # both moved: less sure which dominates
    if follows is False:
        why += "; the label-free estimate stayed up while the realized performance fell (it cannot see P(y|x) change)"
    return Verdict("concept_drift", conf, [*reasons, f"performance declined since the first window (error {first.error:.3f} -> "
                                                     f"{latest.error:.3f})", why])
