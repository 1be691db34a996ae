"""Variants of the example classifier for the embedding-version tests: a fine-tune (an honest patch)
and a retrain from scratch (the same architecture, another space)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def variant(example_model: Path, out: Path, version: str, how: str) -> Path:
    """A copy of the example artifact whose weights are fine-tuned (`finetune`) or retrained from a
    new seed (`scratch`), its metadata claiming `version`.

    Training costs about ten seconds, so the trained weights are kept beside the example artifact,
    keyed by the example model's bytes and this file's own (a retrained example or a changed recipe
    trains afresh)."""
    key = hashlib.sha256((example_model / "model.keras").read_bytes() + Path(__file__).read_bytes() + how.encode()).hexdigest()[:16]
    kept = example_model.parent / "test-variants" / f"{how}-{key}.keras"
    if not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        _train(example_model, how).save(kept.parent / f".{kept.name}.{os.getpid()}.keras")
        os.replace(kept.parent / f".{kept.name}.{os.getpid()}.keras", kept)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(kept, out / "model.keras")
    meta = json.loads((example_model / "metadata.json").read_text())
    meta["embedding"]["version"] = version
    (out / "metadata.json").write_text(json.dumps(meta))
    shutil.copy(example_model / "reference.npy", out / "reference.npy")
    return out


def _train(example_model: Path, how: str):
    import keras

    from models.image_classifier import build_model, digits_as_cifar

    x_train, y_train, _, _ = digits_as_cifar(seed=0)
    if how == "finetune":  # a little more training at a small step: the same space, slightly moved
        model = keras.saving.load_model(str(example_model / "model.keras"), compile=False)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
        model.fit(x_train[:600], y_train[:600], batch_size=64, epochs=1, verbose=0)
    else:
        model = build_model(seed=7)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        model.fit(x_train, y_train, batch_size=64, epochs=3, verbose=0)
    return model
