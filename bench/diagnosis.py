"""How often the diagnosis names the failure mode produced on purpose, for both example models.

Each scenario (bench.scenarios.wine: the wine model; bench.scenarios.digits: the
digits CNN, compared by embedding) runs `--runs` times with different seeds: 800 predictions, a
share of them labelled. Per model, scenario and label share: the runs that named the right verdict,
the wrong verdicts given instead, the median confidence and the seconds per run (replay into SQLite,
the metrics server's scan and join, and the diagnosis itself).

    python -m bench.diagnosis [--runs 10] [--labelled 0.8 0.2]
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.common import save  # noqa: E402
from bench.scenarios.digits import IMAGE_MODEL, DigitsWorld, build_image, digits_config  # noqa: E402
from bench.scenarios.wine import MODEL, SCENARIOS, WineWorld, build, diagnose_scenario, wine_config  # noqa: E402
from seismo.topology import EXAMPLE_MODEL, EXAMPLE_TABULAR_MODEL  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--labelled", type=float, nargs="+", default=[0.8, 0.2], help="shares of predictions that get feedback")
    args = parser.parse_args()
    worlds = {
        MODEL: (WineWorld(EXAMPLE_TABULAR_MODEL), build, wine_config()),
        IMAGE_MODEL: (DigitsWorld(EXAMPLE_MODEL), build_image, digits_config()),
    }
    rows = []
    print("model               labelled  scenario               right   other verdicts                 confidence  s/run", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for labelled in args.labelled:
            for model, (world, builder, config) in worlds.items():
                for name in SCENARIOS:
                    verdicts: collections.Counter[str] = collections.Counter()
                    confidences = []
                    started = time.perf_counter()
                    for seed in range(args.runs):
                        answer = diagnose_scenario(builder(world, name, seed, labelled=labelled), config, Path(folder), model)
                        verdicts[answer["verdict"]] += 1
                        confidences.append(answer["confidence"])
                    seconds = (time.perf_counter() - started) / args.runs
                    others = {v: c for v, c in verdicts.items() if v != name}
                    row = {"model": model, "labelled": labelled, "scenario": name, "runs": args.runs, "right": verdicts[name],
                           "others": others, "median_confidence": float(np.median(confidences)), "seconds_per_run": seconds}
                    rows.append(row)
                    other_text = ", ".join(f"{v} {c}" for v, c in sorted(others.items())) or "-"
                    print(f"{model:18s}  {labelled:8.2f}  {name:21s}  {verdicts[name]:2d}/{args.runs:<3d}  {other_text:29s}  "
                          f"{row['median_confidence']:10.2f}  {seconds:5.1f}", flush=True)
    save("diagnosis", {"predictions_per_run": 800, "rows": rows})


if __name__ == "__main__":
    main()
