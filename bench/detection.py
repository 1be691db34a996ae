"""Detection on corruptions nobody tuned for: the default image checks per corruption, severity, window
and reference size, the tuned half and the held-out half reported apart.

The example classifier's embedding checks (the default since the input detectors went off): embedding
drift (EmbeddingDrift, euclidean centroid distance, with its effect floor) and, per image, the
class-Mahalanobis check whose split-conformal threshold flags 5 % of clean images. Two verdicts per
window: `embedding` (the drift test alone, the service's default) and `embedding + flagged share`
(either the drift test or a one-sided binomial test of the share of flagged images against the
calibrated 5 %, each at half the level: a family-wise error rate of `--alpha` by Bonferroni).

Corruptions: the tuned half is the four the defaults were chosen on (seismo/demo/corruptions.py:
gaussian noise, motion blur, brightness, pixelate); the held-out half is eleven more of CIFAR-10-C
(bench/held_out_corruptions.py), never used to choose anything. Each corruption at severities 1-5 is
applied once to the 360 test images (never seen by the classifier) and windows are drawn from them
without replacement; references are the 539 calibration images or a seeded 200 of them (a reference of
1,000 would need more unseen digits than there are).

    python -m bench.detection [--windows 50 100 200 300] [--references 200 539] [--clean 40] [--per-cell 5] [--method euclidean]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.common import save  # noqa: E402
from bench.held_out_corruptions import HELD_OUT, corrupt_held_out  # noqa: E402
from models.detectors import DEFAULT_OUT  # noqa: E402
from models.image_classifier import DEFAULT_OUT as MODEL_OUT  # noqa: E402
from models.image_classifier import digits_splits  # noqa: E402
from seismo.demo.corruptions import CORRUPTIONS, SEVERITIES, corrupt  # noqa: E402
from seismo.detect import EmbeddingDrift, load_detector  # noqa: E402

TUNED = tuple(CORRUPTIONS)
HELD = tuple(HELD_OUT)


def binomial_p(flagged: int, n: int, rate: float) -> float:
    """P(at least `flagged` of n) when each is flagged with probability `rate`."""
    from scipy.stats import binom

    return float(binom.sf(flagged - 1, n, rate))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--references", type=int, nargs="+", default=[200, 539])
    parser.add_argument("--clean", type=int, default=40, help="clean windows per window and reference size")
    parser.add_argument("--per-cell", type=int, default=5, help="windows per corruption, severity, window and reference size")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--method", default="euclidean", help="EmbeddingDrift's method (the default, or whitened, cosine, ...)")
    args = parser.parse_args(argv)
    from seismo.embeddings.extract import embed

    started = time.perf_counter()
    parts = digits_splits(seed=0)
    calibration, version = embed(MODEL_OUT, parts.x_calibration)
    adversarial = load_detector(DEFAULT_OUT / "adversarial")
    rate = 1 - adversarial.threshold_percentile / 100

    def pool(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embeddings = embed(MODEL_OUT, images)[0]
        return embeddings, adversarial.predict(embeddings).is_outlier

    pools = {("clean", 0): pool(parts.x_test)}
    for i, name in enumerate((*TUNED, *HELD)):
        for severity in SEVERITIES:
            seed = 1000 * i + severity
            images = corrupt(parts.x_test, name, severity, seed) if name in TUNED else corrupt_held_out(parts.x_test, name, severity, seed)
            pools[name, severity] = pool(images)
        print(f"  {name}: corrupted and embedded ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    results: dict = {}
    rng = np.random.default_rng(11)
    for n_ref in args.references:
        reference = calibration if n_ref >= len(calibration) else calibration[np.sort(rng.choice(len(calibration), n_ref, replace=False))]
        detector = EmbeddingDrift(method=args.method, version=version).fit(reference)
        for window in args.windows:
            cell: dict = {}
            for key, (embeddings, flags) in pools.items():
                draws = args.clean if key[0] == "clean" else args.per_cell
                alone = combined = 0
                for _ in range(draws):
                    rows = rng.choice(len(embeddings), window, replace=False)
                    result = detector.predict(embeddings[rows], version)
                    share_p = binomial_p(int(flags[rows].sum()), window, rate)
                    drift = bool(result.p_val < args.alpha / 2 and (result.effect_size or 0) >= result.effect_floor)
                    alone += result.is_drift
                    combined += drift or share_p < args.alpha / 2
                cell[f"{key[0]}@{key[1]}"] = {"embedding": alone / draws, "combined": combined / draws}
            results[f"reference {len(reference)}, window {window}"] = cell
            print(f"  reference {len(reference)}, window {window}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    def caught(cell: dict, names: tuple[str, ...], verdict: str, severities=(3, 4, 5)) -> float:
        return float(np.mean([cell[f"{n}@{s}"][verdict] for n in names for s in severities]))

    summary = {}
    print(f"\n{'reference, window':28} {'verdict':>10} {'clean':>7} {'tuned s>=3':>11} {'held-out s>=3':>14} {'held-out s1-2':>14}")
    for setting, cell in results.items():
        for verdict in ("embedding", "combined"):
            row = {"clean_false_alarms": cell["clean@0"][verdict], "tuned_caught_severity_3_plus": caught(cell, TUNED, verdict),
                   "held_out_caught_severity_3_plus": caught(cell, HELD, verdict),
                   "held_out_caught_severity_1_2": caught(cell, HELD, verdict, (1, 2))}
            summary[f"{setting}, {verdict}"] = row
            print(f"{setting:28} {verdict:>10} {row['clean_false_alarms']:>7.0%} {row['tuned_caught_severity_3_plus']:>11.0%} "
                  f"{row['held_out_caught_severity_3_plus']:>14.0%} {row['held_out_caught_severity_1_2']:>14.0%}")
    focus = results.get(f"reference {len(calibration)}, window 200")
    if focus is not None:
        print(f"\nreference {len(calibration)}, window 200: detection per corruption at severities 1-5 (embedding / combined)")
        for name in (*TUNED, *HELD):
            cells = [focus[f"{name}@{s}"] for s in SEVERITIES]
            print(f"  {'(held out) ' if name in HELD else ''}{name:20} " + "  ".join(f"{c['embedding']:.0%}/{c['combined']:.0%}" for c in cells))
    name = "detection" if args.method == "euclidean" else f"detection_{args.method}"
    save(name, {"command": "python -m bench.detection" + ("" if args.method == "euclidean" else f" --method {args.method}"), "method": args.method, "tuned": list(TUNED), "held_out": list(HELD), "alpha": args.alpha,
                       "summary": summary, "cells": results, "seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
