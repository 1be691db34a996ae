"""Model runtimes: load a Keras or scikit-learn model and run it on a batch of numpy inputs.

Keras models are traced once into a `tf.function` with an open batch dimension (per-request
`model.predict` costs tens of milliseconds in Python overhead). On a CPU the model is also converted
to TensorFlow Lite and run by its interpreter (XNNPACK kernels): for the example CNN one image takes
about 0.2-0.3 ms there against 1.6-2.6 ms through TensorFlow, and a batch of 64 about half the time
(the `engine` argument; seismo.serving.tflite). The conversion is checked against TensorFlow's
own outputs at load, and a model it cannot convert faithfully stays on TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from seismo.serving.forest import forest_proba

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for any size (the batch dimension)


@dataclass
class ModelInfo:
    name: str
    version: str | None
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddingSpec:
    """Where a model's embedding comes from and what it is called (metadata.json's `embedding`)."""

    layer: str
    """The Keras layer whose activations are the embedding (the example: its penultimate layer)."""
    version: str
    """`<model>/<space>@MAJOR.MINOR.PATCH` (seismo.embeddings.version)."""
    output: str = "embedding"
    """Name of the extra output the response event carries it in."""


Engine = Literal["auto", "tflite", "tensorflow"]
"""How a Keras model runs: TensorFlow Lite's interpreter, TensorFlow itself, or auto (TensorFlow Lite
on a CPU-only machine when the converted model answers like TensorFlow; TensorFlow when a GPU is visible)."""


class Runtime(Protocol):
    info: ModelInfo
    embedding: EmbeddingSpec | None

    def predict(self, batch: np.ndarray) -> np.ndarray: ...

    def predict_with_embedding(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def embedding_spec(meta: dict[str, Any], layer: str | None = None, version: str | None = None) -> EmbeddingSpec | None:
    """The embedding a model emits: metadata.json's `embedding`, overridden by settings; None for none.

    ValueError for a half-configured or malformed one (a service must not start emitting unversioned vectors)."""
    from seismo.embeddings.version import EmbeddingVersion

    configured = meta.get("embedding") or {}
    if not isinstance(configured, dict):
        raise ValueError("metadata.json 'embedding' must be an object with 'layer' and 'version'")
    layer = layer or configured.get("layer")
    version = version or configured.get("version")
    if not layer and not version:
        return None
    if not (layer and version):
        raise ValueError("an embedding needs both a layer and a version (metadata.json 'embedding', or "
                         "SEISMO_MODEL_EMBEDDING_LAYER with SEISMO_MODEL_EMBEDDING_VERSION)")
    EmbeddingVersion.parse(version)
    return EmbeddingSpec(str(layer), str(version), str(configured.get("output") or "embedding"))


def _specs(entries: list[dict] | None, default: list[TensorSpec]) -> list[TensorSpec]:
    if not entries:
        return default
    return [TensorSpec(e["name"], e.get("datatype", "FP32"), tuple(e.get("shape", [-1]))) for e in entries]


def read_metadata(path: Path) -> dict[str, Any]:
    folder = path if path.is_dir() else path.parent
    meta_file = folder / "metadata.json"
    return json.loads(meta_file.read_text()) if meta_file.exists() else {}


class KerasRuntime:
    """A Keras model (`.keras`) or a SavedModel, traced into one `tf.function` with an open batch
    dimension, and on a machine with no GPU converted to TensorFlow Lite when the conversion answers a
    probe batch like TensorFlow. Built cheap; `load()` does the work (TensorFlow is imported there)."""

    engine: str
    """What runs the forward pass: "tflite" or "tensorflow" (after `auto` was resolved)."""

    def __init__(self, path: Path, name: str | None = None, embedding: EmbeddingSpec | None = None,
                 engine: Engine = "auto"):
        self.path, self.name, self.embedding, self.requested_engine = path, name, embedding, engine
        self.engine = "tensorflow"
        self._lite: Any = None
        self._both: Any = None

    def load(self) -> KerasRuntime:
        """Load, trace and warm up the model, then try TensorFlow Lite; the runtime, ready to predict."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        meta = read_metadata(self.path)
        model_file = self.path / meta["file"] if self.path.is_dir() and "file" in meta else self.path
        if model_file.is_dir() and (model_file / "saved_model.pb").exists():
            in_shape, to_lite, platform = self._load_saved_model(model_file)
        else:
            in_shape, to_lite, platform = self._load_keras(model_file)
        self._fn(np.zeros((1, *in_shape[1:]), dtype=np.float32))  # trace and warm up before serving
        if _wants_tflite(self.requested_engine):
            self._convert(model_file, in_shape, to_lite)
        self.input_shape = in_shape
        default_in = [TensorSpec("input_1", "FP32", in_shape)]
        default_out = [TensorSpec("output_1", "FP32", (-1,))]
        self.info = ModelInfo(
            name=self.name or meta.get("name") or self.path.stem,
            version=meta.get("version"),
            platform=platform,
            inputs=_specs(meta.get("inputs"), default_in),
            outputs=_specs(meta.get("outputs"), default_out),
            metadata=meta,
        )
        return self

    def _load_saved_model(self, model_file: Path) -> tuple[tuple[int, ...], Any, str]:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(model_file))
        signature = loaded.signatures["serving_default"]
        input_spec = list(signature.structured_input_signature[1].values())[0]
        output_key = list(signature.structured_outputs.keys())[0]
        input_name = list(signature.structured_input_signature[1].keys())[0]
        if self.embedding is not None:
            raise ValueError("embeddings from a SavedModel are not supported: save the model as .keras, or have it "
                             "return its embedding as an output and name that output in the embeddings config")
        self._fn = lambda x: signature(**{input_name: x})[output_key]
        self._keep = loaded
        to_lite = lambda: tf.lite.TFLiteConverter.from_saved_model(str(model_file), ["serving_default"])  # noqa: E731
        return tuple(-1 if d is None else d for d in input_spec.shape), to_lite, "tensorflow_savedmodel"

    def _load_keras(self, model_file: Path) -> tuple[tuple[int, ...], Any, str]:
        import keras
        import tensorflow as tf

        if model_file.is_dir():
            model_file = next(iter(sorted(model_file.glob("*.keras"))), model_file)
        if not model_file.exists():
            raise FileNotFoundError(f"no Keras model at {model_file}")
        model = keras.saving.load_model(str(model_file), compile=False)
        in_shape = tuple(-1 if d is None else d for d in model.inputs[0].shape)
        spec = tf.TensorSpec([None, *in_shape[1:]], tf.float32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], reduce_retracing=True)
        served = model
        if self.embedding is not None:
            # One forward pass gives both: a second model over the same layers, ending in two outputs.
            try:
                layer = model.get_layer(self.embedding.layer)
            except ValueError:
                names = [layer.name for layer in model.layers]
                raise ValueError(f"embedding layer {self.embedding.layer!r} is not in the model; its layers: {names}") from None
            served = keras.Model(model.inputs, [model.outputs[0], layer.output])
            self._both = tf.function(lambda x: served(x, training=False), input_signature=[spec], reduce_retracing=True)
            self._both(np.zeros((1, *in_shape[1:]), dtype=np.float32))
        self._keep = model
        return in_shape, lambda: tf.lite.TFLiteConverter.from_keras_model(served), "keras"

    def _convert(self, model_file: Path, in_shape: tuple[int, ...], to_lite: Any) -> None:
        """TensorFlow Lite when it answers a probe batch like TensorFlow; else TensorFlow (or an error, when asked for tflite)."""
        from seismo.serving.tflite import LiteFunction, LiteUnfaithful, cache_file

        probe = np.random.default_rng(0).random((3, *in_shape[1:]), dtype=np.float32)
        embedding = self.embedding
        expected = self._both(probe) if embedding is not None else (self._fn(probe),)
        cache = cache_file(model_file, outputs=f"embedding={embedding.layer}" if embedding is not None else "model")
        try:
            self._lite = LiteFunction.convert(to_lite, probe, [np.asarray(e) for e in expected], cache=cache)
            self.engine = "tflite"
        except LiteUnfaithful as problem:
            if self.requested_engine == "tflite":
                raise ValueError(f"model {model_file} cannot run on TensorFlow Lite: {problem}") from None
            log.warning("model %s stays on TensorFlow: %s", model_file, problem)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = batch.astype(np.float32, copy=False)
        if self._lite is not None:
            return self._lite(batch)[0]
        return np.asarray(self._fn(batch))

    def predict_with_embedding(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = batch.astype(np.float32, copy=False)
        if self._lite is not None:
            out, embedding = self._lite(batch)
        else:
            out, embedding = (np.asarray(t) for t in self._both(batch))
        return out, embedding.reshape(len(embedding), -1)


def _wants_tflite(engine: str) -> bool:
    if engine == "tensorflow":
        return False
    if engine == "tflite":
        return True
    import tensorflow as tf

    # A GPU runs big batches faster through TensorFlow than the interpreter runs them on the CPU.
    return not tf.config.list_physical_devices("GPU")


class SklearnRuntime:
    """A joblib-saved estimator: class probabilities when it has predict_proba, else predict."""

    def __init__(self, path: Path, name: str | None = None):
        import joblib

        self.embedding: EmbeddingSpec | None = None  # scikit-learn models: foreign-style outputs only (docs)
        meta = read_metadata(path)
        model_file = path / meta.get("file", "model.joblib") if path.is_dir() else path
        self.model = joblib.load(model_file)
        n_features = getattr(self.model, "n_features_in_", None)
        in_shape = (-1, n_features) if n_features else (-1, -1)
        self.input_shape = in_shape
        self._proba = hasattr(self.model, "predict_proba") and meta.get("output", "proba") == "proba"
        # A tree forest's probabilities without joblib's per-tree overhead (6x faster), once a probe proved them equal.
        self._forest = forest_proba(self.model) if self._proba else None
        self.info = ModelInfo(
            name=name or meta.get("name") or path.stem,
            version=meta.get("version"),
            platform="sklearn",
            inputs=_specs(meta.get("inputs"), [TensorSpec("input_1", "FP64", in_shape)]),
            outputs=_specs(meta.get("outputs"), [TensorSpec("output_1", "FP64" if self._proba else "INT64", (-1,))]),
            metadata=meta,
        )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim > 2:  # scikit-learn takes 2-D input: images (declared in metadata.json) are flattened row-major
            batch = batch.reshape(len(batch), -1)
        if self._forest is not None:
            return self._forest(batch)
        return np.asarray(self.model.predict_proba(batch) if self._proba else self.model.predict(batch))

    def predict_with_embedding(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError("scikit-learn runtimes emit no embedding")


def load_runtime(path: str | Path, framework: str = "auto", name: str | None = None,
                 embedding_layer: str | None = None, embedding_version: str | None = None, embeddings: bool = True,
                 engine: Engine = "auto") -> Runtime:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"model artifact {path} not found; train the example with `make model` "
            "(python -m models.image_classifier) or set SEISMO_MODEL_PATH"
        )
    if framework == "auto":
        meta = read_metadata(path)
        framework = meta.get("framework") or ("sklearn" if path.suffix in (".joblib", ".pkl") else "keras")
    embedding = embedding_spec(read_metadata(path), embedding_layer, embedding_version) if embeddings else None
    if framework == "sklearn":
        if embedding is not None:
            raise ValueError("scikit-learn models cannot emit an embedding layer; unset the embedding settings")
        return SklearnRuntime(path, name)
    if framework in ("keras", "tensorflow"):
        return KerasRuntime(path, name, embedding, engine).load()
    raise ValueError(f"unknown model framework {framework!r}; expected keras or sklearn")
