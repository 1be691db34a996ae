"""Seismo's detectors: fit(x_ref), score(x), predict(x) -> a frozen result; save(path) / load_detector(path).

Importing this package does not import TensorFlow: `VAEOutlier` (and the Keras preprocessing steps)
load it on first use.
"""

from __future__ import annotations

from seismo.detect.base import DetectorConfigError, DetectorInputError, DriftResult, OutlierResult, load_detector
from seismo.detect.drift import ChiSquareDrift, ClassifierDrift, KSDrift, MMDDrift, PredictionDrift
from seismo.detect.outlier import IsolationForestOutlier, MahalanobisOutlier
from seismo.detect.preprocess import PCA, ModelLayer, UntrainedAutoencoder


class _LazyDetectors(dict):
    """The registry `load_detector` dispatches on; VAEOutlier is imported only when asked for."""

    def __missing__(self, key):
        if key == "VAEOutlier":
            from seismo.detect.vae import VAEOutlier

            self[key] = VAEOutlier
            return VAEOutlier
        raise KeyError(key)

    def __contains__(self, key):
        return key == "VAEOutlier" or dict.__contains__(self, key)

    def __iter__(self):
        return iter([*dict.keys(self), "VAEOutlier"])


DETECTORS = _LazyDetectors(
    {cls.kind: cls for cls in (KSDrift, ChiSquareDrift, MMDDrift, ClassifierDrift, PredictionDrift, MahalanobisOutlier, IsolationForestOutlier)}
)


def __getattr__(name: str):
    if name == "VAEOutlier":
        return DETECTORS["VAEOutlier"]
    raise AttributeError(f"module 'seismo.detect' has no attribute {name!r}")


__all__ = [
    "DETECTORS", "PCA", "ChiSquareDrift", "ClassifierDrift", "DetectorConfigError", "DetectorInputError", "DriftResult",
    "IsolationForestOutlier", "KSDrift", "MMDDrift", "MahalanobisOutlier", "ModelLayer", "OutlierResult",
    "PredictionDrift", "UntrainedAutoencoder", "VAEOutlier", "load_detector",
]
