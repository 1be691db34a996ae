"""Preprocessing before a drift or outlier test: images and wide tables to a few informative features.

- `PCA(n_components)`: principal components of the reference (numpy SVD).
- `UntrainedAutoencoder(encoding_dim)`: a randomly initialised Keras convolutional encoder, the
  "UAE" the design documents use before KS on images. Random projections keep distances well
  enough for a two-sample test and need no training.
- `ModelLayer(model_path, layer)`: the activations of any layer of a served Keras model.

Only the last two import TensorFlow, and only when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seismo.detect.base import DetectorConfigError


class PCA:
    kind = "pca"

    def __init__(self, n_components: int = 32):
        self.n_components = n_components
        self.mean: Any = None  # np.ndarray once fitted
        self.components: Any = None

    def fit(self, x: np.ndarray) -> PCA:
        flat = x.reshape(len(x), -1)
        self.mean = flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat - self.mean, full_matrices=False)
        self.components = vt[: self.n_components]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), -1) - self.mean) @ self.components.T

    def config(self) -> dict[str, Any]:
        return {"n_components": self.n_components}

    def save(self, folder: Path) -> None:
        np.savez(folder / "preprocess_pca.npz", mean=self.mean, components=self.components)

    def load(self, folder: Path) -> None:
        with np.load(folder / "preprocess_pca.npz") as data:
            self.mean, self.components = data["mean"], data["components"]


class UntrainedAutoencoder:
    """A random convolutional encoder (seeded) from an image to `encoding_dim` features."""

    kind = "uae"

    def __init__(self, encoding_dim: int = 32, seed: int = 0):
        self.encoding_dim = encoding_dim
        self.seed = seed
        self.model: Any = None  # a Keras model, built on first use
        self._fn: Any = None

    def _build(self, input_shape: tuple[int, ...]):
        import keras
        from keras import layers

        keras.utils.set_random_seed(self.seed)
        inputs = keras.Input(shape=input_shape)
        x = layers.Conv2D(64, 4, strides=2, padding="same", activation="relu")(inputs)
        x = layers.Conv2D(128, 4, strides=2, padding="same", activation="relu")(x)
        x = layers.Conv2D(512, 4, strides=2, padding="same", activation="relu")(x)
        x = layers.Flatten()(x)
        outputs = layers.Dense(self.encoding_dim)(x)
        return keras.Model(inputs, outputs, name="untrained_encoder")

    def _compile(self) -> None:
        import tensorflow as tf

        model = self.model
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
        # autograph off: our own functional encoder, no Python control flow to convert (tracing is faster).
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], reduce_retracing=True, autograph=False)

    def fit(self, x: np.ndarray) -> UntrainedAutoencoder:
        self.model = self._build(tuple(x.shape[1:]))
        self._compile()
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = [np.asarray(self._fn(x[i : i + 256].astype(np.float32))) for i in range(0, len(x), 256)]
        return np.concatenate(out).astype(np.float64)

    def config(self) -> dict[str, Any]:
        return {"encoding_dim": self.encoding_dim, "seed": self.seed}

    def save(self, folder: Path) -> None:
        self.model.save(folder / "preprocess_uae.keras")

    def load(self, folder: Path) -> None:
        import keras

        self.model = keras.saving.load_model(str(folder / "preprocess_uae.keras"), compile=False)
        self._compile()


class ModelLayer:
    """Activations of layer `layer` (a name or an index) of the Keras model at `model_path`."""

    kind = "model_layer"

    def __init__(self, model_path: str, layer: str | int = -2):
        self.model_path = str(model_path)
        self.layer = layer
        self._fn: Any = None

    def fit(self, x: np.ndarray) -> ModelLayer:
        import keras
        import tensorflow as tf

        path = Path(self.model_path)
        model = keras.saving.load_model(str(path / "model.keras" if path.is_dir() else path), compile=False)
        chosen = model.get_layer(self.layer) if isinstance(self.layer, str) else model.layers[self.layer]
        sub = keras.Model(model.inputs, chosen.output)
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
        self._fn = tf.function(lambda v: sub(v, training=False), input_signature=[spec], reduce_retracing=True)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = [np.asarray(self._fn(x[i : i + 256].astype(np.float32))) for i in range(0, len(x), 256)]
        return np.concatenate(out).reshape(len(x), -1).astype(np.float64)

    def config(self) -> dict[str, Any]:
        return {"model_path": getattr(self, "_saved_path", self.model_path), "layer": self.layer}

    def save(self, folder: Path) -> None:
        # The served model is referenced, not copied; relative to the detector folder, so the two
        # can move together (a repository, a container image).
        import os

        self._saved_path = os.path.relpath(Path(self.model_path).resolve(), Path(folder).resolve())

    def load(self, folder: Path) -> None:
        if not Path(self.model_path).is_absolute():
            self.model_path = str((Path(folder) / self.model_path).resolve())
        self.fit(np.empty((0,)))


PREPROCESSORS = {cls.kind: cls for cls in (PCA, UntrainedAutoencoder, ModelLayer)}


def save_preprocess(step, folder: Path) -> dict[str, Any] | None:
    if step is None:
        return None
    step.save(folder)
    return {"kind": step.kind, **step.config()}


def load_preprocess(config: dict[str, Any] | None, folder: Path):
    if config is None:
        return None
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in PREPROCESSORS:
        raise DetectorConfigError(f"unknown preprocessing {kind!r}; known: {sorted(PREPROCESSORS)}")
    try:
        step = PREPROCESSORS[kind](**config)
    except TypeError as exc:
        raise DetectorConfigError(f"preprocessing {kind}: {exc}") from None
    step.load(folder)
    return step
