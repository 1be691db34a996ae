"""Is the embedding drift test's false-alarm rate the nominal one, and why `bench.detection` sees more?

The default image check (`EmbeddingDrift`, centroid distance against the reference's own fluctuation,
with the effect floor) on data with no drift, in two designs:

- `fresh`: every reference and every window a new draw from one distribution (a mixture of 10
  Gaussian clusters in 64 dimensions, shaped like the example's penultimate-layer embeddings): the
  rate the method promises, free of any one draw;
- `pooled`: as `bench.detection` does on the digits, references drawn from one fixed pool of 539 and
  windows from another fixed pool of 360 of the same distribution, in several independent "worlds"
  (pairs of pools): the two pools' means differ by a fixed amount in each world, so one world's rate
  can sit well above or below the nominal one although the method is right on average.

    python -m bench.embedding_null [--references 100] [--windows 10] [--worlds 40] [--method euclidean]
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import save
from seismo.detect.embedding import EmbeddingDrift

DIMENSIONS, CLUSTERS = 64, 10
SIZES = [(200, 50), (200, 100), (200, 200), (539, 200)]


class Mixture:
    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        self.centres = rng.normal(size=(CLUSTERS, DIMENSIONS)) * 2.0
        self.scale = rng.uniform(0.5, 1.5, size=(1, DIMENSIONS))
        self.rng = rng

    def draw(self, n: int) -> np.ndarray:
        return self.centres[self.rng.integers(0, CLUSTERS, n)] + self.rng.normal(size=(n, DIMENSIONS)) * self.scale


def alarm_rate(reference: np.ndarray, windows: list[np.ndarray], seed: int, method: str) -> float:
    detector = EmbeddingDrift(method=method, seed=seed).fit(reference)
    return float(np.mean([detector.predict(w).is_drift for w in windows]))


def fresh(references: int, windows: int, method: str) -> dict:
    out = {}
    for n_ref, n_win in SIZES:
        mixture = Mixture(n_ref * 1000 + n_win)
        rates = [alarm_rate(mixture.draw(n_ref), [mixture.draw(n_win) for _ in range(windows)], seed, method) for seed in range(references)]
        out[f"ref{n_ref}_win{n_win}"] = round(float(np.mean(rates)), 3)
    return out


def pooled(worlds: int, references: int, windows: int, method: str) -> dict:
    out = {}
    for n_ref, n_win in SIZES:
        per_world = []
        for world in range(worlds):
            mixture = Mixture(10_000 + world)
            calibration, test = mixture.draw(539), mixture.draw(360)
            rng = np.random.default_rng(world)
            rates = [alarm_rate(calibration[rng.choice(539, n_ref, replace=False)],
                                [test[rng.choice(360, n_win, replace=False)] for _ in range(windows)], seed, method) for seed in range(references)]
            per_world.append(float(np.mean(rates)))
        out[f"ref{n_ref}_win{n_win}"] = {"mean": round(float(np.mean(per_world)), 3), "per_world": [round(r, 3) for r in per_world]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=100, help="references per size (fresh), per world (pooled: a fifth)")
    parser.add_argument("--windows", type=int, default=10, help="clean windows per reference")
    parser.add_argument("--worlds", type=int, default=40, help="independent pairs of pools (pooled)")
    parser.add_argument("--method", default="euclidean", help="EmbeddingDrift's method")
    args = parser.parse_args()
    result = {"nominal": 0.05, "method": args.method, "fresh": fresh(args.references, args.windows, args.method),
              "pooled": pooled(args.worlds, max(1, args.references // 5), args.windows, args.method)}
    save("embedding_null" if args.method == "euclidean" else f"embedding_null_{args.method}", result)


if __name__ == "__main__":
    main()
