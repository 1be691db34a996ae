"""Outlier detectors: is this instance unlike the reference?

Every detector scores instances (higher = more unusual) and flags those above a threshold: split-
conformal (seismo.detect.calibration), from scores of reference points it was not fitted on
(`calibration_fraction` of the reference held out, or a calibration set passed to `fit`), so that
`threshold_percentile=95` flags about 5 % of unseen reference-like traffic. `calibration` reports the
rate measured on a last held-out part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seismo.detect.base import Detector, InstanceScores, OutlierResult, check_batch
from seismo.detect.calibration import calibrate, in_sample, split_held_out


class _OutlierDetector(Detector):
    def __init__(self, threshold_percentile: float = 95.0, preprocess=None, calibration_fraction: float = 0.3):
        if not 0 < threshold_percentile < 100:
            raise ValueError(f"threshold_percentile must be in (0, 100), got {threshold_percentile}")
        if not 0 <= calibration_fraction < 1:
            raise ValueError(f"calibration_fraction must be in [0, 1), got {calibration_fraction}")
        self.threshold_percentile = threshold_percentile
        self.calibration_fraction = calibration_fraction
        self.preprocess = preprocess
        self.threshold: float | None = None

    def fit(self, x_ref: Any, x_calibration: Any = None):
        """Fit on `x_ref`; the threshold comes from `x_calibration` when given (data the upstream model never
        trained on, for instance), else from `calibration_fraction` of `x_ref` held out of the fit."""
        raw = check_batch(x_ref, None, "reference")
        if x_calibration is not None:
            fit_rows, held_rows, source = np.arange(len(raw)), np.arange(0), "calibration set"
        else:
            fit_rows, held_rows = split_held_out(len(raw), self.calibration_fraction, getattr(self, "seed", 0))
            source = "held out of the reference"
        features = self._reference_features(raw[fit_rows])
        self._fit_features(features)
        held = (self._features(x_calibration, "calibration data") if x_calibration is not None
                else self._features(raw[held_rows], "reference") if len(held_rows) else None)
        if held is None or len(held) < 2:
            reason = ("calibration_fraction 0" if self.calibration_fraction == 0
                      else f"reference of {len(raw)} rows: too few to hold any out")
            self.threshold, self.calibration = in_sample(self._score_features(features)[0], self.threshold_percentile, reason)
        else:
            self.threshold, self.calibration = calibrate(lambda rows: self._score_features(rows)[0], held, self.threshold_percentile,
                                                         source, getattr(self, "seed", 0))
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

    def __init__(self, threshold_percentile: float = 95.0, ridge: float = 1e-6, preprocess=None, calibration_fraction: float = 0.3):
        super().__init__(threshold_percentile, preprocess, calibration_fraction)
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
        return {"threshold_percentile": self.threshold_percentile, "ridge": self.ridge, "calibration_fraction": self.calibration_fraction}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "comoment": self.comoment, "count": np.array(self.count), "threshold": np.array(self.threshold)}

    def _restore(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        self.mean, self.comoment = arrays["mean"], arrays["comoment"]
        self.count, self.threshold = int(arrays["count"]), float(arrays["threshold"])
        self._refresh()


class IsolationForestOutlier(_OutlierDetector):
    """scikit-learn's Isolation Forest; the score is the negated `score_samples` (higher = rarer)."""

    kind = "IsolationForestOutlier"

    def __init__(self, threshold_percentile: float = 95.0, n_estimators: int = 100, seed: int = 0, preprocess=None,
                 calibration_fraction: float = 0.3):
        super().__init__(threshold_percentile, preprocess, calibration_fraction)
        self.n_estimators = n_estimators
        self.seed = seed

    def _fit_features(self, features: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        self.forest = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(features)

    def _score_features(self, features: np.ndarray) -> tuple[np.ndarray, None]:
        return -self.forest.score_samples(features), None

    def _params(self) -> dict[str, Any]:
        return {"threshold_percentile": self.threshold_percentile, "n_estimators": self.n_estimators, "seed": self.seed,
                "calibration_fraction": self.calibration_fraction}

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
