"""Variants of the example classifier for the embedding-version tests: a fine-tune (an honest patch)
and a retrain from scratch (the same architecture, another space)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def variant(example_model: Path, out: Path, version: str, how: str) -> Path:
    """A copy of the example artifact whose weights are fine-tuned (`finetune`) or retrained from a
    new seed (`scratch`), its metadata claiming `version`."""
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
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    meta = json.loads((example_model / "metadata.json").read_text())
    meta["embedding"]["version"] = version
    (out / "metadata.json").write_text(json.dumps(meta))
    shutil.copy(example_model / "reference.npy", out / "reference.npy")
    return out
