"""Drift detectors: is this window drawn from the reference's distribution?

Every detector: `fit(x_ref)`, `score(x)` -> (p-values, distances), `predict(x)` -> DriftResult.
`threshold` in a result is the p-value a test had to fall below (after correction for per-feature
tests), except for PredictionDrift, which decides on its distance. A significant test makes drift only
when the effect size reaches `effect_floor` too (seismo.detect.effect: large windows make any shift
significant); the result carries both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seismo.detect.base import Detector, DetectorInputError, DriftResult, FeatureScores, TestScore
from seismo.detect.effect import DEFAULT_EFFECT_FLOOR, check_floor, total_variation
from seismo.stats import (
    MMDTest,
    SortedReference,
    chi2_homogeneity,
    contingency_table,
    correct,
    histogram,
    jensen_shannon,
    ks_2samp,
    median_heuristic_sigma,
    psi,
)
from seismo.stats.classifier import domain_classifier_test


class _DriftDetector(Detector):
    def __init__(self, p_val: float = 0.05, preprocess=None, effect_floor: float = DEFAULT_EFFECT_FLOOR):
        if not 0 < p_val < 1:
            raise ValueError(f"p_val must be in (0, 1), got {p_val}")
        self.p_val = p_val
        self.effect_floor = check_floor(effect_floor)
        self.preprocess = preprocess
        self.x_ref: np.ndarray | None = None

    def _verdict(self, p_value: float, effect: float) -> bool:
        return bool(p_value < self.p_val and effect >= self.effect_floor)

    def fit(self, x_ref: Any):
        self.x_ref = self._reference_features(x_ref)
        self._fitted()
        return self

    def _fitted(self) -> None:
        """Precompute what every test reuses."""

    def _require_fit(self) -> np.ndarray:
        """The reference features, or RuntimeError when the detector is not fitted."""
        if self.x_ref is None:
            raise RuntimeError(f"{self.kind} is not fitted: call fit(x_ref) first")
        return self.x_ref

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"x_ref": self._require_fit()}

    def _restore(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        self.x_ref = arrays["x_ref"]
        self._fitted()


class _PerFeatureDrift(_DriftDetector):
    """One test per feature, one decision by a multiple-testing correction across them."""

    def __init__(self, p_val: float = 0.05, correction: str = "bonferroni", preprocess=None, effect_floor: float = DEFAULT_EFFECT_FLOOR):
        super().__init__(p_val, preprocess, effect_floor)
        correct(np.array([1.0]), p_val, correction)  # validates the name early
        self.correction = correction

    def score(self, x: Any) -> FeatureScores:
        p_values, statistics, _ = self._tests(x)
        return FeatureScores(p_values, statistics)

    def _tests(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per feature: p-values, statistics and effect sizes (see seismo.detect.effect)."""
        raise NotImplementedError

    def predict(self, x: Any) -> DriftResult:
        p_values, statistics, effects = self._tests(x)
        significant, threshold = correct(p_values, self.p_val, self.correction)
        # A feature drifts when its corrected test is significant and its effect reaches the floor.
        is_drift = bool(significant and ((p_values < threshold) & (effects >= self.effect_floor)).any())
        return DriftResult(is_drift, float(p_values.min()), float(statistics.max()), threshold, p_values, statistics,
                           float(effects.max()), self.effect_floor)

    def _params(self) -> dict[str, Any]:
        return {"p_val": self.p_val, "correction": self.correction, "effect_floor": self.effect_floor}


class KSDrift(_PerFeatureDrift):
    """Kolmogorov-Smirnov per feature, Bonferroni or Benjamini-Hochberg across features."""

    kind = "KSDrift"

    def _fitted(self) -> None:
        self._sorted = SortedReference(self._require_fit())

    def _tests(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._require_fit()
        statistics, p_values = ks_2samp(self._sorted, self._features(x, "window"))
        return p_values, statistics, statistics  # the KS statistic is itself the effect: the largest gap between the CDFs


class ChiSquareDrift(_PerFeatureDrift):
    """Chi-squared homogeneity per categorical feature, corrected across features.

    Categories are the reference's values per feature; a window value the reference never had gets
    its own column (a category appearing from nowhere is drift, not noise to drop).
    """

    kind = "ChiSquareDrift"

    def _tests(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_ref = self._require_fit()
        window = self._features(x, "window")
        stats, p_values, effects = [], [], []
        for j in range(window.shape[1]):
            categories = np.union1d(x_ref[:, j], window[:, j])
            table = contingency_table(x_ref[:, j], window[:, j], categories)
            statistic, p = chi2_homogeneity(table)
            stats.append(statistic)
            p_values.append(p)
            effects.append(total_variation(table[0], table[1]))
        return np.array(p_values), np.array(stats), np.array(effects)


class MMDDrift(_DriftDetector):
    """Multivariate: unbiased MMD^2 with an RBF kernel, p-value by permutation."""

    kind = "MMDDrift"

    def __init__(self, p_val: float = 0.05, n_permutations: int = 100, sigma: float | None = None, seed: int = 0, preprocess=None,
                 effect_floor: float = DEFAULT_EFFECT_FLOOR):
        super().__init__(p_val, preprocess, effect_floor)
        self.n_permutations = n_permutations
        self.sigma = sigma
        self.seed = seed
        self._test: MMDTest | None = None

    def _fitted(self) -> None:
        if self.sigma is None:  # median heuristic on the reference, as alibi-detect configures it
            self.sigma = median_heuristic_sigma(self._require_fit())
        # Permutations drawn once (seeded) per window size: the reference's share of every window's test
        # is computed once (seismo.stats.mmd).
        self._test = MMDTest(self._require_fit(), self.sigma, self.n_permutations, self.seed)

    def score(self, x: Any) -> TestScore:
        self._require_fit()
        window = self._features(x, "window")
        assert self._test is not None  # set by _fitted
        mmd2, p_value, _ = self._test.test(window)
        return TestScore(p_value, mmd2)

    def predict(self, x: Any) -> DriftResult:
        p_value, mmd2 = self.score(x)
        effect = float(np.sqrt(max(mmd2, 0.0)))
        return DriftResult(self._verdict(p_value, effect), p_value, mmd2, self.p_val, effect_size=effect, effect_floor=self.effect_floor)

    def _params(self) -> dict[str, Any]:
        return {"p_val": self.p_val, "n_permutations": self.n_permutations, "sigma": self.sigma, "seed": self.seed,
                "effect_floor": self.effect_floor}


class ClassifierDrift(_DriftDetector):
    """Domain classifier: held-out AUC of telling reference from window, Mann-Whitney p-value."""

    kind = "ClassifierDrift"

    def __init__(self, p_val: float = 0.05, n_folds: int = 5, seed: int = 0, preprocess=None, effect_floor: float = DEFAULT_EFFECT_FLOOR):
        super().__init__(p_val, preprocess, effect_floor)
        self.n_folds = n_folds
        self.seed = seed

    def score(self, x: Any) -> TestScore:
        self._require_fit()
        auc, p_value = domain_classifier_test(self._require_fit(), self._features(x, "window"), self.n_folds, self.seed)
        return TestScore(p_value, auc)

    def predict(self, x: Any) -> DriftResult:
        p_value, auc = self.score(x)
        effect = max(0.0, 2 * auc - 1)
        return DriftResult(self._verdict(p_value, effect), p_value, auc, self.p_val, effect_size=effect, effect_floor=self.effect_floor)

    def _params(self) -> dict[str, Any]:
        return {"p_val": self.p_val, "n_folds": self.n_folds, "seed": self.seed, "effect_floor": self.effect_floor}


class PredictionDrift(_DriftDetector):
    """The model's own outputs against the reference's: usable when no labels exist.

    Input: class probabilities [N, C] (or predicted labels [N]). The distributions compared are the
    predicted classes' frequencies (argmax), smoothed by `epsilon`. Drift when the distance (PSI or
    Jensen-Shannon) exceeds `threshold` (defaults: PSI 0.2, the industry rule of thumb; JS 0.1); the
    chi-squared p-value of the class counts is reported beside it.
    """

    kind = "PredictionDrift"
    _DEFAULT_THRESHOLDS = {"psi": 0.2, "js": 0.1}

    def __init__(self, metric: str = "psi", threshold: float | None = None, p_val: float = 0.05, epsilon: float = 1e-4, preprocess=None):
        super().__init__(p_val, preprocess, effect_floor=0.0)  # its distance threshold is already a floor on the effect
        if metric not in self._DEFAULT_THRESHOLDS:
            raise ValueError(f"metric must be psi or js, not {metric!r}")
        if not epsilon > 0:  # a class never predicted would make PSI infinite and the verdict meaningless
            raise ValueError(f"epsilon must be above 0 (it smooths classes a window never predicted), not {epsilon!r}")
        self.metric = metric
        self.threshold = self._DEFAULT_THRESHOLDS[metric] if threshold is None else threshold
        self.epsilon = epsilon

    def _labels(self, features: np.ndarray) -> np.ndarray:
        return features.argmax(axis=1) if features.shape[1] > 1 else features[:, 0].round()

    def _fitted(self) -> None:
        x_ref = self._require_fit()
        self._ref_labels = self._labels(x_ref)
        self._classes = np.arange(x_ref.shape[1]) if x_ref.shape[1] > 1 else np.unique(self._ref_labels)

    def score(self, x: Any) -> TestScore:
        self._require_fit()
        labels = self._labels(self._features(x, "predictions"))
        classes = np.union1d(self._classes, labels)
        edges = classes[:-1] + 0.5  # one bin per class
        p, q = histogram(self._ref_labels, edges, self.epsilon), histogram(labels, edges, self.epsilon)
        distance = psi(p, q) if self.metric == "psi" else jensen_shannon(p, q)
        _, p_value = chi2_homogeneity(contingency_table(self._ref_labels, labels, classes))
        return TestScore(p_value, distance)

    def predict(self, x: Any) -> DriftResult:
        p_value, distance = self.score(x)
        return DriftResult(distance > self.threshold, p_value, distance, self.threshold, effect_size=distance,
                           effect_floor=self.threshold)

    def _params(self) -> dict[str, Any]:
        return {"metric": self.metric, "threshold": self.threshold, "p_val": self.p_val, "epsilon": self.epsilon}


__all__ = ["ChiSquareDrift", "ClassifierDrift", "DetectorInputError", "KSDrift", "MMDDrift", "PredictionDrift"]
