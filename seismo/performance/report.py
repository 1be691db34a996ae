"""A window's rows -> realized and estimated performance, as `/v1/performance` and the gauges report it.

Realized numbers need truth; estimated ones (confidence-based performance estimation, as NannyML's
CBPE) need only the model's scores, so they cover every logged prediction. The estimate is trusted
only as far as the model is calibrated: the calibration check (expected calibration error on the
labelled rows of the same window) comes with every estimate, together with the estimate for exactly
those labelled rows, so estimated and realized can be compared like for like.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from seismo.performance.business import estimated_value, realized_value
from seismo.performance.config import ModelConfig
from seismo.performance.ledger import Rows
from seismo.stats.model_metrics import (
    calibration_test,
    classification_metrics,
    confusion_counts,
    estimated_accuracy,
    estimated_binary_metrics,
    regression_metrics,
)

MIN_LABELLED_FOR_CALIBRATION = 30
CALIBRATION_ALPHA = 0.01
"""A calibrated model is flagged in at most this share of windows, at any number of labelled rows."""


@dataclass(frozen=True)
class PerformanceReport:
    """`/v1/performance`'s answer for one model, cohort, group and window.

    `realized` and `estimated` keep their metric names as keys: which metrics there are depends on the
    model's type (classification or regression, binary or multiclass)."""

    model: str
    type: str
    cohort: str
    group: str
    window: str
    realized: Mapping[str, Any]
    estimated: Mapping[str, Any]
    counts: Mapping[str, int]
    groups: Mapping[str, Mapping[str, Any]] | None = None
    """Model-driven and holdout side by side, when the report covers both groups."""
    business: Mapping[str, Any] | None = None
    """Realized and estimated value of the outcomes, when the model's config has a business block."""

    def to_json(self) -> dict[str, Any]:
        out = {"model": self.model, "type": self.type, "cohort": self.cohort, "group": self.group, "window": self.window,
               "realized": self.realized, "estimated": self.estimated, "counts": self.counts}
        if self.groups is not None:
            out["groups"] = self.groups
        if self.business is not None:
            out["business"] = self.business
        return out


def n_classes_of(config: ModelConfig, rows: Rows) -> int:
    if config.type == "binary":
        return 2
    with_scores = [s for s in rows.scores if s is not None]
    if config.type == "multiclass-onehot" and with_scores:
        return len(with_scores[0])
    top = max(rows.predicted.max(initial=0), rows.truth.max(initial=0))
    return int(top) + 1


def realized(config: ModelConfig, rows: Rows) -> dict:
    if len(rows) == 0:
        return {"n": 0}
    if config.type == "regression":
        return {"n": len(rows), **regression_metrics(rows.predicted, rows.truth)}
    n_classes = n_classes_of(config, rows)
    counts = confusion_counts(rows.predicted.astype(np.int64), rows.truth.astype(np.int64), n_classes)
    metrics = classification_metrics(counts)
    if config.type == "binary":  # the positive class's numbers, as binary metrics are usually read
        per = metrics["per_class"]
        return {"n": len(rows), "accuracy": metrics["accuracy"], "precision": per["precision"][1], "recall": per["recall"][1],
                "f1": per["f1"][1], "specificity": per["specificity"][1],
                "confusion": {"tp": int(counts.tp[1]), "fp": int(counts.fp[1]), "fn": int(counts.fn[1]), "tn": int(counts.tn[1])}}
    return {"n": len(rows), **metrics}


def class_probabilities(config: ModelConfig, scores: list[tuple[float, ...]]) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if config.type == "binary":
        p = array[:, 0]
        return np.stack([1 - p, p], axis=1)
    return array


def _estimate(config: ModelConfig, probabilities: np.ndarray) -> dict:
    if config.type == "binary":
        return estimated_binary_metrics(probabilities[:, 1], config.threshold, config.calibrator)
    return {"accuracy": estimated_accuracy(probabilities, config.calibrator)}


def estimated(config: ModelConfig, seen: list[tuple[float, ...]], labelled: Rows, max_calibration_error: float) -> dict:
    """Estimated metrics over every prediction seen, with the calibration check on the labelled ones."""
    if not config.has_probabilities:
        return {"available": False, "reason": f"a {config.type} model's responses carry no class probabilities"}
    out: dict = {"available": True, "n": len(seen),
                 "calibrated_on": config.calibrator.rows if config.calibrator is not None else None}
    if seen:
        out.update(_estimate(config, class_probabilities(config, seen)))
    with_scores = [(s, t) for s, t in zip(labelled.scores, labelled.truth) if s is not None]
    calibration: dict = {"n_labelled": len(with_scores), "max_error": max_calibration_error}
    if with_scores:
        probabilities = class_probabilities(config, [s for s, _ in with_scores])
        truth = np.array([t for _, t in with_scores])
        out["on_labelled"] = _estimate(config, probabilities)
        calibration["error"], calibration["p_value"] = calibration_test(probabilities, truth)
    if len(with_scores) >= MIN_LABELLED_FOR_CALIBRATION:
        # Miscalibrated when the error is over the limit and more than chance at this sample size explains.
        calibration["calibrated"] = not (calibration["error"] > max_calibration_error and calibration["p_value"] < CALIBRATION_ALPHA)
    else:
        calibration["calibrated"] = None  # too few labels to judge
    out["calibration"] = calibration
    if calibration["calibrated"] is False:
        out["warning"] = (f"the model is not calibrated on the labelled predictions (expected calibration error "
                          f"{calibration['error']:.3f} > {max_calibration_error}, p = {calibration['p_value']:.3g}): "
                          "the estimate is not reliable")
    return out


def _predicted_classes(config: ModelConfig, probabilities: np.ndarray) -> np.ndarray:
    if config.type == "binary":
        return (probabilities[:, 1] >= config.threshold).astype(np.int64)
    return probabilities.argmax(axis=1)


def business(config: ModelConfig, rows: Rows, seen: list[tuple[float, ...]]) -> dict | None:
    """The window's value in the config's unit: realized on the labelled rows, estimated on every
    prediction seen and, like for like, on the labelled ones (seismo.performance.business)."""
    values = config.business
    if values is None:
        return None
    n_classes = n_classes_of(config, rows) if config.classification else 0
    out: dict[str, Any] = {"unit": values.unit, "realized": realized_value(values, config.type, rows.predicted, rows.truth, n_classes)}
    if not config.has_probabilities:
        out["estimated"] = {"available": False, "reason": f"a {config.type} model's responses carry no class probabilities"}
        return out
    probabilities = class_probabilities(config, seen) if seen else np.zeros((0, max(n_classes, 2)))
    out["estimated"] = estimated_value(values, probabilities, _predicted_classes(config, probabilities))
    labelled = [s for s in rows.scores if s is not None]
    if labelled and out["estimated"]["available"]:
        p = class_probabilities(config, labelled)
        out["estimated"]["on_labelled"] = estimated_value(values, p, _predicted_classes(config, p))
    return out
