"""What every detector shares: frozen typed results, input checks, and save/load.

A saved detector is a folder: `config.json` (detector kind, format version, parameters, the
preprocessing step) and `arrays.npz` (what `fit` learned); some detectors add a model file. Loading
refuses unknown kinds, versions and fields: a config written by a newer Seismo fails loudly instead
of being half-read.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

FORMAT_VERSION = 1
_TOP_LEVEL_FIELDS = {"detector", "format_version", "seismo_version", "params", "preprocess"}


class DetectorInputError(ValueError):
    """The data cannot be scored: wrong shape against the reference, NaN, not numeric."""


class DetectorConfigError(ValueError):
    """A saved detector that cannot be loaded, with the reason."""


def _array_or_none(a) -> list | None:
    return None if a is None else np.asarray(a).tolist()


@dataclass(frozen=True)
class DriftResult:
    is_drift: bool
    p_val: float
    distance: float
    threshold: float
    feature_p_vals: np.ndarray | None = None
    feature_distances: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "is_drift": self.is_drift,
            "p_val": self.p_val,
            "distance": self.distance,
            "threshold": self.threshold,
            "feature_p_vals": _array_or_none(self.feature_p_vals),
            "feature_distances": _array_or_none(self.feature_distances),
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
    preprocess = None

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

    def save(self, path: str | Path) -> Path:
        from seismo import __version__
        from seismo.detect.preprocess import save_preprocess

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        if self.instance_shape is None:
            raise RuntimeError(f"{self.kind} is not fitted; nothing to save")
        config = {
            "detector": self.kind,
            "format_version": FORMAT_VERSION,
            "seismo_version": __version__,
            "params": {**self._params(), "instance_shape": list(self.instance_shape)},
            "preprocess": save_preprocess(self.preprocess, folder),
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        np.savez(folder / "arrays.npz", **self._arrays())
        self._save_extra(folder)
        return folder


def load_detector(path: str | Path) -> Detector:
    """A detector saved by `save`, whatever its kind."""
    from seismo.detect import DETECTORS
    from seismo.detect.preprocess import load_preprocess

    folder = Path(path)
    from seismo.detect.alibi_adapter import AlibiDetector, is_alibi_folder

    if is_alibi_folder(folder):  # saved by alibi-detect's save_detector
        return AlibiDetector(folder)
    config_file = folder / "config.json"
    if not config_file.exists():
        raise DetectorConfigError(f"no detector at {folder}: config.json is missing")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise DetectorConfigError(f"{config_file} is not valid JSON: {exc}") from None
    unknown = set(config) - _TOP_LEVEL_FIELDS
    if unknown:
        raise DetectorConfigError(f"{config_file}: unknown fields {sorted(unknown)}")
    if config.get("format_version") != FORMAT_VERSION:
        raise DetectorConfigError(f"{config_file}: format_version {config.get('format_version')!r} is not {FORMAT_VERSION}")
    kind = config.get("detector")
    if kind not in DETECTORS:
        raise DetectorConfigError(f"{config_file}: unknown detector {kind!r}; known: {sorted(DETECTORS)}")
    cls = DETECTORS[kind]
    params = dict(config.get("params") or {})
    shape = params.pop("instance_shape", None)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "preprocess"}
    unknown = set(params) - allowed
    if unknown:
        raise DetectorConfigError(f"{config_file}: unknown {kind} parameters {sorted(unknown)}")
    detector = cls(**params, preprocess=load_preprocess(config.get("preprocess"), folder))
    with np.load(folder / "arrays.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    detector.instance_shape = tuple(shape) if shape is not None else None
    detector._restore(arrays, folder)
    return detector
