"""Two-sample Kolmogorov-Smirnov test, every feature at once.

Same statistic and p-value as `scipy.stats.ks_2samp(a, b, method="asymp")` (what alibi-detect's
KSDrift uses). Faster in four ways: the reference is sorted once (`SortedReference`, at fit time),
the window is sorted for all features in one call, one binary search per feature replaces four,
and scipy's `kstwo.sf`, which costs about 0.15 ms per value in its pure-Python branch, is evaluated
once per distinct statistic and memoised: a statistic is a multiple of 1/lcm(n, m), so a detector
testing windows of one size soon meets only values it has seen.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.stats import kstwo


class SortedReference:
    """The reference sample, sorted per feature (one contiguous row per feature)."""

    def __init__(self, reference: np.ndarray):
        reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        self.n = len(reference)
        self.sorted = np.ascontiguousarray(np.sort(reference, axis=0).T)  # [d, n]


def ks_statistic(reference: np.ndarray | SortedReference, sample: np.ndarray) -> np.ndarray:
    """Per-feature sup |F_ref - F_sample| (empirical CDFs right-continuous at ties, as scipy's).

    The sup of F_sample - F_ref is reached at a sample point, and the sup of F_ref - F_sample just
    below one, so one binary search of the sorted sample into the sorted reference per feature is
    enough (the old loop did four). Differences are kept in integer units of 1/(n m). Without ties,
    F_ref - F_sample just below the k-th sample point is n - (the difference at it), so one array
    serves both sides; features with ties (within the sample, or with a reference value) are
    recomputed exactly, at the cost of extra searches in those rows only.
    """
    ref = reference if isinstance(reference, SortedReference) else SortedReference(reference)
    sample = np.asarray(sample, dtype=np.float64).reshape(len(sample), -1)
    m, n, features = len(sample), ref.n, sample.shape[1]
    if features != len(ref.sorted):
        raise ValueError(f"sample has {features} features, the reference {len(ref.sorted)}")
    window = np.ascontiguousarray(sample.T)  # [d, m]: a contiguous row per feature sorts 1.5x faster than a column
    window.sort(axis=1)
    at_or_below = np.empty(window.shape, dtype=np.int64)  # reference points <= each window point
    for j in range(features):
        at_or_below[j] = np.searchsorted(ref.sorted[j], window[j], side="right")
    rank = np.arange(1, m + 1, dtype=np.int64)  # window points <= each window point, when no ties
    diff = np.multiply(at_or_below, -m)
    diff += rank * n  # (F_window - F_ref) * n m at each window point
    statistic = np.maximum(diff.max(axis=1), n - diff.min(axis=1))
    # A window point equal to a reference value: the last reference point at or below it equals it.
    # (Index -1 wraps to another row's value: at worst a false tie, which only costs an exact pass.)
    previous = at_or_below + (np.arange(features) * n - 1)[:, None]
    tied = (np.take(ref.sorted.reshape(-1), previous, mode="wrap") == window).any(axis=1)
    tied |= (window[:, 1:] == window[:, :-1]).any(axis=1)
    for t in np.flatnonzero(tied):
        row, r = window[t], ref.sorted[t]
        window_above = np.searchsorted(row, row, side="right") * n - at_or_below[t] * m
        reference_above = np.searchsorted(r, row, side="left") * m - np.searchsorted(row, row, side="left") * n
        statistic[t] = max(window_above.max(), reference_above.max())
    return statistic / (n * m)


@lru_cache(maxsize=100_000)
def _kstwo_sf(statistic: float, effective_n: float) -> float:
    return float(kstwo.sf(statistic, effective_n))


def ks_asymp_p_value(statistic: np.ndarray, n: int, m: int) -> np.ndarray:
    """scipy's two-sided 'asymp' p-value: the one-sample Kolmogorov distribution at round(nm/(n+m))."""
    big, small = max(n, m), min(n, m)
    effective_n = float(np.round(big * small / (big + small)))
    distinct, inverse = np.unique(np.asarray(statistic, dtype=np.float64), return_inverse=True)
    p = np.array([_kstwo_sf(float(d), effective_n) for d in distinct])
    return np.clip(p, 0.0, 1.0)[inverse.reshape(-1)]


def ks_2samp(reference: np.ndarray | SortedReference, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(statistics, p-values), one per feature."""
    statistic = ks_statistic(reference, sample)
    n = reference.n if isinstance(reference, SortedReference) else len(reference)
    return statistic, ks_asymp_p_value(statistic, n, len(sample))
