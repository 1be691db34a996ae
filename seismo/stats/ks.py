"""Two-sample Kolmogorov-Smirnov test, every feature at once.

Same statistic and p-value as `scipy.stats.ks_2samp(a, b, method="asymp")` (what alibi-detect's
KSDrift uses), computed without sorting the window or ranking most of its values:

- At fit time each feature's range (its 0.5-99.5 % quantiles, tails in two end buckets) is cut into
  as many equal-width buckets as there are reference values, and the reference's cumulative count
  per bucket is kept (`SortedReference`). A bucket id is a non-decreasing function of the value, so
  "values in buckets below b" is a prefix of both samples in sorted order.
- A window is bucketed (one multiply per value) and counted (one `bincount`). At every bucket boundary
  both empirical CDFs are then exact, and their largest gap is a lower bound of the statistic. Inside a
  bucket the gap can exceed the bound only by the bucket's own jumps: a bucket whose upper bound does
  not pass the lower bound cannot hold the sup (a bucket without reference values never can).
- The few buckets left (about three per feature) are resolved exactly: their reference and window
  values are merged by value and the gap taken at every distinct value, ties included.

scipy's `kstwo.sf` costs 0.15-0.3 ms per value (the Durbin matrix below n d^2 = 2.2, the exact Smirnov
sum above), so it is asked once per distinct statistic and kept in a table by grid point (a statistic is
a multiple of 1/lcm(n, m)). Where that grid is small (windows as large as the reference, or dividing
it), the first window of a size computes every value below n d^2 = 2.2 (where windows without drift
land) at once, so later windows without drift never wait for scipy.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from scipy.stats import kstwo

# A cap on the buckets of all features together (four 8-byte numbers each in a window's buffers) for wide
# references: fewer buckets per feature leave more values to merge, never a different statistic.
MAX_INDEX_ENTRIES = 1_000_000
TAIL_QUANTILE = 0.005
# Statistics on the 1/lcm(n, m) grid below n d^2 = 2.2 computed up front for a new window size, at most.
PRECOMPUTED_GRID = 400


class SortedReference:
    """The reference sample sorted per feature (`sorted`: one row per feature) and counted per value bucket."""

    def __init__(self, reference: np.ndarray):
        reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        n, features = reference.shape
        if n == 0:
            raise ValueError("the reference has no instances")
        if not np.isfinite(reference).all():
            raise ValueError("the reference contains NaN or infinity")
        self.n, self.features = n, features
        self.sorted = np.ascontiguousarray(np.sort(reference, axis=0).T)  # [d, n]
        self.buckets = max(1, min(n, MAX_INDEX_ENTRIES // max(features, 1)))
        low = self.sorted[:, int(TAIL_QUANTILE * (n - 1))]
        width = self.sorted[:, int(np.ceil((1 - TAIL_QUANTILE) * (n - 1)))] - low
        width[~(width > 1e-30)] = 1.0  # a constant feature: every value in one bucket (and a finite float32 scale)
        # Finite and positive in float32 too: the ids below are then never NaN (at worst +-inf, clipped).
        self._low32 = np.clip(low, -3e38, 3e38).astype(np.float32)
        self._scale32 = np.clip(self.buckets / width, 1e-30, 3e38).astype(np.float32)
        # Bucket ids run -1 (below the range) .. buckets (above it): feature j's bucket b is entry j * stride + b + 1.
        self.stride = self.buckets + 2
        # Whole numbers: float32 holds them exactly below 2^24 (float64 beyond, for references millions of features wide).
        self._offsets = (1 + np.arange(features) * self.stride).astype(np.float32 if features * self.stride < 2**24 else np.float64)
        counts = np.bincount(self._bucket_ids(self.sorted.T).reshape(-1), minlength=features * self.stride)
        # [j, b]: reference values of feature j in the buckets before entry b (b = 0 .. stride).
        self.below = np.zeros((features, self.stride + 1), dtype=np.int64)
        np.cumsum(counts.reshape(features, self.stride), axis=1, out=self.below[:, 1:])
        self._workspace_lock = threading.Lock()
        self._spare: _Workspace | None = None

    def _bucket_ids(self, values: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
        """[m, d] values -> [m, d] flat bucket entries (j * stride + bucket + 1), into `out` if given.

        Any function of the value that never decreases will do (equal values share a bucket, and
        values in a lower bucket are smaller), so it runs in float32 and truncates.
        """
        with np.errstate(over="ignore"):  # beyond float32's range: +-inf, still in order
            ids = np.subtract(values, self._low32, dtype=np.float32, out=scratch)
            np.multiply(ids, self._scale32, out=ids)
        np.clip(ids, -1, self.buckets, out=ids)
        if out is None:
            out = np.empty(ids.shape, dtype=np.intp)  # what bincount and take index with, no conversion
        # Adding a whole-number offset and truncating keeps the function non-decreasing and each feature's
        # ids inside its own stride.
        np.add(ids, self._offsets, out=out, casting="unsafe")
        return out

    @contextmanager
    def _workspace(self, m: int) -> Iterator[_Workspace]:
        """Buffers for a window of m values: its arrays are a few MB, and asking the allocator for them
        afresh on every window cost more than the test itself (page faults). One set is kept; a second
        thread testing against the same reference meanwhile gets a set of its own for that window."""
        if not self._workspace_lock.acquire(blocking=False):
            yield _Workspace(self, m)
            return
        try:
            if self._spare is None or self._spare.m != m:
                self._spare = _Workspace(self, m)
            yield self._spare
        finally:
            self._workspace_lock.release()


class _Workspace:
    """One window size's buffers against one reference (about 11 MB for 1000 x 256)."""

    def __init__(self, ref: SortedReference, m: int):
        self.m = m
        shape = (ref.features, ref.stride)
        self.scratch = np.empty((m, ref.features), dtype=np.float32)
        self.ids = np.empty((m, ref.features), dtype=np.intp)
        self.gap = np.zeros((ref.features, ref.stride + 1), dtype=np.int64)  # column 0 stays 0
        self.bound = np.empty(shape, dtype=np.int64)
        self.open = np.empty(shape, dtype=bool)
        # For windows of m values, in units of 1/(n m): the reference CDF at every bucket boundary and
        # each bucket's own jump.
        self.ref_below = ref.below * m
        self.ref_jump = np.diff(ref.below, axis=1) * m


def ks_statistic(reference: np.ndarray | SortedReference, sample: np.ndarray) -> np.ndarray:
    """Per-feature sup |F_ref - F_sample| (empirical CDFs right-continuous at ties, as scipy's).

    At the boundary before bucket b both CDFs count exactly the values in the buckets below b, so
    `gap` (F_sample - F_ref, in units of 1/(n m)) is exact there and its largest magnitude is a value
    the sup takes. Inside bucket b, F_sample - F_ref is at most gap[b + 1] + (its reference values) * m
    and F_ref - F_sample at most -gap[b] + the same: buckets whose bound stays at or under the
    boundaries' largest gap are settled; the rest are merged value by value (`_inside_buckets`).
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
    with ref._workspace(m) as work:
        ids = ref._bucket_ids(sample, out=work.ids, scratch=work.scratch).reshape(-1)
        gap, bound = work.gap, work.bound
        counts = np.bincount(ids, minlength=features * ref.stride).reshape(features, ref.stride)
        np.cumsum(counts, axis=1, out=gap[:, 1:])
        np.multiply(gap, n, out=gap)
        np.subtract(gap, work.ref_below, out=gap)
        largest = np.maximum(gap.max(axis=1), -gap.min(axis=1))
        np.negative(gap[:, :-1], out=bound)
        np.maximum(bound, gap[:, 1:], out=bound)
        np.add(bound, work.ref_jump, out=bound)
        open_ = np.greater(bound, largest[:, None], out=work.open)
        if open_.any():
            _inside_buckets(ref, sample, ids, open_, gap, m, largest)
    return largest / (n * m)


def _inside_buckets(ref: SortedReference, sample: np.ndarray, ids: np.ndarray, open_: np.ndarray, gap: np.ndarray, m: int,
                    largest: np.ndarray) -> None:
    """Raise `largest` to the exact sup inside the open buckets: their reference and window values, merged by
    (bucket, value), give both CDFs at every distinct value (the last of a run of ties counts)."""
    n, stride = ref.n, ref.stride
    buckets = np.flatnonzero(open_.reshape(-1))  # numbered as `ids` are: j * stride + entry
    in_open = np.flatnonzero(np.take(open_.reshape(-1), ids))
    window_values, window_buckets = sample.reshape(-1)[in_open], ids[in_open]
    feature, local = np.divmod(buckets, stride)
    first = ref.below[feature, local]
    sizes = ref.below[feature, local + 1] - first
    # The reference values of each open bucket: a run of `sizes` positions from `first` in its row.
    runs = np.repeat(np.cumsum(sizes) - sizes, sizes)
    positions = np.arange(len(runs)) - runs + np.repeat(first, sizes)
    ref_values = ref.sorted[np.repeat(feature, sizes), positions]
    values = np.concatenate([ref_values, window_values])
    bucket = np.concatenate([np.repeat(buckets, sizes), window_buckets])
    from_window = np.concatenate([np.zeros(len(ref_values), dtype=np.int64), np.ones(len(window_values), dtype=np.int64)])
    order = np.lexsort((values, bucket))
    values, bucket, from_window = values[order], bucket[order], from_window[order]
    # Counts so far inside the bucket: running totals minus the totals where the bucket began.
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    segment = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(bucket)]))
    window_seen = np.cumsum(from_window)
    ref_seen = np.arange(1, len(bucket) + 1) - window_seen
    window_seen -= (window_seen - from_window)[starts][segment]
    ref_seen -= (ref_seen - (1 - from_window))[starts][segment]
    row, entry = np.divmod(bucket, stride)
    value_gap = np.abs(gap[row, entry] + window_seen * n - ref_seen * m)
    last = np.r_[(values[1:] != values[:-1]) | (bucket[1:] != bucket[:-1]), True]
    np.maximum.at(largest, row[last], value_gap[last])


def _effective_n(n: int, m: int) -> float:
    """round(nm/(n+m)), as scipy computes it: the one-sample size whose Kolmogorov law the 'asymp' p-value uses."""
    big, small = max(n, m), min(n, m)
    return float(np.round(big * small / (big + small)))


_sf_memo: dict[tuple[float, float], float] = {}
MAX_MEMO = 100_000
# p-values kept per window shape (n, m) on its 1/lcm(n, m) grid, when the grid has at most this many points.
MAX_TABLE = 200_000
_tables: dict[tuple[int, int], np.ndarray] = {}
MAX_TABLES = 32


def forget_p_values() -> None:
    """Drop every memoised p-value (benchmarks time a cold start with it)."""
    _sf_memo.clear()
    _tables.clear()


def _scipy_sf(values: np.ndarray, effective_n: float) -> np.ndarray:
    """kstwo.sf per value, memoised (one scipy call for all the values not seen before): for statistics no table
    holds (a grid too fine for one, or a value off its grid)."""
    keys = [(float(d), effective_n) for d in values]
    found = {key: _sf_memo.get(key) for key in keys}
    new = [key for key, p in found.items() if p is None]
    if new:
        computed = np.atleast_1d(kstwo.sf(np.array([d for d, _ in new]), effective_n))
        if len(_sf_memo) + len(new) > MAX_MEMO:
            _sf_memo.clear()
        for key, p in zip(new, computed, strict=True):
            found[key] = _sf_memo[key] = float(p)
    return np.clip(np.array([found[key] for key in keys]), 0.0, 1.0)


def _table(n: int, m: int) -> np.ndarray | None:
    """p-values by k for the statistics k / lcm(n, m) (NaN: not computed yet); None when the grid is too fine.

    A new table gets every statistic that scipy's Durbin-matrix branch answers (below n d^2 = 2.2, where
    windows without drift land) at once when there are at most PRECOMPUTED_GRID of them (about 0.15 ms
    each, once)."""
    table = _tables.get((n, m))
    if table is None:
        grid = math.lcm(n, m)
        if grid > MAX_TABLE:
            return None
        if len(_tables) >= MAX_TABLES:
            _tables.clear()
        table = np.full(grid + 1, np.nan)
        effective_n = _effective_n(n, m)
        top = min(grid, math.ceil(math.sqrt(2.2 / effective_n) * grid))
        if top <= PRECOMPUTED_GRID:
            k = np.arange(top + 1)
            table[k] = np.clip(kstwo.sf(k / grid, effective_n), 0.0, 1.0)
        _tables[(n, m)] = table
    return table


def ks_asymp_p_value(statistic: np.ndarray, n: int, m: int) -> np.ndarray:
    """scipy's two-sided 'asymp' p-value: the one-sample Kolmogorov distribution at round(nm/(n+m)).

    A two-sample statistic is some k / lcm(n, m), and k / lcm rounds to the very float j / (n m) does (the
    same fraction), so p-values are looked up by k; anything off that grid is asked of scipy (memoised)."""
    statistic = np.asarray(statistic, dtype=np.float64)
    effective_n = _effective_n(n, m)
    table = _table(n, m)
    if table is None:
        distinct, inverse = np.unique(statistic, return_inverse=True)
        return _scipy_sf(distinct, effective_n)[inverse.reshape(statistic.shape)]
    grid = len(table) - 1
    k = np.rint(statistic * grid)
    on_grid = (k / grid == statistic) & (k >= 0) & (k <= grid)
    k = np.where(on_grid, k, 0).astype(np.intp)
    p_value = table[k]
    missing = on_grid & np.isnan(p_value)
    if missing.any():
        new = np.unique(k[missing])
        table[new] = np.clip(kstwo.sf(new / grid, effective_n), 0.0, 1.0)
        p_value = table[k]
    if not on_grid.all():
        p_value[~on_grid] = _scipy_sf(statistic[~on_grid], effective_n)
    return p_value


def ks_2samp(reference: np.ndarray | SortedReference, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(statistics, p-values), one per feature."""
    statistic = ks_statistic(reference, sample)
    n = reference.n if isinstance(reference, SortedReference) else len(reference)
    return statistic, ks_asymp_p_value(statistic, n, len(sample))
