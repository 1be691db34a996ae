"""Maximum mean discrepancy with a Gaussian RBF kernel and a permutation test.

Every permutation's MMD^2 comes from sums of kernel entries over its two groups, and those sums are
matrix products with a 0/1 assignment matrix: 100 permutations cost about as much as one kernel
evaluation instead of 100 (alibi-detect recomputes per permutation). `MMDTest` goes further for a
detector that tests many windows against one reference:

- the permutations are drawn once per window size (seeded) and kept, so the reference's own block
  of the kernel enters only through sums computed once (K_rr times the assignments): a window costs
  its cross block and its own block, not the pooled kernel;
- the diagonal of an RBF kernel is 1, so the unbiased estimator needs, per permutation, only
  a'Ka and a'K1 (b = 1 - a gives the rest);
- kernel blocks are float32 (their products are the cost); the sums that combine them are float64.

The p-value is valid for every window (the permutations were drawn before any data was seen); the
windows of one detector share its draw.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

BLOCK_ROWS = 2048
"""Rows of a kernel block made at once: bounds memory for large references (2048 x n float32)."""


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, [n, m], clipped at 0 against rounding."""
    a2 = np.einsum("ij,ij->i", a, a)[:, None]
    b2 = np.einsum("ij,ij->i", b, b)[None, :]
    return np.maximum(a2 + b2 - 2.0 * a @ b.T, 0.0)


def median_heuristic_sigma(reference: np.ndarray) -> float:
    """Bandwidth from the reference alone, as alibi-detect configures it from x_ref.

    sigma = sqrt(median / 2) of the pairwise squared distances, the zero self-distances excluded.
    """
    d = squared_distances(reference, reference)
    n = len(reference)
    values = np.sort(d, axis=None)
    median_index = n + (d.size - n) // 2 - 1
    sigma = float(np.sqrt(0.5 * values[median_index]))
    return sigma if sigma > 0 else 1.0


def rbf_kernel(d2: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-d2 / (2.0 * sigma**2))


def mmd2_unbiased_many(kernel: np.ndarray, assignments: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each column of `assignments` (1: first sample, 0: second), [k] values."""
    a = assignments.astype(kernel.dtype)
    b = 1.0 - a
    n = a.sum(axis=0)
    m = b.sum(axis=0)
    ka = kernel @ a
    diag = np.diag(kernel)[:, None]
    xx = (a * ka).sum(axis=0) - (a * diag).sum(axis=0)
    yy = (b * (kernel @ b)).sum(axis=0) - (b * diag).sum(axis=0)
    xy = (b * ka).sum(axis=0)
    return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (n * m)


@dataclass(frozen=True)
class _Plan:
    """The permutations for one window size, and the reference's part of their sums."""

    a_ref: np.ndarray  # [n, P+1] float32: 1 where a reference row falls in the first group
    a_win: np.ndarray  # [m, P+1] float32: 1 where a window row does; column 0 is the observed split
    ref_aka: np.ndarray  # [P+1] a_r' K_rr a_r
    ref_a1: np.ndarray  # [P+1] a_r' K_rr 1


class MMDTest:
    """The permutation test of windows against one reference (see the module's notes)."""

    def __init__(self, reference: np.ndarray, sigma: float, n_permutations: int = 100, seed: int | list[int] | None = 0,
                 max_plans: int = 4):
        reference = np.asarray(reference, dtype=np.float64)
        # Distances do not change with a shift: centred on the reference's mean, they are float32-safe
        # (features around 1e4 would leave nothing of a unit distance in |a|^2 + |b|^2 - 2ab otherwise).
        self._centre = reference.mean(axis=0)
        self.reference = self._centred(reference)
        self.gamma = np.float32(1.0 / (2.0 * sigma**2))
        self.n_permutations, self.seed, self.max_plans = n_permutations, seed, max_plans
        self._ref_sq = np.einsum("ij,ij->i", self.reference, self.reference)
        self._ref_total: float | None = None  # 1' K_rr 1
        self._plans: OrderedDict[int, _Plan] = OrderedDict()

    def _centred(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x - self._centre, dtype=np.float32)

    def _kernel(self, a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
        """exp(-gamma |a_i - b_j|^2) = exp(2 gamma ab - gamma |a|^2 - gamma |b|^2), in place, float32."""
        k = a @ b.T
        k *= 2.0 * self.gamma
        k -= (self.gamma * a_sq)[:, None]
        k -= (self.gamma * b_sq)[None, :]
        np.minimum(k, 0.0, out=k)  # a distance below 0 is rounding
        return np.exp(k, out=k)

    def _plan(self, m: int) -> _Plan:
        plan = self._plans.get(m)
        if plan is not None:
            self._plans.move_to_end(m)
            return plan
        n, total = len(self.reference), len(self.reference) + m
        rng = np.random.default_rng(self.seed)
        assignments = np.zeros((total, self.n_permutations + 1), dtype=np.float32)
        assignments[:n, 0] = 1.0  # column 0: the observed split
        for k in range(1, self.n_permutations + 1):
            assignments[rng.permutation(total)[:n], k] = 1.0
        a_ref, a_win = assignments[:n], np.ascontiguousarray(assignments[n:])
        ref_aka = np.zeros(self.n_permutations + 1)
        ref_a1 = np.zeros(self.n_permutations + 1)
        ref_total = 0.0
        for start in range(0, n, BLOCK_ROWS):  # K_rr a block of rows at a time
            rows = slice(start, start + BLOCK_ROWS)
            block = self._kernel(self.reference[rows], self._ref_sq[rows], self.reference, self._ref_sq)
            ref_aka += np.einsum("ij,ij->j", a_ref[rows], block @ a_ref, dtype=np.float64)
            row_sums = block.sum(axis=1, dtype=np.float64)
            ref_a1 += a_ref[rows].T.astype(np.float64) @ row_sums
            ref_total += float(row_sums.sum())
        self._ref_total = ref_total
        plan = _Plan(np.ascontiguousarray(a_ref), a_win, ref_aka, ref_a1)
        self._plans[m] = plan
        if len(self._plans) > self.max_plans:  # time windows vary in size: keep the latest few
            self._plans.popitem(last=False)
        return plan

    def test(self, sample: np.ndarray) -> tuple[float, float, float]:
        """(MMD^2, p-value, MMD^2 threshold at the 95th permutation percentile).

        The p-value counts the observed split among the permutations, (1 + #{permuted >= observed}) /
        (1 + n_permutations), as the other tests' p-values do: never exactly 0, so a Bonferroni or
        log-scale comparison stays finite (alibi-detect's share without the +1 can be 0)."""
        sample = self._centred(np.asarray(sample, dtype=np.float64))
        n, m = len(self.reference), len(sample)
        if n < 2 or m < 2:
            raise ValueError("MMD needs at least 2 reference and 2 window instances")
        plan = self._plan(m)
        assert self._ref_total is not None  # set by _plan
        sample_sq = np.einsum("ij,ij->i", sample, sample)
        k_ww = self._kernel(sample, sample_sq, sample, sample_sq)
        win_rows = k_ww.sum(axis=1, dtype=np.float64)  # K_ww 1
        win_aka = np.einsum("ij,ij->j", plan.a_win, k_ww @ plan.a_win, dtype=np.float64)
        cross_aka = np.zeros(len(win_aka))
        cross_ref_rows = np.empty(n)  # K_rw 1
        cross_win_cols = np.zeros(m)  # K_wr 1
        for start in range(0, n, BLOCK_ROWS):
            rows = slice(start, start + BLOCK_ROWS)
            k_rw = self._kernel(self.reference[rows], self._ref_sq[rows], sample, sample_sq)
            cross_aka += np.einsum("ij,ij->j", plan.a_ref[rows], k_rw @ plan.a_win, dtype=np.float64)
            cross_ref_rows[rows] = k_rw.sum(axis=1, dtype=np.float64)
            cross_win_cols += k_rw.sum(axis=0, dtype=np.float64)
        a_ref64, a_win64 = plan.a_ref.T.astype(np.float64), plan.a_win.T.astype(np.float64)
        aka = plan.ref_aka + 2.0 * cross_aka + win_aka  # a'Ka
        ak1 = plan.ref_a1 + a_ref64 @ cross_ref_rows + a_win64 @ (cross_win_cols + win_rows)  # a'K1
        everything = self._ref_total + 2.0 * cross_ref_rows.sum() + win_rows.sum()  # 1'K1
        # The RBF kernel's diagonal is 1 and a has n ones: the within-group sums leave out n and m.
        xx, xy, yy = aka - n, ak1 - aka, everything - 2.0 * ak1 + aka - m
        values = xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (n * m)
        observed, permuted = float(values[0]), values[1:]
        p_value = float((1 + np.count_nonzero(permuted >= observed)) / (1 + len(permuted)))
        return observed, p_value, float(np.quantile(permuted, 0.95))


def mmd_permutation_test(reference: np.ndarray, sample: np.ndarray, sigma: float, n_permutations: int = 100,
                         seed: int | list[int] | None = 0) -> tuple[float, float, float]:
    """One window's test: (MMD^2, p-value, MMD^2 threshold at the 95th permutation percentile); see MMDTest."""
    return MMDTest(reference, sigma, n_permutations, seed).test(sample)
