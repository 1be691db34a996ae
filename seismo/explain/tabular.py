"""Tabular anchors: features discretized by reference quantiles, perturbations drawn from the reference.

A predicate is "feature j lies in the instance's bin" (numeric features: bins between the reference's
quartiles by default) or "feature j equals the instance's value" (categorical features). Sampling
under an anchor draws reference rows on which the anchor holds (see `TabularSampler.draw`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from seismo.batching import split_rows
from seismo.explain.anchors import Anchor


def _format(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class Discretizer:
    edges: list[np.ndarray | None]  # per feature: inner bin edges, or None for categorical

    @classmethod
    def fit(cls, reference: np.ndarray, categorical: set[int], n_bins: int = 4) -> Discretizer:
        edges: list[np.ndarray | None] = []
        for j in range(reference.shape[1]):
            if j in categorical:
                edges.append(None)
            else:
                qs = np.quantile(reference[:, j], np.linspace(0, 1, n_bins + 1)[1:-1])
                edges.append(np.unique(qs))
        return cls(edges)

    def bins(self, rows: np.ndarray) -> np.ndarray:
        """Bin index per value (categorical features keep their value)."""
        out = np.empty(rows.shape, dtype=np.float64)
        for j, e in enumerate(self.edges):
            out[:, j] = rows[:, j] if e is None else np.searchsorted(e, rows[:, j], side="left")
        return out

    def describe(self, j: int, value: float, name: str) -> str:
        """The predicate "feature j is in `value`'s bin" as a person reads it."""
        e = self.edges[j]
        if e is None:
            return f"{name} = {_format(value)}"
        b = int(np.searchsorted(e, value, side="left"))
        if len(e) == 0:
            return f"{name} is any value"
        if b == 0:
            return f"{name} <= {_format(e[0])}"
        if b == len(e):
            return f"{name} > {_format(e[-1])}"
        return f"{_format(e[b - 1])} < {name} <= {_format(e[b])}"


class TabularSampler:
    def __init__(self, instance: np.ndarray, reference: np.ndarray, categorical: set[int], predict_labels: Callable[[np.ndarray], np.ndarray],
                 instance_label, rng: np.random.Generator, n_bins: int = 4, coverage_samples: int = 1000, min_joint: int = 10):
        self.instance = np.asarray(instance, dtype=np.float64)
        self.reference = np.asarray(reference, dtype=np.float64)
        self.n_features = self.reference.shape[1]
        self.discretizer = Discretizer.fit(self.reference, categorical, n_bins)
        self.predict_labels = predict_labels
        self.instance_label = instance_label
        self.rng = rng
        self.min_joint = min_joint
        self.reference_bins = self.discretizer.bins(self.reference)
        self.instance_bins = self.discretizer.bins(self.instance[None, :])[0]
        # Per feature: the reference values that share the instance's bin (its own value if none do).
        self.in_bin = []
        for j in range(self.n_features):
            values = self.reference[self.reference_bins[:, j] == self.instance_bins[j], j]
            self.in_bin.append(values if len(values) else np.array([self.instance[j]]))
        pick = rng.choice(len(self.reference), min(coverage_samples, len(self.reference)), replace=False)
        self.coverage_bins = self.reference_bins[pick]

    def draw(self, anchor: Anchor, n: int) -> np.ndarray:
        """n rows from the reference conditioned on the anchor.

        Whole reference rows on which every predicate holds, as long as at least `min_joint` exist:
        that keeps the correlations between features (as alibi's sampler does). Past that, random
        rows with each anchored feature replaced by a reference value from the instance's bin.
        """
        cols = list(anchor)
        matching = np.flatnonzero(np.all(self.reference_bins[:, cols] == self.instance_bins[cols], axis=1))
        if len(matching) >= self.min_joint:
            return self.reference[matching[self.rng.integers(0, len(matching), n)]].copy()
        # Too few rows to stand for the conditional distribution: they would all be the instance's
        # nearest neighbours and make any anchor look precise. Replace the anchored features instead.
        rows = self.reference[self.rng.integers(0, len(self.reference), n)].copy()
        for j in anchor:
            rows[:, j] = self.in_bin[j][self.rng.integers(0, len(self.in_bin[j]), n)]
        return rows

    def sample(self, requests: list[tuple[Anchor, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        parts = [self.draw(anchor, n) for anchor, n in requests]
        labels = split_rows(self.predict_labels(np.concatenate(parts)), parts)  # one model call for all requests
        return [(part, part_labels == self.instance_label) for part, part_labels in zip(parts, labels)]

    def coverage(self, anchor: Anchor) -> float:
        if not anchor:
            return 1.0
        cols = list(anchor)
        return float(np.mean(np.all(self.coverage_bins[:, cols] == self.instance_bins[cols], axis=1)))

    def predicates(self, anchor: Anchor, names: list[str]) -> list[str]:
        return [self.discretizer.describe(j, self.instance[j], names[j]) for j in anchor]
