"""Two-sample Kolmogorov-Smirnov test, every feature at once.

Same statistic and p-value as `scipy.stats.ks_2samp(a, b, method="asymp")` (what alibi-detect's
KSDrift uses). Faster in three ways: the reference is sorted once (`SortedReference`, at fit time),
the window is sorted for all features in one call, and scipy's `kstwo.sf`, which costs about 0.15 ms
per value in its pure-Python branch, is evaluated once per distinct statistic and memoised: a
statistic is a multiple of 1/lcm(n, m), so a detector testing windows of one size soon meets only
values it has seen.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.stats import kstwo


class SortedReference:
    """The reference sample, sorted per feature, with its own ECDF at its points."""

    def __init__(self, reference: np.ndarray):
        reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        self.n = len(reference)
        self.sorted = np.ascontiguousarray(np.sort(reference, axis=0).T)  # [d, n]
        self.cdf_at_self = np.stack([np.searchsorted(row, row, side="right") for row in self.sorted]) / self.n


def ks_statistic(reference: np.ndarray | SortedReference, sample: np.ndarray) -> np.ndarray:
    """Per-feature sup |F_ref - F_sample| (empirical CDFs right-continuous at ties, as scipy's)."""
    ref = reference if isinstance(reference, SortedReference) else SortedReference(reference)
    sample = np.asarray(sample, dtype=np.float64).reshape(len(sample), -1)
    m = len(sample)
    window = np.sort(sample.T, axis=1)  # [d, m]
    out = np.empty(len(ref.sorted))
    for j, (r, w) in enumerate(zip(ref.sorted, window)):
        # The sup is attained at a data point: check every window point and every reference point.
        at_window = np.abs(np.searchsorted(r, w, side="right") / ref.n - np.searchsorted(w, w, side="right") / m).max()
        at_reference = np.abs(ref.cdf_at_self[j] - np.searchsorted(w, r, side="right") / m).max()
        out[j] = max(at_window, at_reference)
    return out


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
