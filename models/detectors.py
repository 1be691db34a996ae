"""Fit the example detectors for the image classifier: what `seismo serve drift|outlier` use by default.

The reference is 1000 images of the classifier's own training split (scikit-learn digits as
32x32x3), so the held-out images the demo sends are clean traffic the detectors never saw.

- drift: KSDrift on a 32-dimensional untrained autoencoder (UAE) embedding, Bonferroni-corrected,
  the design documents' image drift detector.
- embedding: EmbeddingDrift (euclidean centroid distance) on the classifier's own penultimate layer,
  recording the embedding version from the classifier's metadata.
- adversarial: class-conditional Mahalanobis distance on the same embedding, with the training labels
  (Lee et al. 2018; seismo.detect.adversarial), threshold at the 95th percentile of a held-out fifth.
- outlier: VAE reconstruction error on the raw pixels, threshold at the 95th percentile (a
  Mahalanobis distance on principal components cannot see pixel noise: PCA discards it).

    python -m models.detectors [--out models/artifacts/detectors]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from models.image_classifier import digits_as_cifar  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "artifacts" / "detectors"


def main(argv: list[str] | None = None) -> int:
    from seismo.detect import KSDrift, UntrainedAutoencoder, VAEOutlier, save_detector

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--reference-size", type=int, default=1000)
    parser.add_argument("--if-missing", action="store_true")
    args = parser.parse_args(argv)
    if args.if_missing and all((args.out / kind / "config.json").exists() for kind in ("drift", "outlier", "embedding", "adversarial")):
        return 0
    x_train, y_train, _, _ = digits_as_cifar(seed=0)
    reference = x_train[: args.reference_size]
    print(f"fitting the example detectors on {len(reference)} training images", file=sys.stderr, flush=True)
    save_detector(KSDrift(p_val=0.05, correction="bonferroni", preprocess=UntrainedAutoencoder(32, seed=0)).fit(reference), args.out / "drift")
    print(f"  drift: KSDrift + UAE(32) -> {args.out / 'drift'}", file=sys.stderr, flush=True)
    from models.image_classifier import DEFAULT_OUT as MODEL_OUT
    from seismo.detect import EmbeddingDrift
    from seismo.embeddings.extract import embed

    embeddings, version = embed(MODEL_OUT, reference)
    save_detector(EmbeddingDrift(method="euclidean", version=version).fit(embeddings), args.out / "embedding")
    print(f"  embedding: EmbeddingDrift on {version} ({embeddings.shape[1]} dimensions) -> {args.out / 'embedding'}", file=sys.stderr, flush=True)
    from seismo.detect import ClassMahalanobisAdversarial

    labelled, _ = embed(MODEL_OUT, x_train)  # every training image: the class means need labels, not just the reference
    save_detector(ClassMahalanobisAdversarial(version=version).fit(labelled, y_train), args.out / "adversarial")
    print(f"  adversarial: class Mahalanobis on {version}, {len(labelled)} labelled images -> {args.out / 'adversarial'}", file=sys.stderr, flush=True)
    os.environ.setdefault("SEISMO_PROGRESS", "1")
    save_detector(VAEOutlier(threshold_percentile=95.0, latent_dim=16, hidden=256, epochs=20, seed=0).fit(reference), args.out / "outlier")
    print(f"  outlier: VAEOutlier (reconstruction error) -> {args.out / 'outlier'}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
