"""Saving and loading detectors, and the registry of detector kinds (alibi-detect's `saving` package).

A saved detector is a folder: `config.json` (detector kind, format version, parameters, the
preprocessing step) and `arrays.npz` (what `fit` learned); some detectors add a model file. Loading
refuses unknown kinds, versions and fields: a config written by a newer Seismo fails loudly instead
of being half-read. A folder written by alibi-detect's `save_detector` loads through the adapter.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from seismo import __version__
from seismo.config_files import validation_message
from seismo.detect.adversarial import ClassMahalanobisAdversarial
from seismo.detect.alibi_adapter import AlibiDetector, is_alibi_folder
from seismo.detect.base import Detector, DetectorConfigError
from seismo.detect.drift import ChiSquareDrift, ClassifierDrift, KSDrift, MMDDrift, PredictionDrift
from seismo.detect.embedding import EmbeddingDrift
from seismo.detect.outlier import IsolationForestOutlier, MahalanobisOutlier
from seismo.detect.preprocess import load_preprocess, save_preprocess

FORMAT_VERSION = 1


class SavedConfig(BaseModel):
    """`config.json` of a saved detector; unknown fields are refused (a newer format must not be half-read)."""

    model_config = ConfigDict(extra="forbid")

    detector: str
    format_version: int
    seismo_version: str | None = None
    params: dict[str, Any] = {}
    preprocess: dict[str, Any] | None = None
    detector_version: str | None = None  # the fingerprint of params and arrays (see detector_version()); results carry it
    provenance: dict[str, Any] | None = None  # which data and which model version it was fitted on (`seismo fit --from-store`)
    calibration: dict[str, Any] | None = None  # an outlier threshold's calibration: rows used, nominal and measured rates


class _LazyDetectors(dict):
    """The registry `load_detector` dispatches on; VAEOutlier (TensorFlow) is imported only when asked for."""

    def __missing__(self, key: str) -> type[Detector]:
        if key == "VAEOutlier":
            from seismo.detect.vae import VAEOutlier

            self[key] = VAEOutlier
            return VAEOutlier
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key == "VAEOutlier" or dict.__contains__(self, key)

    def __iter__(self):
        return iter([*dict.keys(self), "VAEOutlier"])


DETECTORS: dict[str, type[Detector]] = _LazyDetectors(
    {cls.kind: cls for cls in (KSDrift, ChiSquareDrift, MMDDrift, ClassifierDrift, PredictionDrift, MahalanobisOutlier, IsolationForestOutlier,
                          EmbeddingDrift, ClassMahalanobisAdversarial)}
)


def detector_version(kind: str, params: dict[str, Any], folder: Path) -> str:
    """`<kind>-<12 hex>`: a fingerprint of what the detector decides with (its parameters and fitted arrays),
    so two results carrying the same version came from the same detector, whatever its folder's name."""
    digest = hashlib.sha256(json.dumps({"kind": kind, "params": params}, sort_keys=True, default=str).encode())
    arrays = folder / "arrays.npz"
    if arrays.exists():
        digest.update(arrays.read_bytes())
    return f"{kind}-{digest.hexdigest()[:12]}"


def save_detector(detector: Detector, path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write a fitted detector to the folder `path` (created if missing), with its version and provenance."""
    folder = Path(path)
    if detector.instance_shape is None:
        raise RuntimeError(f"{detector.kind} is not fitted; nothing to save")
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "detector": detector.kind,
        "format_version": FORMAT_VERSION,
        "seismo_version": __version__,
        "params": {**detector._params(), "instance_shape": list(detector.instance_shape)},
        "preprocess": save_preprocess(detector.preprocess, folder),
    }
    np.savez(folder / "arrays.npz", **detector._arrays())  # type: ignore[arg-type]
    config["detector_version"] = detector.detector_version = detector_version(detector.kind, config["params"], folder)
    if provenance is not None:
        config["provenance"] = detector.provenance = provenance
    if detector.calibration is not None:
        config["calibration"] = detector.calibration
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    detector._save_extra(folder)
    return folder


def load_detector(path: str | Path) -> Detector | AlibiDetector:
    """A detector saved by `save_detector` (or by alibi-detect's `save_detector`), whatever its kind."""
    folder = Path(path)
    if is_alibi_folder(folder):
        return AlibiDetector(folder)
    config_file = folder / "config.json"
    if not config_file.exists():
        raise DetectorConfigError(f"no detector at {folder}: config.json is missing")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise DetectorConfigError(f"{config_file} is not valid JSON: {exc}") from None
    try:
        saved = SavedConfig.model_validate(config)
    except ValidationError as exc:
        raise DetectorConfigError(f"{config_file}: {validation_message(exc, SavedConfig, keys='fields')}") from None
    if saved.format_version != FORMAT_VERSION:
        raise DetectorConfigError(f"{config_file}: format_version {saved.format_version!r} is not {FORMAT_VERSION}")
    kind = saved.detector
    if kind not in DETECTORS:
        raise DetectorConfigError(f"{config_file}: unknown detector {kind!r}; known: {sorted(DETECTORS)}")
    cls = DETECTORS[kind]
    params = dict(saved.params)
    shape = params.pop("instance_shape", None)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "preprocess"}
    unknown = set(params) - allowed
    if unknown:
        raise DetectorConfigError(f"{config_file}: unknown {kind} parameters {sorted(unknown)}")
    detector = cls(**params, preprocess=load_preprocess(saved.preprocess, folder))  # type: ignore[call-arg]
    with np.load(folder / "arrays.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    detector.instance_shape = tuple(shape) if shape is not None else None
    detector._restore(arrays, folder)
    # Folders saved before versions were recorded get the same fingerprint computed now.
    detector.detector_version = saved.detector_version or detector_version(kind, dict(saved.params), folder)
    detector.provenance = saved.provenance
    detector.calibration = saved.calibration
    return detector
