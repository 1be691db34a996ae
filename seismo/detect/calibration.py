"""Split-conformal thresholds for the outlier and adversarial detectors.

A threshold taken from the scores of the very points a detector was fitted on is too low: a fitted
model scores its own training points as more typical than unseen ones (the example's VAE flagged 12 %
of clean unseen images at a "5 %" threshold). Split-conformal calibration takes it instead from points
the detector never fitted: with n calibration scores, the ceil((n + 1) q)-th smallest is a threshold
that an exchangeable unseen point exceeds with probability at most 1 - q, and at least 1 - q - 1/(n+1).

The held-out points are split once more: two thirds set the threshold, one third measures the rate it
gives (`measured_rate`), which the detector's saved config reports beside the nominal one. For
detectors on a model's own representation (embeddings), points unseen *by the detector* are not enough:
the model must not have trained on them either, so pass a calibration set of inputs it never saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

MIN_HELD_OUT = 30
"""Below this many held-out points the threshold would be the largest of a handful of scores: the
detector takes its threshold from the fitted points' own scores instead, and says so in its report."""


def conformal_threshold(scores: np.ndarray, percentile: float) -> float:
    """The ceil((n + 1) q)-th smallest of `scores` (q = percentile / 100); the largest when n is too small."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    rank = min(math.ceil((len(ordered) + 1) * percentile / 100.0), len(ordered))
    return float(ordered[rank - 1])


def split_held_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows) of a seeded split: `fraction` of n held out, none when that is under MIN_HELD_OUT."""
    order = np.random.default_rng([seed, 11]).permutation(n)
    held = int(round(n * fraction))
    if held < MIN_HELD_OUT or n - held < 2:
        return order, order[:0]
    return np.sort(order[held:]), np.sort(order[:held])


def calibrate(score: Callable[[np.ndarray], np.ndarray], held_out: np.ndarray, percentile: float, source: str,
              seed: int) -> tuple[float, dict[str, Any]]:
    """The threshold from two thirds of `held_out` (scored by `score`) and the report of the rate the last third gives."""
    order = np.random.default_rng([seed, 12]).permutation(len(held_out))
    n_threshold = max(1, (2 * len(held_out)) // 3)
    threshold_scores = score(held_out[order[:n_threshold]])
    threshold = conformal_threshold(threshold_scores, percentile)
    check = order[n_threshold:]
    measured = float(np.mean(score(held_out[check]) > threshold)) if len(check) else None
    return threshold, {
        "method": "split-conformal", "source": source, "threshold_rows": int(n_threshold), "check_rows": int(len(check)),
        "nominal_rate": round(1 - percentile / 100.0, 6), "measured_rate": measured,
    }


def in_sample(scores: np.ndarray, percentile: float, reason: str) -> tuple[float, dict[str, Any]]:
    """The old rule, for references too small to hold anything out: a percentile of the fitted points' own scores."""
    return float(np.percentile(scores, percentile)), {
        "method": "in-sample", "source": reason, "threshold_rows": int(len(scores)), "check_rows": 0,
        "nominal_rate": round(1 - percentile / 100.0, 6), "measured_rate": None,
    }


__all__ = ["MIN_HELD_OUT", "calibrate", "conformal_threshold", "in_sample", "split_held_out"]
