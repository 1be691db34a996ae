"""Which models the explainer explains, where their model servers are, and their reference data.

```yaml
models:
  tabular-classifier:
    kind: tabular
    url: "${SEISMO_TABULAR_URL:-http://127.0.0.1:8081}"   # the model server; ${VAR:-default} from the environment
    reference: ../../models/artifacts/tabular-classifier/reference.npy   # relative to this file
    feature_names: [alcohol, malic_acid, ...]          # or from metadata.json beside the reference
    categorical: [3]                                   # column indices taken as categories
    bins: 4                                            # quantile bins for numeric features
  image-classifier:
    kind: image
    url: "${SEISMO_MODEL_URL:-http://127.0.0.1:8080}"
    reference: ../../models/artifacts/image-classifier/reference.npy   # background images
    segmentation: {method: slic, n_segments: 16, compactness: 10}
    background: mean            # replaced superpixels: their mean colour (alibi's default), or `reference` images
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seismo.explain.image import SEGMENTATIONS
from seismo.models_file import read_models_mapping

KINDS = ("tabular", "image")


class ExplainerConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ExplainedModel:
    name: str
    kind: str
    url: str
    reference_path: Path
    feature_names: tuple[str, ...] = ()
    categorical: frozenset[int] = frozenset()
    bins: int = 4
    segmentation: dict[str, Any] = field(default_factory=dict)
    background: str = "mean"  # images: replaced superpixels take their mean colour, or a reference image's pixels

    def load_reference(self) -> np.ndarray:
        if not self.reference_path.exists():
            raise ExplainerConfigError(f"model {self.name!r}: reference data {self.reference_path} not found (train the example models with `make model`)")
        reference = np.load(self.reference_path).astype(np.float32)
        if self.kind == "tabular" and reference.ndim != 2:
            raise ExplainerConfigError(f"model {self.name!r}: tabular reference must be [rows, features], got {list(reference.shape)}")
        if self.kind == "image" and reference.ndim not in (3, 4):
            raise ExplainerConfigError(f"model {self.name!r}: image reference must be [N, H, W(, C)], got {list(reference.shape)}")
        return reference

    def names_for(self, n_features: int) -> list[str]:
        if len(self.feature_names) == n_features:
            return list(self.feature_names)
        metadata = self.reference_path.parent / "metadata.json"
        if metadata.exists():
            names = json.loads(metadata.read_text()).get("feature_names") or []
            if len(names) == n_features:
                return [str(n) for n in names]
        return [f"x{j}" for j in range(n_features)]


def _model(name: str, doc: Any, base: Path) -> ExplainedModel:
    where = f"model {name!r}"
    if not isinstance(doc, dict):
        raise ExplainerConfigError(f"{where}: expected a mapping with kind, url and reference")
    known = {"kind", "url", "reference", "feature_names", "categorical", "bins", "segmentation", "background"}
    if set(doc) - known:
        raise ExplainerConfigError(f"{where}: unknown keys {sorted(set(doc) - known)}; known: {sorted(known)}")
    if doc.get("kind") not in KINDS:
        raise ExplainerConfigError(f"{where}: kind must be tabular or image, got {doc.get('kind')!r}")
    for key in ("url", "reference"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ExplainerConfigError(f"{where}: '{key}' is required")
    reference = Path(doc["reference"])
    segmentation = dict(doc.get("segmentation") or {"method": "slic"})
    if segmentation.get("method", "slic") not in SEGMENTATIONS:
        raise ExplainerConfigError(f"{where}: segmentation.method must be one of {', '.join(SEGMENTATIONS)}")
    background = doc.get("background", "mean")
    if background not in ("mean", "reference"):
        raise ExplainerConfigError(f"{where}: background must be mean or reference, got {background!r}")
    bins = doc.get("bins", 4)
    if not isinstance(bins, int) or not 2 <= bins <= 20:
        raise ExplainerConfigError(f"{where}: bins must be an integer from 2 to 20")
    return ExplainedModel(name, doc["kind"], doc["url"].rstrip("/"), reference if reference.is_absolute() else (base / reference).resolve(),
                          tuple(str(n) for n in doc.get("feature_names") or ()), frozenset(int(c) for c in doc.get("categorical") or ()),
                          bins, segmentation, background)


def load_models(path: Path) -> dict[str, ExplainedModel]:
    base = Path(path).resolve().parent
    specs = read_models_mapping(path, "explainer config", ExplainerConfigError, expand_env=True)
    return {name: _model(name, spec, base) for name, spec in specs.items()}
