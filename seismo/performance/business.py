"""What a model's outcomes are worth: the metrics config's `business:` block, realized and estimated.

Classifiers give a value per cell of the confusion matrix (row: the true class, column: the predicted
class; binary models are [[TN, FP], [FN, TP]]), or `correct` / `incorrect` for every cell on and off
the diagonal; regression models give a value per unit of absolute error. Values are signed: a gain is
positive, a cost negative, so "value per prediction" falls when the model gets worse.

Realized value needs truth. The estimate (classifiers with class probabilities) is the expected value
of each logged prediction if the model is calibrated: sum over classes k of P(k) x value[k, predicted],
the same assumption confidence-based performance estimation makes, with the same calibration check
beside it in `/v1/performance`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BusinessValues:
    unit: str = "value"
    """What the values are in (a currency, minutes...): a label only."""
    matrix: tuple[tuple[float, ...], ...] | None = None
    """Classifiers: value[truth][predicted]."""
    correct: float | None = None
    incorrect: float | None = None
    per_unit_error: float | None = None
    """Regression: value of one unit of absolute error (negative: a cost)."""

    def cell_values(self, n_classes: int) -> np.ndarray | str:
        """The K x K value matrix, or the reason there is none for `n_classes` classes."""
        if self.matrix is not None:
            if len(self.matrix) < n_classes:
                return f"the value matrix is {len(self.matrix)}x{len(self.matrix)}; the model scores {n_classes} classes"
            return np.asarray(self.matrix, dtype=np.float64)[:n_classes, :n_classes]
        if self.correct is None or self.incorrect is None:
            return "the business block gives neither `values` nor `correct` and `incorrect`"
        values = np.full((n_classes, n_classes), self.incorrect, dtype=np.float64)
        np.fill_diagonal(values, self.correct)
        return values


def check_matrix(values: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    """A square matrix of finite numbers, or ValueError saying what is wrong."""
    rows = tuple(tuple(float(v) for v in row) for row in values)
    if not rows or any(len(row) != len(rows) for row in rows):
        raise ValueError(f"values must be a square matrix (row: true class, column: predicted class), got {len(rows)} rows "
                         f"of lengths {sorted({len(r) for r in rows})}")
    if not all(math.isfinite(v) for row in rows for v in row):
        raise ValueError("values must be finite numbers")
    return rows


def _summary(values: np.ndarray) -> dict[str, Any]:
    n = len(values)
    total = float(values.sum()) if n else 0.0
    return {"n": n, "total": total, "per_prediction": total / n if n else None}


def realized_value(business: BusinessValues, model_type: str, predicted: np.ndarray, truth: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Value of the labelled predictions (one predicted and one true value per instance)."""
    if model_type == "regression":
        if business.per_unit_error is None:
            return {"available": False, "reason": "a regression model's business block needs `per_unit_error`"}
        errors = np.abs(predicted - truth)
        return {"available": True, **_summary(errors * business.per_unit_error)}
    cells = business.cell_values(n_classes)
    if isinstance(cells, str):
        return {"available": False, "reason": cells}
    truth, predicted = truth.astype(np.int64), predicted.astype(np.int64)
    inside = (truth < n_classes) & (predicted < n_classes) & (truth >= 0) & (predicted >= 0)
    return {"available": True, **_summary(cells[truth[inside], predicted[inside]])}


def estimated_value(business: BusinessValues, probabilities: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Expected value of each prediction under its own class probabilities (rows: predictions)."""
    if len(probabilities) == 0:
        return {"available": True, **_summary(np.zeros(0))}
    cells = business.cell_values(probabilities.shape[1])
    if isinstance(cells, str):
        return {"available": False, "reason": cells}
    expected = (probabilities * cells[:, predicted].T).sum(axis=1)  # sum_k P(k) value[k, predicted]
    return {"available": True, **_summary(expected)}
