"""Anchors (Ribeiro, Singh, Guestrin, AAAI 2018): the smallest set of predicates that "anchors" a
prediction, i.e. keeps it unchanged with high probability whatever the rest of the input does.

Model-agnostic core. A `Sampler` draws perturbed inputs on which every predicate of a candidate anchor
holds (tabular: features kept in the instance's bin; images: superpixels kept) and says whether the
model's prediction matches the instance's. Precision of an anchor = P(same prediction | anchor holds);
coverage = the share of the perturbation distribution on which the anchor holds.

Search: beam search over anchor sizes; at each size the KL-LUCB bandit picks the `beam_size` most
precise candidates with as few samples as it can; a candidate is valid once its precision's lower
confidence bound is within tau of the threshold; among valid ones the widest (highest coverage) wins. Budgets
(model calls, seconds) are enforced by the sampler raising BudgetExhausted; the best anchor so far is
then returned and marked as such.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Anchor = tuple[int, ...]


class BudgetExhausted(Exception):
    pass


@dataclass
class Budget:
    """Model calls (instances predicted) and wall-clock seconds one explanation may use."""

    max_calls: int
    max_seconds: float
    calls: int = 0
    requests: int = 0
    started: float = field(default_factory=time.monotonic)

    def charge(self, n: int) -> None:
        if self.calls + n > self.max_calls:
            raise BudgetExhausted(f"model call budget of {self.max_calls} reached")
        if time.monotonic() - self.started > self.max_seconds:
            raise BudgetExhausted(f"time limit of {self.max_seconds:g}s reached")
        self.calls += n
        self.requests += 1

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


class Sampler(Protocol):
    n_features: int

    def sample(self, requests: list[tuple[Anchor, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each (anchor, n): n perturbed inputs where the anchor holds, and whether each keeps
        the instance's prediction; all requests in one model call."""

    def coverage(self, anchor: Anchor) -> float: ...


# -- KL confidence bounds for a Bernoulli mean ---------------------------------------------------


def _kl_bernoulli(p: float, q: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    q = min(max(q, 1e-7), 1 - 1e-7)
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def kl_upper(p: float, level: float) -> float:
    """Largest q >= p with KL(p || q) <= level (bisection)."""
    lo, hi = p, 1.0
    for _ in range(17):
        mid = (lo + hi) / 2
        if _kl_bernoulli(p, mid) > level:
            hi = mid
        else:
            lo = mid
    return hi


def kl_lower(p: float, level: float) -> float:
    """Smallest q <= p with KL(p || q) <= level (bisection)."""
    lo, hi = 0.0, p
    for _ in range(17):
        mid = (lo + hi) / 2
        if _kl_bernoulli(p, mid) > level:
            lo = mid
        else:
            hi = mid
    return lo


def _beta(n_arms: int, t: int, delta: float) -> float:
    # Exploration rate of KL-LUCB (Kaufmann & Kalyanakrishnan 2013), the constants Anchors uses.
    temp = math.log(405.5 * n_arms * t**1.1 / delta)
    return temp + math.log(temp)


# -- search ---------------------------------------------------------------------------------------


@dataclass
class ArmStats:
    n: int = 0
    positives: int = 0
    covered_true: list = field(default_factory=list)
    covered_false: list = field(default_factory=list)

    @property
    def mean(self) -> float:
        return self.positives / self.n if self.n else 0.0


@dataclass(frozen=True)
class AnchorSearchResult:
    anchor: Anchor
    precision: float
    coverage: float
    valid: bool  # precision's lower bound cleared the threshold
    budget_exhausted: bool
    examples_true: list
    examples_false: list
    reason: str | None = None


class AnchorSearch:
    def __init__(self, sampler: Sampler, threshold: float = 0.95, delta: float = 0.1, epsilon: float = 0.1, tau: float = 0.15,
                 beam_size: int = 2, batch_size: int = 100, max_anchor_size: int | None = None, n_examples: int = 5):
        # delta: confidence of the bounds; epsilon: how close KL-LUCB must separate the best arms;
        # tau: how far below the threshold a precision's lower bound may still be (the defaults of
        # the Anchors paper's implementation and alibi).
        self.sampler = sampler
        self.threshold, self.delta, self.epsilon, self.tau = threshold, delta, epsilon, tau
        self.beam_size, self.batch_size = beam_size, batch_size
        self.max_anchor_size = max_anchor_size or sampler.n_features
        self.n_examples = n_examples
        self.stats: dict[Anchor, ArmStats] = {}
        self._coverage: dict[Anchor, float] = {}

    def coverage(self, anchor: Anchor) -> float:
        if anchor not in self._coverage:
            self._coverage[anchor] = self.sampler.coverage(anchor)
        return self._coverage[anchor]

    def _draw(self, anchors: list[Anchor], n: int) -> None:
        results = self.sampler.sample([(a, n) for a in anchors])
        for anchor, (samples, matches) in zip(anchors, results):
            stats = self.stats.setdefault(anchor, ArmStats())
            stats.n += len(matches)
            stats.positives += int(matches.sum())
            for sample, match in zip(samples, matches):
                bucket = stats.covered_true if match else stats.covered_false
                if len(bucket) < self.n_examples:
                    bucket.append(sample)

    def _bounds(self, anchor: Anchor, t: int, n_arms: int) -> tuple[float, float]:
        stats = self.stats[anchor]
        level = _beta(n_arms, t, self.delta) / stats.n
        return kl_lower(stats.mean, level), kl_upper(stats.mean, level)

    def kl_lucb(self, anchors: list[Anchor], top_n: int) -> list[Anchor]:
        """The `top_n` most precise anchors, sampled until the bandit can tell them apart (within epsilon)."""
        missing = [a for a in anchors if self.stats.get(a, ArmStats()).n == 0]
        if missing:
            self._draw(missing, self.batch_size)
        if len(anchors) <= top_n:
            return anchors
        t = 1
        while True:
            means = np.array([self.stats[a].mean for a in anchors])
            order = np.argsort(-means, kind="stable")
            top, rest = order[:top_n], order[top_n:]
            bounds = [self._bounds(a, t, len(anchors)) for a in anchors]
            weakest_top = min(top, key=lambda i: bounds[i][0])
            strongest_rest = max(rest, key=lambda i: bounds[i][1])
            if bounds[strongest_rest][1] - bounds[weakest_top][0] <= self.epsilon:
                return [anchors[i] for i in top]
            self._draw([anchors[weakest_top], anchors[strongest_rest]], self.batch_size)
            t += 1

    def _settle(self, anchor: Anchor, t: int) -> tuple[bool, float, float]:
        """Sample an anchor until its precision is clearly above or below the threshold."""
        while True:
            lower, upper = self._bounds(anchor, t, 1)
            mean = self.stats[anchor].mean
            if mean >= self.threshold and lower < self.threshold - self.tau:
                self._draw([anchor], self.batch_size)
            elif mean < self.threshold and upper >= self.threshold + self.tau:
                self._draw([anchor], self.batch_size)
            else:
                return mean >= self.threshold and lower >= self.threshold - self.tau, mean, lower
            t += 1

    def run(self) -> AnchorSearchResult:
        best_valid: Anchor | None = None
        best_coverage = -1.0
        exhausted, reason = False, None
        try:
            self._draw([()], self.batch_size)
            valid, _, _ = self._settle((), 1)
            if valid:
                return self._result((), True, False)
            beam: list[Anchor] = [()]
            for _size in range(1, self.max_anchor_size + 1):
                candidates = sorted({tuple(sorted(a + (f,))) for a in beam for f in range(self.sampler.n_features) if f not in a})
                # A bigger anchor never covers more: skip any that cannot beat the best found.
                candidates = [c for c in candidates if self.coverage(c) > best_coverage]
                if not candidates:
                    break
                beam = self.kl_lucb(candidates, min(self.beam_size, len(candidates)))
                for anchor in beam:
                    valid, _, _ = self._settle(anchor, 1)
                    if valid and self.coverage(anchor) > best_coverage:
                        best_valid, best_coverage = anchor, self.coverage(anchor)
                if best_valid is not None:
                    break
        except BudgetExhausted as exc:
            exhausted, reason = True, str(exc)
        if best_valid is not None:
            return self._result(best_valid, True, exhausted, reason)
        # No anchor reached the threshold: the most precise one seen, preferring larger samples.
        seen = [a for a, s in self.stats.items() if s.n > 0]
        fallback = max(seen, key=lambda a: (self.stats[a].mean, self.stats[a].n)) if seen else ()
        return self._result(fallback, False, exhausted, reason or "no anchor reached the precision threshold")

    def _result(self, anchor: Anchor, valid: bool, exhausted: bool, reason: str | None = None) -> AnchorSearchResult:
        stats = self.stats.get(anchor, ArmStats())
        # Coverage never calls the model (reference bins, or random superpixel masks): no budget to run out.
        return AnchorSearchResult(anchor, stats.mean, self.coverage(anchor), valid, exhausted, stats.covered_true, stats.covered_false, reason)
