"""A prediction plus its truth -> one scored row per instance, checked against the model's metric type.

What a row keeps is what every later number needs: the predicted value (class index, or the
regression value), the truth, and the model's scores (probabilities) for calibration and
confidence-based estimation. Cohorts are resolved here too, from the feedback, the logged request's
extensions, and the rules on its features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from seismo.performance.config import ALL, ModelConfig, check_cohort_name
from seismo.protocol.payloads import PayloadError, decode_v2_tensor, instances_of, protocol_of


class ScoringError(ValueError):
    """Truth or prediction do not fit the model's metric type; the message says how."""


@dataclass(frozen=True)
class Prediction:
    """One instance's prediction: what it predicted and, where the type has them, its scores."""

    predicted: float
    scores: tuple[float, ...] | None  # binary: (p_positive,); multiclass-onehot: the class scores


@dataclass(frozen=True)
class ScoredRow:
    row: int
    predicted: float
    truth: float
    scores: tuple[float, ...] | None


def predictions_of(config: ModelConfig, response: Any) -> list[Prediction]:
    """Each instance's prediction from a response document in any protocol."""
    try:
        outputs = np.asarray(instances_of(response), dtype=np.float64)
    except (PayloadError, TypeError, ValueError) as exc:
        raise ScoringError(f"cannot read the model's response: {exc}") from None
    if outputs.ndim == 0:
        outputs = outputs.reshape(1)
    if outputs.ndim > 2:
        raise ScoringError(f"the response has shape {list(outputs.shape)}; expected one row per instance")
    if not np.isfinite(outputs).all():
        raise ScoringError("the response contains NaN or infinity")
    rows = outputs.reshape(len(outputs), -1)
    kind = config.type
    if kind == "multiclass-onehot":
        if rows.shape[1] < 2:
            raise ScoringError("a multiclass-onehot model's response needs one score per class")
        return [Prediction(float(r.argmax()), tuple(float(v) for v in r)) for r in rows]
    if rows.shape[1] != 1 and not (kind == "binary" and rows.shape[1] == 2):
        raise ScoringError(f"a {kind} model's response needs one value per instance, got {rows.shape[1]}")
    if kind == "binary":
        p = rows[:, -1]  # [p0, p1] rows: the positive class's score
        return [Prediction(float(v >= config.threshold), (float(v),)) for v in p]
    if kind == "multiclass-numeric":
        values = rows[:, 0]
        if (values != np.round(values)).any() or (values < 0).any():
            raise ScoringError("a multiclass-numeric model's response must be non-negative class indices")
        return [Prediction(float(v), None) for v in values]
    return [Prediction(float(v), None) for v in rows[:, 0]]


def _truth_rows(config: ModelConfig, truth: np.ndarray, n: int, n_classes: int | None) -> np.ndarray:
    """The truth as one value per instance (one-hot rows to class indices), or ScoringError."""
    t = np.asarray(truth, dtype=np.float64)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim == 1 and len(t) != n and n == 1 and config.type == "multiclass-onehot":
        t = t.reshape(1, -1)  # one one-hot row for a single prediction
    if t.ndim == 2:
        if t.shape[1] == 1:
            t = t[:, 0]
        elif config.type in ("multiclass-onehot", "binary"):
            if n_classes is not None and t.shape[1] != n_classes:
                raise ScoringError(f"one-hot truth has {t.shape[1]} classes; the model scores {n_classes}")
            t = t.argmax(axis=1).astype(np.float64)  # as Seldon's metrics server does
        else:
            raise ScoringError(f"truth for a {config.type} model must be one value per instance, got rows of {t.shape[1]}")
    if len(t) != n:
        raise ScoringError(f"truth has {len(t)} values; the prediction has {n} instances")
    if config.type == "regression":
        return t
    if config.type == "binary" and not ((t == 0.0) | (t == 1.0)).all():  # np.isin costs more than the whole check
        raise ScoringError(f"truth for a binary model must be 0 or 1, got {t.tolist()[:5]}")
    if (t != np.round(t)).any() or (t < 0).any():
        raise ScoringError(f"truth for a {config.type} model must be class indices (non-negative integers), got {t.tolist()[:5]}")
    if n_classes is not None and (t >= n_classes).any():
        raise ScoringError(f"truth names class {int(t.max())}; the model scores {n_classes} classes (0-{n_classes - 1})")
    return t


def score(config: ModelConfig, response: Any, truth: np.ndarray) -> list[ScoredRow]:
    predictions = predictions_of(config, response)
    first_scores = predictions[0].scores
    n_classes = len(first_scores) if config.type == "multiclass-onehot" and first_scores is not None else None
    truths = _truth_rows(config, truth, len(predictions), n_classes)
    return [ScoredRow(i, p.predicted, float(t), p.scores) for i, (p, t) in enumerate(zip(predictions, truths))]


def feature_rows(request: Any, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each request instance as {feature: value}, for cohort rules.

    Names come from the payload where it has them (V1 instances as objects, V2 inputs one per feature,
    Seldon `data.names`), else from the model's configured `features`, else `x0, x1, ...`.
    """
    protocol = protocol_of(request)
    if protocol == "v1" and isinstance(request.get("instances"), list) and request["instances"] and isinstance(request["instances"][0], dict):
        return [dict(i) if isinstance(i, dict) else {} for i in request["instances"]]
    if protocol == "v2" and isinstance(request.get("inputs"), list) and len(request["inputs"]) > 1:
        columns = {}
        for i, doc in enumerate(request["inputs"]):
            tensor = decode_v2_tensor(doc, f"inputs[{i}]")
            columns[tensor.name] = tensor.data.reshape(len(tensor.data), -1)[:, 0] if tensor.data.ndim else tensor.data.reshape(1)
        n = min(len(c) for c in columns.values())
        return [{name: _plain(col[r]) for name, col in columns.items()} for r in range(n)]
    if protocol == "seldon" and isinstance(request.get("data"), dict) and request["data"].get("names"):
        names = tuple(str(n) for n in request["data"]["names"])
    array = np.asarray(instances_of(request))
    rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
    column_names = list(names) + [f"x{j}" for j in range(len(names), rows.shape[1])]
    return [{column_names[j]: _plain(v) for j, v in enumerate(row)} for row in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.item() if hasattr(value, "item") else value


def truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def cohorts_of(config: ModelConfig, explicit: str | None, extensions: dict[str, str], request: Any, n: int) -> list[tuple[str, ...]]:
    """The cohorts of each of `n` instances: `all`, an explicit cohort, and every matching rule."""
    base = [ALL]
    named = explicit or extensions.get(config.cohort_extension)
    if named:
        base.append(check_cohort_name(named, "cohort"))
    if not config.rules or request is None:
        return [tuple(base)] * n
    try:
        rows = feature_rows(request, config.features)
    except (PayloadError, TypeError, ValueError):
        rows = []
    out = []
    for i in range(n):
        features = rows[i] if i < len(rows) else {}
        out.append(tuple(base + [rule.name for rule in config.rules if rule.matches(features) and rule.name not in base]))
    return out
