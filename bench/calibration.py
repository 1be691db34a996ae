"""False positives of the example's outlier and adversarial detectors on clean images nobody fitted on.

The shipped detectors (models/artifacts/detectors) take split-conformal thresholds from the
calibration part of the digits (seismo.detect.calibration). For each detector at its nominal 5 %:

- `shipped`: the share of the 360 test images (never seen by the classifier or the detector) its
  saved threshold flags: one draw, about +-1.1 points of sampling error at this size;
- `conformal_expected`: what the method gives on average, free of that one draw: the unseen images
  (calibration and test parts) split at random `--splits` times, a threshold from as many images as
  the shipped one used, the rate on the rest; mean and the 5th-95th percentile band;
- `training_threshold`: the rule before the split, a percentile of the scores of the images the
  detector (and, for the adversarial one, the classifier) was fitted on, and the rate it gives on the
  unseen images.

    python -m bench.calibration [--splits 1000]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.common import save  # noqa: E402
from models.detectors import DEFAULT_OUT  # noqa: E402
from models.image_classifier import DEFAULT_OUT as MODEL_OUT  # noqa: E402
from models.image_classifier import digits_splits  # noqa: E402
from seismo.detect import load_detector  # noqa: E402
from seismo.detect.calibration import conformal_threshold  # noqa: E402


def resplit_rates(unseen: np.ndarray, n_threshold: int, percentile: float, splits: int, seed: int = 0) -> np.ndarray:
    """The false-positive rate of a conformal threshold from `n_threshold` random scores of `unseen`, on the others."""
    rng = np.random.default_rng(seed)
    rates = np.empty(splits)
    for i in range(splits):
        order = rng.permutation(len(unseen))
        rates[i] = np.mean(unseen[order[n_threshold:]] > conformal_threshold(unseen[order[:n_threshold]], percentile))
    return rates


def measure(name: str, detector, train_scores: np.ndarray, calibration_scores: np.ndarray, test_scores: np.ndarray,
            splits: int) -> dict:
    percentile = float(detector.threshold_percentile)
    nominal = 1 - percentile / 100
    unseen = np.concatenate([calibration_scores, test_scores])
    report = detector.calibration or {}
    n_threshold = int(report.get("threshold_rows") or (2 * len(calibration_scores)) // 3)
    rates = resplit_rates(unseen, n_threshold, percentile, splits)
    old_threshold = float(np.percentile(train_scores, percentile))
    row = {
        "detector": name, "nominal_rate": round(nominal, 4),
        "shipped": {"threshold": detector.threshold, "test_rate": round(float(np.mean(test_scores > detector.threshold)), 4),
                    "test_images": len(test_scores), "config_measured_rate": report.get("measured_rate")},
        "conformal_expected": {"mean": round(float(rates.mean()), 4), "p5": round(float(np.quantile(rates, 0.05)), 4),
                               "p95": round(float(np.quantile(rates, 0.95)), 4), "threshold_images": n_threshold, "splits": splits},
        "training_threshold": {"threshold": old_threshold, "unseen_rate": round(float(np.mean(unseen > old_threshold)), 4),
                               "unseen_images": len(unseen)},
    }
    print(f"{name:>12}: nominal {nominal:.1%}; shipped threshold on test {row['shipped']['test_rate']:.1%}; conformal expected "
          f"{rates.mean():.1%} ({row['conformal_expected']['p5']:.1%}-{row['conformal_expected']['p95']:.1%}); "
          f"threshold from training images {row['training_threshold']['unseen_rate']:.1%}", flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=1000)
    args = parser.parse_args(argv)
    from seismo.embeddings.extract import embed

    parts = digits_splits(seed=0)
    rows = []
    outlier = load_detector(DEFAULT_OUT / "outlier")
    rows.append(measure("outlier (VAE)", outlier, *(outlier.score(x)[0] for x in (parts.x_train, parts.x_calibration, parts.x_test)),
                        splits=args.splits))
    adversarial = load_detector(DEFAULT_OUT / "adversarial")
    embedded = [embed(MODEL_OUT, x)[0] for x in (parts.x_train, parts.x_calibration, parts.x_test)]
    rows.append(measure("adversarial", adversarial, *(adversarial.score(e)[0] for e in embedded), splits=args.splits))
    save("calibration", {"detectors": rows, "command": "python -m bench.calibration"})


if __name__ == "__main__":
    main()
