"""Seismo's detectors: fit(x_ref), score(x), predict(x) -> a frozen result; save_detector / load_detector.

Importing this package does not import TensorFlow: `VAEOutlier` (and the Keras preprocessing steps)
load it on first use.
"""

from __future__ import annotations

from seismo.detect.adversarial import ClassMahalanobisAdversarial
from seismo.detect.base import DetectorConfigError, DetectorInputError, DriftResult, OutlierResult
from seismo.detect.drift import ChiSquareDrift, ClassifierDrift, KSDrift, MMDDrift, PredictionDrift
from seismo.detect.embedding import EmbeddingDrift, EmbeddingDriftResult
from seismo.detect.outlier import IsolationForestOutlier, MahalanobisOutlier
from seismo.detect.preprocess import PCA, ModelLayer, UntrainedAutoencoder
from seismo.detect.saving import DETECTORS, load_detector, save_detector


def __getattr__(name: str):
    if name == "VAEOutlier":
        return DETECTORS["VAEOutlier"]
    raise AttributeError(f"module 'seismo.detect' has no attribute {name!r}")


__all__ = [
    "DETECTORS", "PCA", "ChiSquareDrift", "ClassMahalanobisAdversarial", "ClassifierDrift", "DetectorConfigError", "DetectorInputError", "DriftResult",
    "EmbeddingDrift", "EmbeddingDriftResult",
    "IsolationForestOutlier", "KSDrift", "MMDDrift", "MahalanobisOutlier", "ModelLayer", "OutlierResult",
    "PredictionDrift", "UntrainedAutoencoder", "VAEOutlier", "load_detector", "save_detector",
]
