"""Run a detector saved by alibi-detect's `save_detector` behind Seismo's interface.

For users migrating from Seldon's alibi-detect servers: point `seismo serve drift|outlier
--detector-path` at the folder `save_detector` wrote and the services use it as they use Seismo's own detectors (drift detectors are saved as `config.toml`, outlier
detectors in alibi-detect's legacy `meta.dill` format). Needs alibi-detect installed (`pip install 'seismo[alibi]'`).
alibi-detect releases from 0.11.5 on are under the Business Source License: check that your use is
allowed. Seismo's own detectors never need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seismo.detect.base import DetectorConfigError, DriftResult, OutlierResult, check_batch


def is_alibi_folder(path: Path) -> bool:
    """alibi-detect's formats: `config.toml` (drift detectors, 0.10 on) or legacy `meta.dill` (outlier
    detectors; a pickle: load only folders you trust)."""
    return not (path / "config.json").exists() and ((path / "config.toml").exists() or (path / "meta.dill").exists())


class AlibiDetector:
    """Wraps the loaded alibi-detect detector; `predict` returns Seismo's frozen results."""

    kind = "AlibiDetector"

    def __init__(self, path: str | Path):
        try:
            from alibi_detect.saving import load_detector as alibi_load
        except ImportError:
            raise DetectorConfigError(f"{path} was saved by alibi-detect, which is not installed: pip install 'seismo[alibi]'") from None
        self.path = Path(path)
        self.detector = alibi_load(str(self.path))
        self.name = type(self.detector).__name__
        x_ref = getattr(self.detector, "x_ref", None)
        if x_ref is None and hasattr(self.detector, "_detector"):
            x_ref = getattr(self.detector._detector, "x_ref", None)
        # Preprocessed references do not tell the raw input shape: then the services do not check it.
        self.instance_shape = tuple(np.asarray(x_ref).shape[1:]) if x_ref is not None and getattr(self.detector, "preprocess_fn", None) is None else None
        self.preprocess = None

    @property
    def threshold(self) -> float:
        return float(getattr(self.detector, "threshold", np.nan))

    def predict(self, x: Any) -> DriftResult | OutlierResult:
        batch = check_batch(x, self.instance_shape).astype(np.float32)
        if self.name.endswith("Drift"):
            data = self.detector.predict(batch)["data"]
            p_vals = np.atleast_1d(np.asarray(data["p_val"], dtype=np.float64))
            distances = np.atleast_1d(np.asarray(data["distance"], dtype=np.float64))
            per_feature = p_vals.size > 1
            threshold = np.atleast_1d(np.asarray(data["threshold"], dtype=np.float64))
            return DriftResult(bool(data["is_drift"]), float(p_vals.min()), float(distances.max()), float(threshold.min()),
                               p_vals if per_feature else None, distances if per_feature else None)
        data = self.detector.predict(batch, return_instance_score=True)["data"]
        feature = data.get("feature_score")
        return OutlierResult(np.asarray(data["is_outlier"], dtype=bool), np.asarray(data["instance_score"], dtype=np.float64),
                             self.threshold, None if feature is None else np.asarray(feature).reshape(len(batch), -1))

    def save(self, path: str | Path) -> None:
        raise NotImplementedError("save alibi-detect detectors with alibi-detect's save_detector")
