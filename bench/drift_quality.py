"""Drift detection quality on the demo data: false alarms on clean windows, detection per corruption.

Windows of 500 instances drawn without replacement from the 899 digit images that are not in the
detector's reference, the example's 898 training images (its calibration and test parts; the service's default window of 1000 cannot be drawn without replacement from
this small data set, and windows drawn with replacement repeat images, which makes any two-sample test
over-reject), clean or corrupted (4 corruptions x 5 severities, seismo.demo.corruptions). Every window is
stored once as float16 (which holds the digits' k/16 pixel values exactly, unlike 8-bit quantisation,
which would shift every clean window against the reference), so Seismo's example detector (KSDrift on
a 32-d untrained autoencoder) and, where installed, alibi-detect's KSDrift with its UAE see
identical data.

    python -m bench.drift_quality [--clean 30] [--per-cell 3] [--window 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import alibi_available, run_alibi, save
from models.detectors import DEFAULT_OUT
from models.image_classifier import digits_splits
from seismo.demo.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from seismo.detect import load_detector


def quantise(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 1).astype(np.float16)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clean", type=int, default=40)
    parser.add_argument("--per-cell", type=int, default=3)
    parser.add_argument("--window", type=int, default=500)
    args = parser.parse_args()
    parts = digits_splits(seed=0)
    reference, pool = parts.x_train[:1000], np.concatenate([parts.x_calibration, parts.x_test])
    rng = np.random.default_rng(42)
    labels, windows = [], []
    for _ in range(args.clean):
        labels.append(("clean", 0))
        windows.append(quantise(pool[rng.choice(len(pool), args.window, replace=False)]))
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            for _ in range(args.per_cell):
                labels.append((name, severity))
                windows.append(quantise(corrupt(pool[rng.choice(len(pool), args.window, replace=False)], name, severity, seed=int(rng.integers(1 << 30)))))
    windows = np.stack(windows)
    detector = load_detector(DEFAULT_OUT / "drift")
    started = time.perf_counter()
    ours = [bool(detector.predict(w.astype(np.float32)).is_drift) for w in windows]
    seconds = (time.perf_counter() - started) / len(windows)
    theirs = None
    if alibi_available():
        theirs = [bool(v) for v in run_alibi("ks_uae", x_ref=reference, windows=windows)["is_drift"]]

    def rate(flags, name, severity):
        chosen = [f for f, (n, s) in zip(flags, labels) if n == name and s == severity]
        return round(float(np.mean(chosen)), 2)

    table = {name: {str(s): {"seismo": rate(ours, name, s), **({"alibi": rate(theirs, name, s)} if theirs else {})} for s in SEVERITIES}
             for name in CORRUPTIONS}
    save("drift_quality", {
        "window": args.window,
        "clean_windows": args.clean,
        "windows_per_corruption_and_severity": args.per_cell,
        "false_alarm_rate": {"seismo": rate(ours, "clean", 0), **({"alibi": rate(theirs, "clean", 0)} if theirs else {})},
        "detection_rate": table,
        "seismo_seconds_per_window": round(seconds, 3),
        "alibi": "KSDrift + UAE(32), alibi-detect 0.13" if theirs else "not installed (`make alibi`)",
    })


if __name__ == "__main__":
    main()
