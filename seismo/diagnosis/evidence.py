"""The numbers a diagnosis rests on, measured from the metrics server's ledger and the record store.

- Realized error of the first and the latest window of labelled instances (time order), against the
  validation error from the model's metadata; the label-free (confidence-based) estimate on the same
  instances; the change point of the error series.
- Input drift (per-feature KS, Bonferroni) of the latest window against the training reference and
  against the first production window; prediction drift between the two windows.
- Where errors concentrate: error rate on novel inputs (far from every training point) vs familiar ones.
- Upstream models (`seismo.diagnosis.cascade`): found through the records' lineage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from seismo.diagnosis.reference import Reference
from seismo.diagnosis.rules import Concentration, DriftTest, WindowPerformance
from seismo.performance.config import ModelConfig
from seismo.performance.ledger import Series
from seismo.performance.report import class_probabilities
from seismo.stats.chi2 import chi2_homogeneity, contingency_table
from seismo.stats.ks import SortedReference, ks_2samp
from seismo.stats.model_metrics import estimated_accuracy

MIN_WINDOW = 20
MAX_CONCENTRATION_ROWS = 5000


def row_errors(config: ModelConfig, series: Series) -> np.ndarray:
    if config.classification:
        return (series.predicted != series.truth).astype(np.float64)
    return np.abs(series.predicted - series.truth)


def _estimated_error(config: ModelConfig, scores: Sequence[tuple[float, ...] | None]) -> float | None:
    """1 - the mean top-class probability (confidence-based estimation), or None without probabilities."""
    if not config.has_probabilities or not scores or any(s is None for s in scores):
        return None
    return 1.0 - estimated_accuracy(class_probabilities(config, [s for s in scores if s is not None]))


def window_performance(config: ModelConfig, series: Series, errors: np.ndarray, rows: slice) -> WindowPerformance:
    part = errors[rows]
    n = len(part)
    if config.classification:  # Agresti-Coull-like: never a zero standard error on a perfect window
        p = (part.sum() + 1.0) / (n + 2.0)
        se = math.sqrt(p * (1.0 - p) / n)
    else:
        se = float(part.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    at = series.at[rows]
    return WindowPerformance(n, float(part.mean()), se, float(at[0]), float(at[-1]), _estimated_error(config, series.scores[rows]))


def change_point(at: np.ndarray, errors: np.ndarray) -> float | None:
    """When the error's mean shifted most (the CUSUM split maximising k (n - k) / n (mean1 - mean2)^2)."""
    n = len(errors)
    if n < 2 * MIN_WINDOW:
        return None
    cumulative = np.cumsum(errors)
    k = np.arange(MIN_WINDOW, n - MIN_WINDOW + 1)
    left = cumulative[k - 1] / k
    right = (cumulative[-1] - cumulative[k - 1]) / (n - k)
    best = int(k[np.argmax(k * (n - k) / n * (left - right) ** 2)])
    return float(at[best])


def ks_test(reference: SortedReference | np.ndarray, sample: np.ndarray, names: Sequence[str] = ()) -> DriftTest:
    statistic, p = ks_2samp(reference, sample)
    corrected = np.minimum(p * len(p), 1.0)
    order = np.argsort(-statistic)[:3]
    labels = [names[j] if j < len(names) else f"x{j}" for j in order if corrected[j] < 0.05]
    n_ref = reference.n if isinstance(reference, SortedReference) else len(reference)
    return DriftTest(float(corrected.min()), float(statistic.mean()), float((corrected < 0.05).mean()), n_ref, len(sample), labels)


def class_drift(before: np.ndarray, after: np.ndarray) -> DriftTest:
    categories = np.unique(np.concatenate([before, after]))
    statistic, p = chi2_homogeneity(contingency_table(before, after, categories))
    return DriftTest(p, statistic, float(p < 0.05), len(before), len(after))


def inputs_drift(reference: Reference, vectors: np.ndarray, window: int, names: Sequence[str]) -> tuple[DriftTest | None, DriftTest | None]:
    """(latest window vs the training reference, latest window vs the first production window)."""
    size = min(window, len(vectors) // 2)
    if size < MIN_WINDOW:
        return None, None
    first, latest = vectors[:size], vectors[-size:]
    against_reference = ks_test(reference.sorted, latest, names) if reference.sorted is not None else None
    return against_reference, ks_test(first, latest, names)


def concentration(reference: Reference, errors: np.ndarray, keys: list[str], inputs: dict[str, np.ndarray]) -> Concentration | None:
    """Error rate of novel vs familiar labelled instances (the newest 5,000 with inputs)."""
    if reference.novelty_threshold is None:
        return None
    chosen = [(i, inputs[k]) for i, k in enumerate(keys) if k in inputs][-MAX_CONCENTRATION_ROWS:]
    if len(chosen) < MIN_WINDOW:
        return None
    rows = np.array([i for i, _ in chosen])
    novel = reference.novel(np.stack([v for _, v in chosen]))
    e = errors[rows]
    novel_error = float(e[novel].mean()) if novel.sum() >= 5 else None
    familiar_error = float(e[~novel].mean()) if (~novel).sum() >= 5 else None
    return Concentration(int(novel.sum()), int((~novel).sum()), novel_error, familiar_error)


def usable_inputs(keys: list[str], vectors: list[np.ndarray], dimension: int | None) -> tuple[list[str], np.ndarray, int]:
    """Rows of the reference's width with finite values; how many were left out."""
    kept = [(k, v) for k, v in zip(keys, vectors) if (dimension is None or v.size == dimension) and np.isfinite(v).all()]
    if dimension is None and kept:
        width = kept[0][1].size
        kept = [(k, v) for k, v in kept if v.size == width]
    array = np.stack([v for _, v in kept]).astype(np.float64) if kept else np.empty((0, dimension or 0))
    return [k for k, _ in kept], array, len(keys) - len(kept)
