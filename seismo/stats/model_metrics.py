"""Model performance from ground truth, and estimated without it. Pure numpy: the metrics server's maths.

Confusion counts follow Seldon Core's metrics server per class (one-vs-rest): for a prediction of
class p with truth t, class p gets a true positive if p == t else a false positive, class t a false
negative if p != t, and every other class a true negative. Macro averages are over classes.

Confidence-based performance estimation (as NannyML's CBPE does): a calibrated model's probability
for its predicted class is the chance that prediction is right, so the expected accuracy is the mean
of those probabilities, and for binary models the expected confusion matrix follows from the positive
probabilities. It is only as good as the calibration, so `calibration_error` checks it on labelled
data first (expected calibration error over confidence bins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConfusionCounts:
    """Per class (index = class): true/false positives/negatives, one-vs-rest."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def n(self) -> int:
        return int(self.tp[0] + self.fp[0] + self.fn[0] + self.tn[0]) if len(self.tp) else 0


def confusion_counts(predicted: np.ndarray, truth: np.ndarray, n_classes: int) -> ConfusionCounts:
    predicted, truth = np.asarray(predicted, dtype=np.int64), np.asarray(truth, dtype=np.int64)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted {predicted.shape} and truth {truth.shape} differ in shape")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)  # rows: truth, columns: predicted
    np.add.at(matrix, (truth, predicted), 1)
    tp = np.diag(matrix).copy()
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    tn = len(truth) - tp - fp - fn
    return ConfusionCounts(tp, fp, fn, tn)


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den, NaN where den is 0 (a metric with no support is undefined, not 0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_metrics(counts: ConfusionCounts) -> dict:
    """Accuracy, and per-class and macro precision, recall, F1 and specificity."""
    precision = _ratio(counts.tp, counts.tp + counts.fp)
    recall = _ratio(counts.tp, counts.tp + counts.fn)
    f1 = _ratio(2 * counts.tp, 2 * counts.tp + counts.fp + counts.fn)
    specificity = _ratio(counts.tn, counts.tn + counts.fp)
    macro = lambda a: float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")  # noqa: E731
    return {
        "accuracy": float(_ratio(counts.tp.sum(), counts.n)) if counts.n else float("nan"),
        "precision": macro(precision),
        "recall": macro(recall),
        "f1": macro(f1),
        "specificity": macro(specificity),
        "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(), "specificity": specificity.tolist()},
    }


def binary_metrics(probability: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict:
    """Binary classification from positive-class probabilities: the positive class's metrics."""
    predicted = (np.asarray(probability) >= threshold).astype(np.int64)
    counts = confusion_counts(predicted, np.asarray(truth, dtype=np.int64), 2)
    metrics = classification_metrics(counts)
    per = metrics["per_class"]
    return {"accuracy": metrics["accuracy"], "precision": per["precision"][1], "recall": per["recall"][1],
            "f1": per["f1"][1], "specificity": per["specificity"][1]}


def regression_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """MAE, RMSE and MAPE (in %, over the instances whose truth is not 0)."""
    predicted, truth = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    error = predicted - truth
    nonzero = truth != 0
    mape = float(np.mean(np.abs(error[nonzero] / truth[nonzero])) * 100) if nonzero.any() else float("nan")
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))), "mape": mape}


@dataclass(frozen=True)
class Calibrator:
    """A non-decreasing map from a model's score to the chance it is right (isotonic regression by pool
    adjacent violators), fitted on labelled reference data as NannyML's CBPE does, so that estimation does
    not inherit a miscalibrated model's bias. `knots` are the distinct scores, `values` the fitted chances;
    between knots the map is linear, beyond them flat."""

    knots: np.ndarray
    values: np.ndarray
    rows: int

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.knots, self.values)


def fit_calibrator(scores: np.ndarray, outcomes: np.ndarray) -> Calibrator:
    """Isotonic regression of 0/1 `outcomes` (right, or positive) on `scores` (confidence, or positive probability)."""
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(outcomes, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"calibration needs at least two finite (score, outcome) pairs of the same length, got {x.shape} and {y.shape}")
    knots, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=y)
    means: list[float] = []
    weights: list[float] = []
    starts: list[int] = []
    for i in range(len(knots)):
        mean, weight, start = sums[i] / counts[i], float(counts[i]), i
        while means and means[-1] > mean:  # a violator: pool it with the block before
            before, before_weight = means.pop(), weights.pop()
            start = starts.pop()
            mean = (before * before_weight + mean * weight) / (before_weight + weight)
            weight += before_weight
        means.append(mean)
        weights.append(weight)
        starts.append(start)
    values = np.empty(len(knots))
    for block, (start, end) in enumerate(zip(starts, [*starts[1:], len(knots)], strict=True)):
        values[start:end] = means[block]
    return Calibrator(knots, values, len(x))


def estimated_accuracy(probabilities: np.ndarray, calibrator: Calibrator | None = None) -> float:
    """CBPE for classifiers: the mean probability of the predicted class (mapped by `calibrator` when given)."""
    confidence = np.asarray(probabilities, dtype=np.float64).max(axis=1)
    return float((confidence if calibrator is None else calibrator(confidence)).mean())


def estimated_binary_metrics(probability: np.ndarray, threshold: float = 0.5, calibrator: Calibrator | None = None) -> dict:
    """CBPE for binary classifiers: the expected confusion matrix from positive-class probabilities. The
    predictions are the model's (raw score against `threshold`); `calibrator` maps scores to the chance of a positive."""
    raw = np.asarray(probability, dtype=np.float64)
    positive = raw >= threshold
    p = raw if calibrator is None else calibrator(raw)
    tp, fp = p[positive].sum(), (1 - p[positive]).sum()
    fn, tn = p[~positive].sum(), (1 - p[~positive]).sum()
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "accuracy": float((tp + tn) / len(p)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(_ratio(2 * tp, 2 * tp + fp + fn)),
        "specificity": float(_ratio(tn, tn + fp)),
    }


def calibration_error(probabilities: np.ndarray, truth: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: |confidence - accuracy| per confidence bin, weighted by bin size."""
    p = np.asarray(probabilities, dtype=np.float64)
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    correct = predicted == np.asarray(truth)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        chosen = bins == b
        error += chosen.mean() * abs(confidence[chosen].mean() - correct[chosen].mean())
    return float(error)


def calibration_test(probabilities: np.ndarray, truth: np.ndarray, n_bins: int = 10, n_draws: int = 200,
                     max_rows: int = 5_000, seed: int = 0) -> tuple[float, float]:
    """(expected calibration error, p-value of "the model is calibrated").

    Consistency resampling: label sets drawn from the model's own confidences (each prediction correct
    with the probability it claims) give the ECE a calibrated model shows at this sample size and on these
    confidences; the p-value is the share at least as large as the observed one, the observed counted in.
    ECE is biased upward on small samples (a calibrated model's ECE from 30 rows is above 0.05 almost
    always), so a fixed threshold alone alarms on most small windows; this test holds its false-alarm rate
    at every size. Over `max_rows` rows, the null comes from a seeded sample of that many."""
    observed = calibration_error(probabilities, truth, n_bins)  # on every row
    p = np.asarray(probabilities, dtype=np.float64)
    rng = np.random.default_rng([seed, len(p)])
    if len(p) > max_rows:  # the null from a sample: its spread is at least that of all the rows (conservative)
        p = p[np.sort(rng.choice(len(p), max_rows, replace=False))]
    confidence = p.max(axis=1)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    draws = rng.random((n_draws, len(p))) < confidence  # simulated correctness under calibration
    null = np.zeros(n_draws)
    for b in np.unique(bins):
        chosen = bins == b
        null += chosen.mean() * np.abs(confidence[chosen].mean() - draws[:, chosen].mean(axis=1))
    return float(observed), float((1 + np.count_nonzero(null >= observed - 1e-12)) / (1 + n_draws))
