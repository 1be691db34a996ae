"""Train the example image classifier: a small ResNet-style Keras CNN on 32x32x3 images.

Offline by default: scikit-learn's digits (8x8 grey, 10 classes) upscaled to CIFAR-10's shape, so a
fresh machine with no network trains it in seconds. Pointed at a local copy of CIFAR-10's python
batches (`--cifar10-dir`, the folder holding `data_batch_1` ... `test_batch`) it trains on those.

    python -m models.image_classifier --out models/artifacts/image-classifier

The artifact folder holds `model.keras` and `metadata.json` (name, version, training data, input and
output signature, held-out accuracy), which the model server reads.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

MODEL_NAME = "image-classifier"
ARTIFACT_VERSION = "1"
DEFAULT_OUT = Path(__file__).resolve().parent / "artifacts" / MODEL_NAME
IMAGE_SHAPE = (32, 32, 3)
EMBEDDING_LAYER = "penultimate"
# Bump by the rules in seismo.embeddings.version: major for another architecture, minor for another
# layer or pooling, patch for retraining (`seismo embeddings check` verifies a patch is one).
EMBEDDING_VERSION = f"{MODEL_NAME}/{EMBEDDING_LAYER}@1.0.1"  # 1.0.1: retrained on half the digits (a calibration part kept out)


class DigitsSplits(NamedTuple):
    """Three disjoint parts: the classifier trains on `train`; detectors on the model's representation take
    references and thresholds from `calibration` (images the model never saw, which embed the way
    production images do); `test` is the clean traffic the demo and the benchmarks send."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_calibration: np.ndarray
    y_calibration: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_splits(seed: int = 0) -> DigitsSplits:
    """scikit-learn's digits upscaled to 32x32x3 float32 in [0, 1]; a seeded 50/30/20 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # [N, 8, 8] in [0, 1]
    images = np.kron(images, np.ones((1, 4, 4), dtype=np.float32))  # nearest-neighbour to 32x32
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], labels[order]
    train, test = int(0.5 * len(images)), int(0.8 * len(images))  # the test part is the last fifth, as before the split had three parts
    return DigitsSplits(images[:train], labels[:train], images[train:test], labels[train:test], images[test:], labels[test:])


def digits_as_cifar(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) of `digits_splits`: the calibration part is in neither."""
    parts = digits_splits(seed)
    return parts.x_train, parts.y_train, parts.x_test, parts.y_test


def load_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10's python batches (the `cifar-10-batches-py` folder) as float32 NHWC in [0, 1]."""

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / name
        if not path.exists():
            raise FileNotFoundError(f"CIFAR-10 batch {path} not found (expected the python batches)")
        with path.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        x = batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
        return x, np.asarray(batch[b"labels"], dtype=np.int64)

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return (
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        x_test,
        y_test,
    )


def build_model(num_classes: int = 10, width: int = 16, seed: int = 0):
    """A small ResNet: a stem convolution, two residual stages, global pooling, softmax."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)

    def residual_block(x, filters: int, stride: int):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization(momentum=0.9)(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization(momentum=0.9)(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
            shortcut = layers.BatchNormalization(momentum=0.9)(shortcut)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    inputs = keras.Input(shape=IMAGE_SHAPE, name="input_1")
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = residual_block(x, width, 1)
    x = residual_block(x, width * 2, 2)
    x = residual_block(x, width * 4, 2)
    x = layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(x)  # the embedding the model server emits
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="image_classifier")


class _Progress:
    """One line per epoch on stderr, so a long training shows it is moving."""

    def __init__(self, epochs: int):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(cb_self, epoch, logs=None):  # noqa: N805 - keras calls it this way
                logs = logs or {}
                print(
                    f"  epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.3f}"
                    f" accuracy {logs.get('accuracy', float('nan')):.3f}",
                    file=sys.stderr,
                    flush=True,
                )

        self.callback = Callback()


def train(out: Path, cifar10_dir: Path | None = None, epochs: int | None = None, seed: int = 0) -> dict:
    """Train, evaluate on the held-out split, and write the artifact; returns its metadata."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if cifar10_dir is not None:
        x_train, y_train, x_test, y_test = load_cifar10(Path(cifar10_dir))
        data = {"name": "cifar10", "source": str(cifar10_dir), "train_size": len(x_train)}
        epochs = epochs or 20
    else:
        parts = digits_splits(seed)
        x_train, y_train, x_test, y_test = parts.x_train, parts.y_train, parts.x_test, parts.y_test
        data = {
            "name": "sklearn-digits-32x32x3",
            "source": "sklearn.datasets.load_digits, 8x8 upscaled 4x (nearest) to 32x32, grey to 3 channels",
            "train_size": len(x_train),
            "calibration_size": len(parts.x_calibration),  # kept out of training: the detectors' references and thresholds
            "test_size": len(x_test),
        }
        epochs = epochs or 12  # 12 over half the digits: 0.975 held out (8 over four fifths gave 0.972)

    print(f"training {MODEL_NAME} on {data['name']} ({len(x_train)} images, {epochs} epochs)", file=sys.stderr)
    started = time.perf_counter()
    model = build_model(seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train, y_train, batch_size=64, epochs=epochs, verbose=0, callbacks=[_Progress(epochs).callback]
    )
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    seconds = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    metadata = {
        "name": MODEL_NAME,
        "version": ARTIFACT_VERSION,
        "framework": "keras",
        "file": "model.keras",
        "inputs": [{"name": "input_1", "datatype": "FP32", "shape": [-1, *IMAGE_SHAPE]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
        "classes": [str(i) for i in range(10)],
        "embedding": {"layer": EMBEDDING_LAYER, "version": EMBEDDING_VERSION, "output": "embedding", "dimension": 64},
        "training_data": data,
        "test_accuracy": round(float(accuracy), 4),
        "training_seconds": round(seconds, 1),
        "seed": seed,
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    # A small reference sample travels with the model: the demo and later the detectors use it.
    np.save(out / "reference.npy", x_test[:500].astype(np.float32))
    np.save(out / "reference_labels.npy", y_test[:500])
    print(f"wrote {out} (held-out accuracy {accuracy:.3f}, {seconds:.0f} s)", file=sys.stderr)
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact folder")
    parser.add_argument("--cifar10-dir", type=Path, help="local cifar-10-batches-py folder")
    parser.add_argument("--epochs", type=int, help="default 12 on digits, 20 on CIFAR-10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--if-missing", action="store_true", help="do nothing if the artifact exists")
    args = parser.parse_args(argv)
    if args.if_missing and (args.out / "metadata.json").exists():
        return 0
    train(args.out, args.cifar10_dir, args.epochs, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
