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
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from seismo.config_files import read_models_mapping, validation_message
from seismo.explain.image import SEGMENTATIONS

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


class ExplainedModelSpec(BaseModel):
    """One entry of the explainer config file, as written (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["tabular", "image"]
    url: str = Field(min_length=1)
    reference: str = Field(min_length=1)
    feature_names: list[str] = []
    categorical: list[int] = []
    bins: int = Field(4, ge=2, le=20)
    segmentation: dict[str, Any] = {"method": "slic"}
    background: Literal["mean", "reference"] = "mean"

    @field_validator("segmentation")
    @classmethod
    def _known_method(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("method", "slic") not in SEGMENTATIONS:
            raise ValueError(f"segmentation.method must be one of {', '.join(SEGMENTATIONS)}")
        return value or {"method": "slic"}


def _model(name: str, doc: Any, base: Path) -> ExplainedModel:
    where = f"model {name!r}"
    if not isinstance(doc, dict):
        raise ExplainerConfigError(f"{where}: expected a mapping with kind, url and reference")
    try:
        spec = ExplainedModelSpec.model_validate(doc)
    except ValidationError as exc:
        raise ExplainerConfigError(f"{where}: {validation_message(exc, ExplainedModelSpec)}") from None
    reference = Path(spec.reference)
    return ExplainedModel(name, spec.kind, spec.url.rstrip("/"), reference if reference.is_absolute() else (base / reference).resolve(),
                          tuple(spec.feature_names), frozenset(spec.categorical), spec.bins, dict(spec.segmentation), spec.background)


def load_models(path: Path) -> dict[str, ExplainedModel]:
    base = Path(path).resolve().parent
    specs = read_models_mapping(path, "explainer config", ExplainerConfigError, expand_env=True)
    return {name: _model(name, spec, base) for name, spec in specs.items()}
