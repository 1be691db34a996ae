"""Where an embedding is on an event, and how to embed data with a model artifact.

Seismo's model server puts a prediction's embedding in its response event as one more output (V2:
an output tensor named by the `embeddingoutput` extension; V1: a key of that name beside
`predictions`) and names its version in the `embeddingversion` extension. A foreign model (KServe,
Seldon) that returns its own embedding output sends neither extension: the embeddings config names
the output and the version per model (`seismo/config/embeddings.yaml`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from seismo.config_files import validation_message
from seismo.embeddings.version import EmbeddingVersion
from seismo.protocol.binary import load_document
from seismo.protocol.payloads import PayloadError, decode_v2_tensor
from seismo.topology import CONFIG_DIR, expand_env

DEFAULT_CONFIG = CONFIG_DIR / "embeddings.yaml"
VERSION_EXTENSION = "embeddingversion"
FP32_MAX = float(np.finfo(np.float32).max)
OUTPUT_EXTENSION = "embeddingoutput"


def drift_log_key(model: str, result: Mapping[str, Any]) -> str:
    """Under which name the logger's drift log keeps a window: embedding windows (numbered on their own)
    apart from input windows, as `<model>/embedding` (`GET /v1/drift?model=<model>/embedding`)."""
    return f"{model}/embedding" if result.get("detector") == "EmbeddingDrift" else model


class EmbeddingSource(BaseModel):
    """One foreign model's embedding: the output it returns it in and the version to record."""

    model_config = ConfigDict(extra="forbid")

    output: str
    version: str

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return str(EmbeddingVersion.parse(value))


class _EmbeddingsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, EmbeddingSource] = {}


def load_sources(path: Path | None = DEFAULT_CONFIG) -> dict[str, EmbeddingSource]:
    """Foreign models' embedding outputs by model name; ValueError naming the problem in the file."""
    if path is None or not Path(path).exists():
        return {}
    try:
        raw = yaml.safe_load(expand_env(Path(path).read_text())) or {}
        return _EmbeddingsFile.model_validate(raw).models
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ValueError(f"{path}: {validation_message(exc, _EmbeddingsFile)}") from None


@dataclass(frozen=True)
class EventEmbedding:
    vectors: np.ndarray  # [instances, dimension], float64
    version: str | None
    output: str


def embedding_of(body: bytes | None, extensions: Mapping[str, str], source: EmbeddingSource | None = None) -> EventEmbedding | None:
    """The embedding a response event carries, None when it carries none; PayloadError when it names
    one that is missing or malformed (the caller refuses the event with that reason)."""
    output = extensions.get(OUTPUT_EXTENSION) or (source.output if source else None)
    if not output:
        return None
    version = extensions.get(VERSION_EXTENSION) or (source.version if source else None)
    if version is not None:
        try:
            EmbeddingVersion.parse(version)
        except ValueError as exc:
            raise PayloadError(str(exc)) from None
    if not body:
        raise PayloadError(f"the event names embedding output {output!r} but has no data")
    doc = load_document(body, what="response event data")
    value: Any = None
    if isinstance(doc, dict) and isinstance(doc.get("outputs"), list):
        for i, tensor in enumerate(doc["outputs"]):
            if isinstance(tensor, dict) and tensor.get("name") == output:
                value = decode_v2_tensor(tensor, f"outputs[{i}]").data
                break
    elif isinstance(doc, dict) and output in doc:
        value = doc[output]
    elif isinstance(doc, dict) and isinstance(doc.get("jsonData"), dict):  # a Seldon model's jsonData
        value = doc["jsonData"].get(output)
    if value is None:
        raise PayloadError(f"the response has no embedding output {output!r}")
    try:
        vectors = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PayloadError(f"embedding output {output!r} is not numeric") from None
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if vectors.ndim < 2 or vectors.size == 0:
        raise PayloadError(f"embedding output {output!r} must have one vector per instance")
    if not np.isfinite(vectors).all():
        raise PayloadError(f"embedding output {output!r} contains NaN or infinity")
    # Beyond FP32's range squares overflow float64 sums downstream (centroid distances, PCA, HDBSCAN):
    # a hostile 1e300 once made clustering eat all memory. No model's embedding is that large.
    if np.abs(vectors).max() > FP32_MAX:
        raise PayloadError(f"embedding output {output!r} has values beyond FP32's range (|x| > {FP32_MAX:.3g})")
    return EventEmbedding(vectors.reshape(len(vectors), -1), version, output)


def embed(model_path: Path, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, str]:
    """(embeddings, version) of `x` through the model artifact's configured embedding layer."""
    from seismo.serving.runtimes import load_runtime

    runtime = load_runtime(model_path)
    if runtime.embedding is None:
        raise ValueError(f"model {model_path} configures no embedding (metadata.json 'embedding': layer, version)")
    parts = [runtime.predict_with_embedding(x[i:i + batch_size])[1] for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.float64), runtime.embedding.version
