"""Two-sample Kolmogorov-Smirnov test, every feature at once.

Same statistic and p-value as `scipy.stats.ks_2samp(a, b, method="asymp")` (what alibi-detect's
KSDrift uses), computed without sorting the window:

- At fit time the reference is sorted per feature and indexed by value: each feature's range (its
  0.5-99.5 % quantiles, tails in two end buckets) is cut into equal-width buckets, and the index
  says where each bucket's reference values start (`SortedReference`).
- A window value's bucket, one multiply away, tells how many reference values lie below that
  bucket; only the few reference values inside its own bucket need comparing (a bisection over
  the values still undecided, usually zero to three steps).
- With "reference values at or below" for every window value, the window's empirical CDF at every
  reference point is one `bincount` and one `cumsum`, and the statistic is a max over those
  (ties handled exactly: see `ks_statistic`).

scipy's `kstwo.sf` costs 0.15-0.3 ms per value (the Durbin matrix below n d^2 = 2.2, the exact Smirnov
sum above), so it is asked once per distinct statistic and memoised. A statistic is a multiple of
1/lcm(n, m): where that grid is small (windows as large as the reference, or dividing it), the first
window of a size computes every value below n d^2 = 2.2 (where windows without drift land) at once, so
later windows without drift never wait for scipy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.stats import kstwo

# Buckets per reference value, and a cap on the index's entries (4 bytes each) for wide references.
BUCKETS_PER_VALUE = 4
MAX_INDEX_ENTRIES = 4_000_000
TAIL_QUANTILE = 0.005
# Statistics on the 1/lcm(n, m) grid below n d^2 = 2.2 computed up front for a new window size, at most.
PRECOMPUTED_GRID = 400


class SortedReference:
    """The reference sample sorted per feature (`sorted`: one row per feature), with a value index."""

    def __init__(self, reference: np.ndarray):
        reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        n, features = reference.shape
        if n == 0:
            raise ValueError("the reference has no instances")
        if not np.isfinite(reference).all():
            raise ValueError("the reference contains NaN or infinity")
        self.n, self.features = n, features
        # Each row padded by +inf: a position in this flat array is also the bincount index of
        # (feature, reference values at or below), so no offset arithmetic per window value.
        padded = np.full((features, n + 1), np.inf)
        padded[:, :n] = np.sort(reference, axis=0).T
        self._flat = padded.reshape(-1)
        self.sorted = padded[:, :n]  # [d, n], a view
        self.buckets = max(1, min(BUCKETS_PER_VALUE * n, MAX_INDEX_ENTRIES // max(features, 1)))
        low = self.sorted[:, int(TAIL_QUANTILE * (n - 1))]
        width = self.sorted[:, int(np.ceil((1 - TAIL_QUANTILE) * (n - 1)))] - low
        width[~(width > 1e-30)] = 1.0  # a constant feature: every value in one bucket (and a finite float32 scale)
        # Finite and positive in float32 too: the ids below are then never NaN (at worst +-inf, clipped).
        self._low32 = np.clip(low, -3e38, 3e38).astype(np.float32)
        self._scale32 = np.clip(self.buckets / width, 1e-30, 3e38).astype(np.float32)
        # Bucket ids run -1 (below the range) .. buckets (above it); row j's ids are offset by j * stride.
        self._stride = self.buckets + 3
        self._offsets = (1 + np.arange(features) * self._stride).astype(np.int32)
        bucket = self._bucket_ids(self.sorted)
        counts = np.bincount(bucket.reshape(-1), minlength=features * self._stride).reshape(features, self._stride)
        starts = np.zeros((features, self._stride), dtype=np.int64)
        np.cumsum(counts[:, :-1], axis=1, out=starts[:, 1:])
        starts += np.arange(features)[:, None] * (n + 1)  # positions in the padded flat array
        # Entry b + 1 of row j: the first reference value (flat position) of bucket b; entry b + 2 ends it.
        self._starts = starts.reshape(-1).astype(np.int32 if features * (n + 1) < 2**31 else np.int64)
        # Reference ties: the CDF only takes values at the end of a run of equal values.
        inner_ties = self.sorted[:, 1:] == self.sorted[:, :-1]  # [d, n - 1]: position k + 1 continues a run
        self._tied_rows = np.flatnonzero(inner_ties.any(axis=1))
        self._not_run_end = np.zeros((len(self._tied_rows), n + 1), dtype=bool)
        self._not_run_end[:, 1:n] = inner_ties[self._tied_rows]

    def _bucket_ids(self, values: np.ndarray) -> np.ndarray:
        """[d, m] values -> flat index of each value's bucket entry.

        Any function of the value that never decreases will do (equal values share a bucket, and
        values in a lower bucket are smaller), so it runs in float32 and truncates: half the bytes.
        """
        with np.errstate(over="ignore"):  # beyond float32's range: +-inf, still in order
            ids = np.subtract(values, self._low32[:, None], dtype=np.float32)
            ids *= self._scale32[:, None]
        np.clip(ids, -1, self.buckets, out=ids)
        out = ids.astype(np.int32)
        out += self._offsets[:, None]
        return out

    def at_or_below(self, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """For [m, d] finite values: [d, m] flat indices j * (n + 1) + (reference values of feature j
        at or below the value), and the indices of values equal to a reference value (None if none)."""
        # Feature-major: each feature's index and sorted values stay in cache while its window
        # values are looked up (value-major, every lookup lands in another feature's part).
        sample = np.ascontiguousarray(sample.T)
        ids = self._bucket_ids(sample)
        position = np.take(self._starts, ids)  # first reference value of the bucket
        end = np.take(self._starts[1:], ids)  # and the first of the next bucket
        # Reference values of another bucket compare as their buckets do (the bucket is monotone in
        # the value, so equal values share one): only values inside the window value's bucket are open.
        open_ = np.flatnonzero(end > position)
        if not len(open_):
            return position, None
        x = sample.reshape(-1)[open_]
        low = position.reshape(-1)[open_].astype(np.intp)
        first, high = low.copy(), end.reshape(-1)[open_]
        # Most open buckets hold one reference value: one comparison settles them.
        went = self._flat[low] <= x
        low += went
        longer = np.flatnonzero(went & (low < high))  # at or below the first, and more follow
        if len(longer):
            lo, hi, xs = low[longer], high[longer].astype(np.intp), x[longer]
            undecided = np.arange(len(longer))
            while len(undecided):  # bisection: the first reference value above x, per value still open
                left, right = lo[undecided], hi[undecided]
                middle = (left + right) >> 1
                above = self._flat[middle] > xs[undecided]
                left = np.where(above, left, middle + 1)
                right = np.where(above, middle, right)
                lo[undecided], hi[undecided] = left, right
                undecided = undecided[left < right]
            low[longer] = lo
        position.reshape(-1)[open_] = low
        equal = (low > first) & (self._flat[low - 1] == x)  # low > first: low - 1 is in the bucket
        return position, (low[equal] if equal.any() else None)


def ks_statistic(reference: np.ndarray | SortedReference, sample: np.ndarray) -> np.ndarray:
    """Per-feature sup |F_ref - F_sample| (empirical CDFs right-continuous at ties, as scipy's).

    Between two consecutive distinct reference values v_k < v_k+1 (k reference values at or below
    v_k), F_ref is k/n and F_sample only grows, so the sup of F_sample - F_ref on [v_k, v_k+1) is
    reached just below v_k+1 and the sup of F_ref - F_sample at v_k itself. Both come from the count
    of window values with at most k reference values at or below them (a cumulative bincount), plus,
    at v_k, the window values equal to it. Kept in integer units of 1/(n m).
    """
    ref = reference if isinstance(reference, SortedReference) else SortedReference(reference)
    sample = np.asarray(sample, dtype=np.float64).reshape(len(sample), -1)
    m, n, features = len(sample), ref.n, sample.shape[1]
    if features != ref.features:
        raise ValueError(f"sample has {features} features, the reference {ref.features}")
    if m == 0:
        raise ValueError("the sample has no instances")
    if not (np.isfinite(sample.min()) and np.isfinite(sample.max())):  # min and max carry NaN through
        raise ValueError("the sample contains NaN or infinity")
    index, tied = ref.at_or_below(sample)  # [m, d]
    counts = np.bincount(index.reshape(-1), minlength=features * (n + 1)).reshape(features, n + 1)
    np.cumsum(counts, axis=1, out=counts)  # [j, k]: window values below the (k+1)-th smallest reference value
    gap = counts * n
    gap -= np.arange(n + 1) * m  # (F_sample - F_ref) n m just below v_k+1: the sup over [v_k, v_k+1)
    # (F_ref - F_sample) n m at v_k = m - gap[k - 1] - n * (window values equal to v_k)
    before = gap[:, :-1].copy()
    if tied is not None:
        equal = np.bincount(tied, minlength=features * (n + 1)).reshape(features, n + 1)
        before += equal[:, 1:] * n
    if len(ref._tied_rows):  # inside a run of equal reference values F_ref takes no value: skip
        rows, inside = ref._tied_rows, ref._not_run_end
        gap[rows] = np.where(inside, np.iinfo(np.int64).min, gap[rows])
        before[rows] = np.where(inside[:, 1:], np.iinfo(np.int64).max, before[rows])
    statistic = np.maximum(gap.max(axis=1), m - before.min(axis=1))
    return statistic / (n * m)


def _effective_n(n: int, m: int) -> float:
    """round(nm/(n+m)), as scipy computes it: the one-sample size whose Kolmogorov law the 'asymp' p-value uses."""
    big, small = max(n, m), min(n, m)
    return float(np.round(big * small / (big + small)))


_sf_memo: dict[tuple[float, float], float] = {}
MAX_MEMO = 100_000


def _scipy_sf(values: np.ndarray, effective_n: float) -> np.ndarray:
    """kstwo.sf per value, memoised (one scipy call for all the values not seen before)."""
    keys = [(float(d), effective_n) for d in values]
    found = {key: _sf_memo.get(key) for key in keys}
    new = [key for key, p in found.items() if p is None]
    if new:
        computed = np.atleast_1d(kstwo.sf(np.array([d for d, _ in new]), effective_n))
        if len(_sf_memo) + len(new) > MAX_MEMO:
            _sf_memo.clear()
        for key, p in zip(new, computed, strict=True):
            found[key] = _sf_memo[key] = float(p)
    return np.array([found[key] for key in keys])


@lru_cache(maxsize=64)
def _precompute(n: int, m: int) -> None:
    """Every statistic of the 1/lcm(n, m) grid that scipy's Durbin-matrix branch answers, memoised at once for
    a new (n, m), when there are at most PRECOMPUTED_GRID of them (about 0.15 ms each, once)."""
    effective_n = _effective_n(n, m)
    grid = math.lcm(n, m)
    top = math.ceil(math.sqrt(2.2 / effective_n) * grid)
    if top <= PRECOMPUTED_GRID:
        values = np.arange(1, top + 1) * (n * m // grid) / (n * m)  # k / lcm, as ks_statistic writes it: j / (n m)
        _scipy_sf(values, effective_n)


def ks_asymp_p_value(statistic: np.ndarray, n: int, m: int) -> np.ndarray:
    """scipy's two-sided 'asymp' p-value: the one-sample Kolmogorov distribution at round(nm/(n+m))."""
    effective_n = _effective_n(n, m)
    _precompute(n, m)
    distinct, inverse = np.unique(np.asarray(statistic, dtype=np.float64), return_inverse=True)
    return np.clip(_scipy_sf(distinct, effective_n), 0.0, 1.0)[inverse.reshape(-1)]


def ks_2samp(reference: np.ndarray | SortedReference, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(statistics, p-values), one per feature."""
    statistic = ks_statistic(reference, sample)
    n = reference.n if isinstance(reference, SortedReference) else len(reference)
    return statistic, ks_asymp_p_value(statistic, n, len(sample))
