"""Fit the example detectors for the image classifier: what `seismo serve drift|outlier` use by default.

The digits come in three parts (models.image_classifier.digits_splits): the classifier trained on
the first, the detectors' thresholds and the embedding reference come from the second, which the
classifier never saw, and the demo sends the third. A model embeds its own training images closer to
their class means than unseen ones, so a reference or threshold taken from them makes clean unseen
traffic look shifted (windows of 300 alarmed) or unusual (7.2 % flagged at a nominal 5 %).

- drift: KSDrift on a 32-dimensional untrained autoencoder (UAE) embedding, Bonferroni-corrected,
  the design documents' image drift detector; its reference is the training images (the untrained
  encoder never saw them either, and the larger part gives the test more power).
- embedding: EmbeddingDrift (euclidean centroid distance) on the classifier's own penultimate layer of
  the calibration images, recording the embedding version from the classifier's metadata.
- adversarial: class-conditional Mahalanobis distance on the same embedding, class Gaussians from the
  training images and their labels (Lee et al. 2018; seismo.detect.adversarial), a split-conformal
  threshold at the 95th percentile of the calibration images' scores.
- outlier: VAE reconstruction error on the raw pixels, trained on the training images, split-conformal
  threshold from the calibration images (a Mahalanobis distance on principal components cannot see
  pixel noise: PCA discards it).

Each saved config's `calibration` reports the false-positive rate measured on the calibration
images that did not set the threshold; `python -m bench.calibration` measures it on the test part.

    python -m models.detectors [--out models/artifacts/detectors]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from models.image_classifier import digits_splits  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "artifacts" / "detectors"


def _rate(detector) -> str:
    report = detector.calibration or {}
    measured = report.get("measured_rate")
    return f"false positives {measured:.1%} measured on {report['check_rows']} unseen images" if measured is not None else ""


def main(argv: list[str] | None = None) -> int:
    from seismo.detect import KSDrift, UntrainedAutoencoder, VAEOutlier, save_detector

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--reference-size", type=int, default=1000, help="at most this many training images for the drift reference")
    parser.add_argument("--if-missing", action="store_true")
    args = parser.parse_args(argv)
    if args.if_missing and all((args.out / kind / "config.json").exists() for kind in ("drift", "outlier", "embedding", "adversarial")):
        return 0
    parts = digits_splits(seed=0)
    reference = parts.x_train[: args.reference_size]
    print(f"fitting the example detectors: {len(parts.x_train)} training images, {len(parts.x_calibration)} calibration images "
          "the classifier never saw", file=sys.stderr, flush=True)
    save_detector(KSDrift(p_val=0.05, correction="bonferroni", preprocess=UntrainedAutoencoder(32, seed=0)).fit(reference), args.out / "drift")
    print(f"  drift: KSDrift + UAE(32) on {len(reference)} training images -> {args.out / 'drift'}", file=sys.stderr, flush=True)
    from models.image_classifier import DEFAULT_OUT as MODEL_OUT
    from seismo.detect import EmbeddingDrift
    from seismo.embeddings.extract import embed

    calibration, version = embed(MODEL_OUT, parts.x_calibration)
    save_detector(EmbeddingDrift(method="euclidean", version=version).fit(calibration), args.out / "embedding")
    print(f"  embedding: EmbeddingDrift on {version} ({calibration.shape[1]} dimensions) of the calibration images -> "
          f"{args.out / 'embedding'}", file=sys.stderr, flush=True)
    from seismo.detect import ClassMahalanobisAdversarial

    labelled, _ = embed(MODEL_OUT, parts.x_train)  # the class means need labels: the training images and theirs
    adversarial = ClassMahalanobisAdversarial(version=version).fit(labelled, parts.y_train, calibration=calibration)
    save_detector(adversarial, args.out / "adversarial")
    print(f"  adversarial: class Mahalanobis on {version}, {len(labelled)} labelled images; {_rate(adversarial)} -> "
          f"{args.out / 'adversarial'}", file=sys.stderr, flush=True)
    os.environ.setdefault("SEISMO_PROGRESS", "1")
    outlier = VAEOutlier(threshold_percentile=95.0, latent_dim=16, hidden=256, epochs=20, seed=0).fit(parts.x_train, parts.x_calibration)
    save_detector(outlier, args.out / "outlier")
    print(f"  outlier: VAEOutlier (reconstruction error); {_rate(outlier)} -> {args.out / 'outlier'}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
