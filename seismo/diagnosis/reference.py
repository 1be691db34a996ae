"""What the diagnosis compares production with: the training inputs and the validation performance."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seismo.performance.config import DiagnosisConfig
from seismo.performance.quality import read_reference_array
from seismo.stats.ks import SortedReference

log = logging.getLogger(__name__)
MAX_REFERENCE = 2000
"""Reference rows kept (a seeded subsample beyond that): KS and the nearest-neighbour novelty need no more."""
NEIGHBOURS = 5
VALIDATION_KEYS = {"accuracy": "accuracy", "validation_accuracy": "accuracy", "heldout_accuracy": "accuracy",
                   "test_accuracy": "accuracy", "mae": "mae", "validation_mae": "mae"}


@dataclass
class Reference:
    inputs: np.ndarray | None = None
    """Training inputs (n, d) as float64, or None when none is configured or it could not be read."""
    sorted: SortedReference | None = None
    centre: np.ndarray | None = None
    scale: np.ndarray | None = None
    novelty_threshold: float | None = None
    """An input whose distance to its 5th nearest reference point exceeds the reference points' own 95th
    percentile of that distance is novel: unlike what the model was trained on."""
    metric: str = "accuracy"
    validation_error: float | None = None
    model_version: str | None = None
    feature_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def standardize(self, x: np.ndarray) -> np.ndarray:
        assert self.centre is not None and self.scale is not None
        return (np.asarray(x, dtype=np.float64) - self.centre) / self.scale

    def knn_distance(self, x: np.ndarray, k: int = NEIGHBOURS, chunk: int = 512) -> np.ndarray:
        """Distance from each row of `x` (standardized) to its k-th nearest reference point."""
        assert self.inputs is not None
        ref = self.standardize(self.inputs)
        ref_sq = (ref ** 2).sum(axis=1)
        out = np.empty(len(x))
        for start in range(0, len(x), chunk):
            part = x[start:start + chunk]
            d2 = (part ** 2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * part @ ref.T
            k_eff = min(k, d2.shape[1]) - 1
            out[start:start + chunk] = np.sqrt(np.maximum(np.partition(d2, k_eff, axis=1)[:, k_eff], 0.0))
        return out

    def novel(self, inputs: np.ndarray) -> np.ndarray:
        assert self.novelty_threshold is not None
        return self.knn_distance(self.standardize(inputs)) > self.novelty_threshold


def _read_metadata(config: DiagnosisConfig, reference: Reference) -> None:
    if config.metadata is None:
        reference.notes.append("no validation performance configured")
        return
    try:
        metadata = json.loads(Path(config.metadata).read_text())
    except (OSError, ValueError) as exc:
        reference.notes.append(f"validation performance unavailable: cannot read {config.metadata} ({exc})")
        return
    if isinstance(metadata, dict):
        reference.model_version = str(metadata["version"]) if "version" in metadata else None
        names = metadata.get("feature_names")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            reference.feature_names = names
    for key, metric in VALIDATION_KEYS.items():
        value = metadata.get(key) if isinstance(metadata, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            reference.metric = metric
            reference.validation_error = 1.0 - float(value) if metric == "accuracy" else float(value)
            return
    if not config.validation:
        reference.notes.append(f"{config.metadata} names no validation performance ({', '.join(VALIDATION_KEYS)})")


def _validation(config: DiagnosisConfig, reference: Reference) -> None:
    if config.metadata is None and not config.validation:
        reference.notes.append("no validation performance configured: the first production window is the baseline")
    if config.metadata is not None:
        _read_metadata(config, reference)
    if config.validation:  # configured figures win over the metadata's
        metric, value = config.validation[0]
        reference.metric = metric
        reference.validation_error = 1.0 - value if metric == "accuracy" else value


def load_reference(config: DiagnosisConfig, model: str, seed: int = 0) -> Reference:
    """Never raises: what is missing becomes a note in every diagnosis of the model."""
    reference = Reference()
    _validation(config, reference)
    if config.reference is None:
        reference.notes.append("no training reference configured: input drift is measured against the first production window only")
        return reference
    try:
        inputs = read_reference_array(config.reference).astype(np.float64)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        reference.notes.append(f"training reference unavailable: cannot read {config.reference} ({exc})")
        log.warning("diagnosis of %s: cannot read the training reference %s: %s", model, config.reference, exc)
        return reference
    inputs = inputs.reshape(len(inputs), -1)
    inputs = inputs[np.isfinite(inputs).all(axis=1)]
    if len(inputs) < 2 * NEIGHBOURS:
        reference.notes.append(f"training reference {config.reference} has {len(inputs)} usable rows: too few")
        return reference
    if len(inputs) > MAX_REFERENCE:
        inputs = inputs[np.random.default_rng(seed).choice(len(inputs), MAX_REFERENCE, replace=False)]
    reference.inputs = inputs
    reference.sorted = SortedReference(inputs)
    reference.centre = inputs.mean(axis=0)
    spread = inputs.std(axis=0)
    reference.scale = np.where(spread > 0, spread, 1.0)
    # Each reference point's distance to its k-th neighbour among the others (k + 1: itself is at 0).
    own = reference.knn_distance(reference.standardize(inputs), NEIGHBOURS + 1)
    reference.novelty_threshold = float(np.quantile(own, 0.95))
    return reference
