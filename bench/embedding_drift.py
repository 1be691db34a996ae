"""Embedding drift quality: false alarms on clean windows, detection per image issue and severity.

The example classifier's penultimate-layer embeddings (64-d, `image-classifier/penultimate@1.0.1`)
of windows of 200 images drawn without replacement from the 360 test images, against the reference the
example EmbeddingDrift is fitted on: the 539 calibration images (neither set trained the classifier;
its training images embed closer to their class means, and a reference of them alarmed on clean
unseen windows). Issues:
the embeddings document's six (blur, spots, brighten, darken, rotate, crop) and objects not in the
training set (two digits in one image), at severities 1, 3 (moderate) and 5
(seismo.demo.corruptions.IMAGE_ISSUES). Methods: EmbeddingDrift's euclidean (the default), cosine,
ks, mmd and whitened, beside the pixel-space detector (the example KSDrift on a 32-d untrained autoencoder) and,
where `make alibi` installed it, alibi-detect's MMDDrift on the same embeddings.

    python -m bench.embedding_drift [--clean 40] [--per-cell 5] [--window 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import alibi_available, run_alibi, save
from models.detectors import DEFAULT_OUT
from models.image_classifier import DEFAULT_OUT as MODEL_OUT
from models.image_classifier import digits_splits
from seismo.demo.corruptions import IMAGE_ISSUES, image_issue
from seismo.detect import EmbeddingDrift, load_detector
from seismo.embeddings.extract import embed

METHODS = ("euclidean", "cosine", "ks", "mmd", "whitened")
SEVERITIES = (1, 3, 5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clean", type=int, default=40)
    parser.add_argument("--per-cell", type=int, default=5)
    parser.add_argument("--window", type=int, default=200)
    args = parser.parse_args()
    parts = digits_splits(seed=0)
    reference, pool = parts.x_calibration, parts.x_test
    rng = np.random.default_rng(7)
    labels, images = [], []
    for _ in range(args.clean):
        labels.append(("clean", 0))
        images.append(pool[rng.choice(len(pool), args.window, replace=False)])
    for name in IMAGE_ISSUES:
        for severity in SEVERITIES:
            for _ in range(args.per_cell):
                labels.append((name, severity))
                window = pool[rng.choice(len(pool), args.window, replace=False)]
                images.append(image_issue(window, name, severity, seed=int(rng.integers(1 << 30))))
    print(f"{len(images)} windows of {args.window}; embedding them ...", flush=True)
    ref_embeddings, version = embed(MODEL_OUT, reference)
    windows = [embed(MODEL_OUT, w)[0] for w in images]

    flags: dict[str, list[bool]] = {}
    seconds: dict[str, float] = {}
    for method in METHODS:
        detector = EmbeddingDrift(method=method, version=version).fit(ref_embeddings)
        detector.predict(windows[0], version)  # the null for this window size is computed once, then memoised
        started = time.perf_counter()
        flags[f"embedding {method}"] = [bool(detector.predict(w, version).is_drift) for w in windows]
        seconds[f"embedding {method}"] = (time.perf_counter() - started) / len(windows)
        print(f"  {method}: {seconds[f'embedding {method}'] * 1000:.1f} ms per window", flush=True)
    pixel = load_detector(DEFAULT_OUT / "drift")
    started = time.perf_counter()
    flags["pixels UAE+KS"] = [bool(pixel.predict(w).is_drift) for w in images]
    seconds["pixels UAE+KS"] = (time.perf_counter() - started) / len(images)
    if alibi_available():
        answer = run_alibi("mmd_windows", x_ref=ref_embeddings.astype(np.float32),
                           windows=np.stack(windows).astype(np.float32))
        flags["alibi-detect MMD (embeddings)"] = [bool(v) for v in answer["is_drift"]]
        seconds["alibi-detect MMD (embeddings)"] = answer["seconds_per_window"]

    def rate(name: str, issue: str, severity: int) -> float:
        picked = [f for f, (i, s) in zip(flags[name], labels) if i == issue and s == severity]
        return sum(picked) / len(picked)

    table = {name: {"clean_false_alarms": rate(name, "clean", 0),
                    **{f"{issue}@{s}": rate(name, issue, s) for issue in IMAGE_ISSUES for s in SEVERITIES},
                    "ms_per_window": round(seconds[name] * 1000, 2)} for name in flags}
    header = f"{'method':<32}{'clean':>7}" + "".join(f"{issue[:9]:>11}" for issue in IMAGE_ISSUES)
    print(f"\ndetection rate at severity 3 (moderate); clean = false alarm rate\n{header}")
    for name, row in table.items():
        print(f"{name:<32}{row['clean_false_alarms']:>7.0%}" + "".join(f"{row[f'{issue}@3']:>11.0%}" for issue in IMAGE_ISSUES))
    save("embedding_drift", {"windows": len(windows), "window": args.window, "version": version, "per_cell": args.per_cell,
                             "clean": args.clean, "results": table})


if __name__ == "__main__":
    main()
