"""Seismo's label-free accuracy estimate against NannyML's CBPE on the same chunks.

Two classifiers on the same three-class data with correlated features: a logistic regression
(calibrated) and a Gaussian naive Bayes (over-confident: it assumes the features independent). For each,
a labelled reference of 4,000 rows and 10 analysis chunks of 500; per chunk the realized accuracy,
Seismo's estimate from the raw probabilities, Seismo's estimate calibrated on the reference
(`estimation.reference`, seismo.stats.model_metrics.fit_calibrator) and NannyML's CBPE fitted on the same
reference (where `make nannyml` installed it).

    python -m bench.cbpe_crosscheck
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench.common import save
from seismo.stats.model_metrics import estimated_accuracy, fit_calibrator

NANNYML_PYTHON = Path(__file__).resolve().parents[1] / ".venv-nannyml" / "bin" / "python"
CHUNK, CHUNKS, REFERENCE = 500, 10, 4000


class CorrelatedClasses:
    """Three classes along one noisy direction, seen through six near copies of it: a model that assumes
    independent features (GaussianNB) counts the same evidence six times and is over-confident."""

    def __init__(self, model: str = "naive_bayes", n_classes: int = 3):
        from sklearn.linear_model import LogisticRegression
        from sklearn.naive_bayes import GaussianNB

        self.n_classes = n_classes
        estimator = GaussianNB() if model == "naive_bayes" else LogisticRegression(max_iter=1000)
        self.model = estimator.fit(*self.draw(3000, np.random.default_rng(0)))

    def draw(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, self.n_classes, size)
        x = y[:, None] * 0.6 + rng.normal(size=(size, 1)) + 0.4 * rng.normal(size=(size, 6))
        return x, y

    def scores(self, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.draw(size, np.random.default_rng(seed))
        return self.model.predict_proba(x), y


def nannyml_estimates(reference: tuple[np.ndarray, np.ndarray], analysis: tuple[np.ndarray, np.ndarray]) -> dict | None:
    if not NANNYML_PYTHON.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, reference_scores=reference[0], reference_truth=reference[1], analysis_scores=analysis[0],
                 analysis_truth=analysis[1], chunk_size=CHUNK)
        out = subprocess.run([str(NANNYML_PYTHON), str(Path(__file__).with_name("nannyml_runner.py")), str(path)],
                             capture_output=True, text=True, timeout=600, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = {}
    for name in ("logistic_regression", "naive_bayes"):
        world = CorrelatedClasses(name)
        reference = world.scores(REFERENCE, seed=1)
        calibrator = fit_calibrator(reference[0].max(axis=1), (reference[0].argmax(axis=1) == reference[1]).astype(float))
        chunks = [world.scores(CHUNK, seed=100 + i) for i in range(CHUNKS)]
        realized = [float(np.mean(s.argmax(axis=1) == t)) for s, t in chunks]
        raw = [estimated_accuracy(s) for s, _ in chunks]
        calibrated = [estimated_accuracy(s, calibrator) for s, _ in chunks]
        theirs = nannyml_estimates(reference, (np.concatenate([s for s, _ in chunks]), np.concatenate([t for _, t in chunks])))
        row: dict = {"realized": realized, "seismo_raw": raw, "seismo_calibrated": calibrated,
                     "seismo_raw_mean_error": float(np.mean(np.subtract(raw, realized))),
                     "seismo_calibrated_mean_abs_error": float(np.mean(np.abs(np.subtract(calibrated, realized))))}
        line = (f"{name:20} realized {np.mean(realized):.3f}; Seismo raw error {row['seismo_raw_mean_error']:+.3f}; calibrated "
                f"mean |error| {row['seismo_calibrated_mean_abs_error']:.3f}")
        if theirs is not None:
            row["nannyml"] = theirs["estimated"]
            row["nannyml_version"] = theirs["nannyml"]
            row["nannyml_mean_abs_error"] = float(np.mean(np.abs(np.subtract(theirs["estimated"], realized))))
            row["max_abs_difference_calibrated_vs_nannyml"] = float(np.max(np.abs(np.subtract(calibrated, theirs["estimated"]))))
            line += (f"; NannyML CBPE mean |error| {row['nannyml_mean_abs_error']:.3f}, largest chunk difference from Seismo's "
                     f"calibrated {row['max_abs_difference_calibrated_vs_nannyml']:.3f}")
        print(line, flush=True)
        rows[name] = row
    save("cbpe_crosscheck", {"command": "python -m bench.cbpe_crosscheck", "chunk": CHUNK, "reference": REFERENCE, "models": rows})


if __name__ == "__main__":
    main()
