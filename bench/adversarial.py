"""Adversarial detection on the example image classifier: FGSM and PGD at several L-inf budgets.

The attacks (seismo.demo.attacks, TensorFlow gradients) run against the classifier the model server
serves, on the 360 held-out digit images (never used to fit the classifier or the detector). For each
attack and budget: the accuracy under attack, the share of correctly classified images whose
prediction the attack flipped, and the detection rate of those flipped images at a 5 % false positive
rate on the clean held-out images (threshold: the 95th percentile of the clean images' scores), for

- Seismo's detector, `ClassMahalanobisAdversarial` on the penultimate embedding (the fitted example
  in models/artifacts/detectors/adversarial; Lee et al. 2018), and at its shipped threshold too;
- feature squeezing (Xu, Evans and Qi, NDSS 2018): the L1 distance between the softmax on the input
  and on its squeezed versions (2-bit depth and a 3x3 median filter), the larger of the two: the
  black-box alternative, shown for comparison.

    python -m bench.adversarial [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.common import save  # noqa: E402
from models.detectors import DEFAULT_OUT  # noqa: E402
from models.image_classifier import DEFAULT_OUT as MODEL_OUT  # noqa: E402
from models.image_classifier import EMBEDDING_LAYER, digits_as_cifar  # noqa: E402
from seismo.demo.attacks import ATTACKS  # noqa: E402
from seismo.detect import load_detector  # noqa: E402

BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
FPR = 0.05


def squeeze_scores(predict, x: np.ndarray) -> np.ndarray:
    from scipy.ndimage import median_filter

    p = predict(x)
    squeezed = (np.round(x * 3) / 3).astype(np.float32), median_filter(x, size=(1, 3, 3, 1)).astype(np.float32)
    return np.max([np.abs(p - predict(s)).sum(axis=1) for s in squeezed], axis=0)


def main() -> None:
    import keras

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    model = keras.models.load_model(MODEL_OUT / "model.keras")
    both = keras.Model(model.inputs, [model.get_layer(EMBEDDING_LAYER).output, model.output])
    detector = load_detector(DEFAULT_OUT / "adversarial")
    _, _, x, y = digits_as_cifar(seed=0)

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embeddings, probabilities = both.predict(images, batch_size=256, verbose=0)
        return detector.score(embeddings.reshape(len(images), -1))[0], probabilities

    predict = lambda images: model.predict(images, batch_size=256, verbose=0)  # noqa: E731
    clean_scores, clean_p = run(x)
    clean_squeeze = squeeze_scores(predict, x)
    right = clean_p.argmax(axis=1) == y
    thresholds = {"mahalanobis": float(np.quantile(clean_scores, 1 - FPR)), "squeezing": float(np.quantile(clean_squeeze, 1 - FPR))}
    rows = []
    print(f"{len(x)} held-out images, clean accuracy {right.mean():.3f}; the shipped threshold flags {(clean_scores > detector.threshold).mean():.3f} "
          f"of them", flush=True)
    print("attack  eps    accuracy  flipped  detected@5%FPR (Seismo)  at shipped threshold  feature squeezing", flush=True)
    for name, attack in ATTACKS.items():
        for eps in BUDGETS:
            start = time.perf_counter()
            adversarial = attack(model, x, y, eps) if name == "fgsm" else attack(model, x, y, eps, steps=args.steps)
            scores, p = run(adversarial)
            flipped = right & (p.argmax(axis=1) != y)
            squeeze = squeeze_scores(predict, adversarial)
            row = {"attack": name, "eps": eps, "accuracy": float((p.argmax(axis=1) == y).mean()), "flipped": float(flipped.mean()),
                   "n_flipped": int(flipped.sum()),
                   "detected": float((scores[flipped] > thresholds["mahalanobis"]).mean()) if flipped.any() else None,
                   "detected_at_shipped_threshold": float((scores[flipped] > detector.threshold).mean()) if flipped.any() else None,
                   "squeezing_detected": float((squeeze[flipped] > thresholds["squeezing"]).mean()) if flipped.any() else None,
                   "seconds": time.perf_counter() - start}
            rows.append(row)
            fmt = lambda v: "  n/a" if v is None else f"{v:5.3f}"  # noqa: E731
            print(f"{name:6s}  {eps:<5}  {row['accuracy']:8.3f}  {row['flipped']:7.3f}  {fmt(row['detected']):>23s}  "
                  f"{fmt(row['detected_at_shipped_threshold']):>20s}  {fmt(row['squeezing_detected']):>17s}", flush=True)
    save("adversarial", {"images": len(x), "clean_accuracy": float(right.mean()), "fpr": FPR, "thresholds": thresholds,
                         "shipped_threshold": detector.threshold, "shipped_threshold_clean_fpr": float((clean_scores > detector.threshold).mean()),
                         "pgd_steps": args.steps, "rows": rows})


if __name__ == "__main__":
    main()
