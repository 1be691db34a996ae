"""Outlier detectors: is this instance unlike the reference?

Every detector scores instances (higher = more unusual) and flags those above a threshold set at a
percentile of the reference's own scores (`threshold_percentile=95`: about 5 % of reference-like
traffic is flagged, by construction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seismo.detect.base import Detector, InstanceScores, OutlierResult


class _OutlierDetector(Detector):
    def __init__(self, threshold_percentile: float = 95.0, preprocess=None):
        if not 0 < threshold_percentile < 100:
            raise ValueError(f"threshold_percentile must be in (0, 100), got {threshold_percentile}")
        self.threshold_percentile = threshold_percentile
        self.preprocess = preprocess
        self.threshold: float | None = None

    def fit(self, x_ref: Any):
        features = self._reference_features(x_ref)
        self._fit_features(features)
        scores, _ = self._score_features(features)
        self.threshold = float(np.percentile(scores, self.threshold_percentile))
        return self

    def score(self, x: Any) -> InstanceScores:
        if self.threshold is None:
            raise RuntimeError(f"{self.kind} is not fitted: call fit(x_ref) first")
        return InstanceScores(*self._score_features(self._features(x)))

    def predict(self, x: Any) -> OutlierResult:
        scores, feature_scores = self.score(x)
        assert self.threshold is not None  # score() refuses an unfitted detector
        return OutlierResult(scores > self.threshold, scores, self.threshold, feature_scores)

    def _fit_features(self, features: np.ndarray) -> None:
        raise NotImplementedError

    def _score_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError


class MahalanobisOutlier(_OutlierDetector):
    """Squared Mahalanobis distance to the reference mean; feature scores are squared z-scores.

    `update(x)` folds new (trusted) data into the mean and covariance online (Chan et al.'s parallel
    update), so the detector can follow slow, accepted change without a refit; the threshold stays.
    """

    kind = "MahalanobisOutlier"

    def __init__(self, threshold_percentile: float = 95.0, ridge: float = 1e-6, preprocess=None):
        super().__init__(threshold_percentile, preprocess)
        self.ridge = ridge

    def _fit_features(self, features: np.ndarray) -> None:
        self.count = len(features)
        self.mean = features.mean(axis=0)
        centered = features - self.mean
        self.comoment = centered.T @ centered  # sum of outer products; covariance = comoment / (count - 1)
        self._refresh()

    def _refresh(self) -> None:
        covariance = self.comoment / max(self.count - 1, 1)
        covariance = covariance + self.ridge * max(float(np.trace(covariance)) / len(covariance), 1e-12) * np.eye(len(covariance))
        self.precision = np.linalg.inv(covariance)
        self.std = np.sqrt(np.diag(covariance))

    def update(self, x: Any) -> None:
        features = self._features(x)
        n_b = len(features)
        mean_b = features.mean(axis=0)
        centered = features - mean_b
        delta = mean_b - self.mean
        total = self.count + n_b
        self.comoment = self.comoment + centered.T @ centered + np.outer(delta, delta) * self.count * n_b / total
        self.mean = self.mean + delta * n_b / total
        self.count = total
        self._refresh()

    def _score_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centered = features - self.mean
        scores = np.einsum("ij,jk,ik->i", centered, self.precision, centered)
        return scores, (centered / self.std) ** 2

    def _params(self) -> dict[str, Any]:
        return {"threshold_percentile": self.threshold_percentile, "ridge": self.ridge}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "comoment": self.comoment, "count": np.array(self.count), "threshold": np.array(self.threshold)}

    def _restore(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        self.mean, self.comoment = arrays["mean"], arrays["comoment"]
        self.count, self.threshold = int(arrays["count"]), float(arrays["threshold"])
        self._refresh()


class IsolationForestOutlier(_OutlierDetector):
    """scikit-learn's Isolation Forest; the score is the negated `score_samples` (higher = rarer)."""

    kind = "IsolationForestOutlier"

    def __init__(self, threshold_percentile: float = 95.0, n_estimators: int = 100, seed: int = 0, preprocess=None):
        super().__init__(threshold_percentile, preprocess)
        self.n_estimators = n_estimators
        self.seed = seed

    def _fit_features(self, features: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        self.forest = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(features)

    def _score_features(self, features: np.ndarray) -> tuple[np.ndarray, None]:
        return -self.forest.score_samples(features), None

    def _params(self) -> dict[str, Any]:
        return {"threshold_percentile": self.threshold_percentile, "n_estimators": self.n_estimators, "seed": self.seed}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"threshold": np.array(self.threshold)}

    def _save_extra(self, folder: Path) -> None:
        import joblib

        joblib.dump(self.forest, folder / "isolation_forest.joblib")

    def _restore(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        import joblib

        self.threshold = float(arrays["threshold"])
        self.forest = joblib.load(folder / "isolation_forest.joblib")  # a pickle: load only folders you trust


__all__ = ["IsolationForestOutlier", "MahalanobisOutlier"]
