"""What every detector shares: frozen typed results, errors, input checks, the base class.

Saving and loading (and the registry of kinds) are in `seismo.detect.saving`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np


class DetectorInputError(ValueError):
    """The data cannot be scored: wrong shape against the reference, NaN, not numeric."""


class DetectorConfigError(ValueError):
    """A saved detector that cannot be loaded, with the reason."""


def _array_or_none(a) -> list | None:
    return None if a is None else np.asarray(a).tolist()


class FeatureScores(NamedTuple):
    """`score()` of a per-feature drift test (KS, chi-squared): one p-value and statistic per feature."""

    p_values: np.ndarray
    statistics: np.ndarray


class TestScore(NamedTuple):
    """`score()` of a one-test drift detector (MMD, classifier, prediction drift): the p-value and the
    statistic the decision is made on (MMD², AUC, PSI or Jensen-Shannon distance)."""

    p_value: float
    statistic: float


class InstanceScores(NamedTuple):
    """`score()` of an outlier detector: a score per instance, and per feature where the detector has them."""

    instance: np.ndarray
    feature: np.ndarray | None


@dataclass(frozen=True)
class DriftResult:
    is_drift: bool
    p_val: float
    distance: float
    threshold: float
    feature_p_vals: np.ndarray | None = None
    feature_distances: np.ndarray | None = None
    effect_size: float | None = None
    """How large the shift is, whatever the window's size (seismo.detect.effect); None where a detector has none."""
    effect_floor: float = 0.0
    """The effect size below which a significant test does not make drift (0: the test alone decides)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "is_drift": self.is_drift,
            "p_val": self.p_val,
            "distance": self.distance,
            "threshold": self.threshold,
            "feature_p_vals": _array_or_none(self.feature_p_vals),
            "feature_distances": _array_or_none(self.feature_distances),
            "effect_size": self.effect_size,
            "effect_floor": self.effect_floor,
        }


@dataclass(frozen=True)
class OutlierResult:
    is_outlier: np.ndarray
    instance_score: np.ndarray
    threshold: float
    feature_score: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "is_outlier": self.is_outlier.astype(int).tolist(),
            "instance_score": self.instance_score.tolist(),
            "threshold": self.threshold,
            "feature_score": _array_or_none(self.feature_score),
        }


def check_batch(x: Any, expected_shape: tuple[int, ...] | None, what: str = "data") -> np.ndarray:
    """x as a float array [N, ...] matching the reference's instance shape, or DetectorInputError."""
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DetectorInputError(f"{what} is not numeric: {exc}") from None
    if array.ndim == 0 or len(array) == 0:
        raise DetectorInputError(f"{what} has no instances")
    if expected_shape is not None and tuple(array.shape[1:]) != tuple(expected_shape):
        raise DetectorInputError(f"{what} instances have shape {list(array.shape[1:])}; the reference's are {list(expected_shape)}")
    if not np.isfinite(array).all():
        raise DetectorInputError(f"{what} contains NaN or infinity")
    return array


class Detector:
    """Base: subclasses set `kind`, implement fit/score/predict, `_params` and `_arrays`/`_restore`."""

    kind: ClassVar[str]
    instance_shape: tuple[int, ...] | None = None
    # Not `version`: EmbeddingDrift's `version` is its embedding space's.
    detector_version: str | None = None  # set when saved or loaded (seismo.detect.saving.detector_version)
    provenance: dict[str, Any] | None = None  # set when fitted from the store
    calibration: dict[str, Any] | None = None  # how an outlier threshold was set and the rate it measured (seismo.detect.calibration)
    preprocess: Any = None

    def _features(self, x: Any, what: str = "data") -> np.ndarray:
        """Checked against the reference's instance shape, preprocessed, flattened to [N, features]."""
        array = check_batch(x, self.instance_shape, what)
        if self.preprocess is not None:
            array = self.preprocess.transform(array)
        return array.reshape(len(array), -1)

    def _reference_features(self, x_ref: Any) -> np.ndarray:
        """Fit-time counterpart of `_features`: learns the instance shape and fits the preprocessing."""
        array = check_batch(x_ref, None, "reference")
        self.instance_shape = tuple(array.shape[1:])
        if self.preprocess is not None:
            self.preprocess.fit(array)
        return self._features(array, "reference")

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        raise NotImplementedError

    def _save_extra(self, folder: Path) -> None:
        """Files beyond config and arrays (a Keras model, a fitted forest)."""
