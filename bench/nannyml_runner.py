"""Runs NannyML's CBPE on arrays handed over in an .npz file; prints JSON. Executed by `.venv-nannyml/bin/python`.

NannyML pulls pandas, LightGBM and plotly, so it has an environment of its own (`make nannyml`); the
benchmark writes the data, runs this script under that interpreter and compares. It imports nothing
from Seismo.

    python bench/nannyml_runner.py INPUT.npz

INPUT.npz: reference_scores [N, C], reference_truth [N], analysis_scores [M, C], analysis_truth [M],
chunk_size. Output: {"estimated": [...], "realized": [...]} accuracy per analysis chunk.
"""

import json
import os
import sys

import numpy as np

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # NannyML reports usage to a web service unless told not to; nothing leaves here


def frame(scores: np.ndarray, truth: np.ndarray):
    import pandas as pd

    columns = {f"p{k}": scores[:, k] for k in range(scores.shape[1])}
    return pd.DataFrame({**columns, "y_pred": scores.argmax(axis=1).astype(str), "y_true": truth.astype(int).astype(str)})


def main() -> None:
    import nannyml as nml

    data = dict(np.load(sys.argv[1]))
    n_classes = data["reference_scores"].shape[1]
    estimator = nml.CBPE(problem_type="classification_multiclass", y_pred_proba={str(k): f"p{k}" for k in range(n_classes)},
                         y_pred="y_pred", y_true="y_true", metrics=["accuracy"], chunk_size=int(data["chunk_size"]))
    estimator.fit(frame(data["reference_scores"], data["reference_truth"]))
    results = estimator.estimate(frame(data["analysis_scores"], data["analysis_truth"])).filter(period="analysis").to_df()
    print(json.dumps({"estimated": results[("accuracy", "value")].astype(float).tolist(),
                      "realized": results[("accuracy", "realized")].astype(float).tolist(),
                      "nannyml": nml.__version__}))


if __name__ == "__main__":
    main()
