"""The failure modes produced on purpose for the example image classifier (the digits CNN).

Production traffic is the classifier's held-out digits (never trained on) drawn with replacement and
given fresh sensor noise (Gaussian, sd 0.03), so every run sees new images; the model scores about
0.97 on them (0.983 on the clean held-out split, its metadata's `test_accuracy`). The diagnosis
compares the response's 64-d penultimate embedding against the embedding reference (training images).

- `healthy`: that traffic throughout.
- `concept_drift`: from half-way, the labelling convention changes: 60 % of the 1s, 4s and 7s are
  now labelled 7, 9 and 1 (P(y|x) moved; the images did not).
- `data_drift`: from half-way, 60 % of the images are scanned sideways (rotated 90 degrees), a
  sub-population the model never saw; labels keep their meaning.
- `training_serving_skew`: from the start, the serving pipeline normalises pixels to [-1, 1]
  ((x - 0.5) / 0.5, the ImageNet habit) where training used [0, 1].
- `upstream_cascade`: the scanner's gain varies per scan (0.5x to 2x) and an upstream regression
  (`scan-gain`) estimates it from a calibration-patch reading; the serving code divides the raw scan
  by the estimate before classifying. Half-way `scan-gain` is upgraded to version 2: three times more
  accurate on its own terms, but it reports the gain in percent. The classifier's requests name the
  gain prediction as their parent (lineage) and the classifier regresses.
- `no_ground_truth`: healthy traffic with almost no feedback.

`bench.scenarios.wine.replay_into` writes them into a record store and a metrics tracker.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from bench.scenarios.wine import Prediction, Scenario

IMAGE_MODEL = "image-classifier"
GAIN_MODEL = "scan-gain"
NOISE = 0.03
RELABEL = {1: 7, 4: 9, 7: 1}


class DigitsWorld:
    """The example image model and its held-out digits (`reference.npy` and `reference_labels.npy` travel
    with the artifact from `make model`: the test split, never trained on)."""

    def __init__(self, model_dir: Path):
        from seismo.serving.runtimes import load_runtime

        self.runtime = load_runtime(Path(model_dir))
        if self.runtime.embedding is None:
            raise ValueError(f"model {model_dir} configures no embedding: the image scenarios compare embeddings")
        self.embedding_version = self.runtime.embedding.version
        self.images = np.load(Path(model_dir) / "reference.npy").astype(np.float32)
        self.labels = np.load(Path(model_dir) / "reference_labels.npy").astype(np.int64)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = rng.integers(0, len(self.images), n)
        images = np.clip(self.images[chosen] + rng.normal(0, NOISE, (n, *self.images.shape[1:])), 0.0, 1.0)
        return images.astype(np.float32), self.labels[chosen].copy()

    def predict(self, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.runtime.predict_with_embedding(images[i:i + batch].astype(np.float32)) for i in range(0, len(images), batch)]
        return np.concatenate([p for p, _ in parts]), np.concatenate([e for _, e in parts])


def build_image(world: DigitsWorld, name: str, seed: int, n: int = 800, start: float | None = None, labelled: float = 0.8) -> Scenario:
    """One run: `n` predictions one second apart ending a minute ago, `labelled` of them with feedback."""
    start = time.time() - n - 60.0 if start is None else start
    rng = np.random.default_rng(seed)
    images, truth = world.draw(rng, n)
    half = np.arange(n) >= n // 2
    scenario = Scenario(name, name)
    if name == "concept_drift":
        flip = half & np.isin(truth, list(RELABEL)) & (rng.random(n) < 0.6)
        truth = np.where(flip, np.vectorize(lambda c: RELABEL.get(int(c), int(c)))(truth), truth)
    elif name == "data_drift":
        sideways = half & (rng.random(n) < 0.6)
        images[sideways] = np.rot90(images[sideways], 1, axes=(1, 2))
    elif name == "training_serving_skew":
        images = (images - 0.5) / 0.5
    parents: dict[int, str] = {}
    if name == "upstream_cascade":
        gain = rng.uniform(0.5, 2.0, n)
        reading = gain * (1 + rng.normal(0, 0.02, n))  # the calibration patch, as the sensor saw it
        version = np.where(half, "2", "1")
        estimate = np.where(half, 100.0 * gain * (1 + rng.normal(0, 0.05, n)), gain * (1 + rng.normal(0, 0.15, n)))
        own_truth = np.where(half, 100.0 * gain, gain)  # the gain in the units each version reports
        raw = images * gain[:, None, None, None]
        images = np.clip(raw / estimate[:, None, None, None], 0.0, 1.0).astype(np.float32)
        for i in range(n):
            parent = Prediction(f"gain-{seed}-{i}-{uuid.uuid4().hex[:6]}", GAIN_MODEL, str(version[i]), start + i - 0.5,
                                np.array([reading[i]]), np.array([estimate[i]]), [float(own_truth[i])])
            scenario.predictions.append(parent)
            parents[i] = parent.prediction_id
    probabilities, embeddings = world.predict(images)
    keep = rng.random(n) < (labelled if name != "no_ground_truth" else 0.02)
    for i in range(n):
        scenario.predictions.append(Prediction(f"{name}-img-{seed}-{i}-{uuid.uuid4().hex[:6]}", IMAGE_MODEL, "1", start + i, images[i],
                                               probabilities[i], int(truth[i]) if keep[i] else None, parents.get(i),
                                               embeddings[i], world.embedding_version))
    scenario.predictions.sort(key=lambda p: p.at)
    return scenario


def digits_config() -> str:
    """The metrics config the image scenarios are diagnosed under: embeddings against the training
    images' embedding reference, validation accuracy from the model's metadata."""
    from seismo.topology import EXAMPLE_DETECTORS, EXAMPLE_MODEL

    return f"""
models:
  {IMAGE_MODEL}:
    type: multiclass-onehot
    diagnosis:
      inputs: embedding
      reference: {EXAMPLE_DETECTORS / "embedding" / "arrays.npz"}
      metadata: {EXAMPLE_MODEL / "metadata.json"}
  {GAIN_MODEL}:
    type: regression            # its own ground truth: the scanner's measured gain
"""
