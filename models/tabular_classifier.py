"""Train the example tabular model: a random forest on scikit-learn's wine data (13 features, 3 classes).

Ships with scikit-learn, so it trains offline in about a second. The explainer explains it beside the
image classifier; `seismo up` serves it as a second model server (`tabular-classifier`).

    python -m models.tabular_classifier [--out models/artifacts/tabular-classifier]

The folder holds `model.joblib`, `metadata.json` (name, framework, feature names, signature, held-out
accuracy), `reference.npy` (the training rows: the explainer's perturbation and SHAP background data)
and `heldout.npy` (rows the demo explains).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MODEL_NAME = "tabular-classifier"
DEFAULT_OUT = Path(__file__).resolve().parent / "artifacts" / MODEL_NAME


def train(out: Path, seed: int = 0) -> dict:
    import joblib
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    data = load_wine()
    x, y = data.data.astype(np.float32), data.target
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(0.75 * len(x))
    train_idx, test_idx = order[:split], order[split:]
    model = RandomForestClassifier(n_estimators=50, max_depth=5, random_state=seed).fit(x[train_idx], y[train_idx])
    accuracy = float((model.predict(x[test_idx]) == y[test_idx]).mean())
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "model.joblib")
    np.save(out / "reference.npy", x[train_idx])
    np.save(out / "heldout.npy", x[test_idx])
    metadata = {
        "name": MODEL_NAME, "version": "1", "framework": "sklearn", "file": "model.joblib",
        "training_data": "scikit-learn load_wine, 75/25 seeded split",
        "feature_names": list(data.feature_names), "class_names": [str(c) for c in data.target_names],
        "inputs": [{"name": "input_1", "datatype": "FP32", "shape": [-1, x.shape[1]]}],
        "outputs": [{"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]}],
        "heldout_accuracy": round(accuracy, 4),
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"trained {MODEL_NAME}: held-out accuracy {accuracy:.3f}, saved to {out}")
    return metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train(args.out, args.seed)


if __name__ == "__main__":
    main()
