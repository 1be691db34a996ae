"""Model calls and seconds per explanation: Seismo's anchors beside alibi's on the same model and instance.

Real processes: the example image classifier and the example tabular model each behind `seismo serve
model`, and `seismo serve explainer`. Seismo's explainer is asked over HTTP; alibi's AnchorTabular /
AnchorImage (where `make alibi` built .venv-alibi) call the same model servers from a subprocess, with
their calls counted. Seconds include each side's HTTP transport (Seismo: V2 with flat tensors via
orjson; the alibi runner: V1 via the standard json module), so model calls are the fairer figure.

    python -m bench.explainer_speed [--rows 5] [--images 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import httpx
import numpy as np

from bench.common import alibi_available, run_alibi, save
from seismo.local import TABULAR_MODEL, LocalStack, free_ports
from seismo.topology import EXAMPLE_MODEL


def summary(runs: list[dict]) -> dict:
    return {"explanations": len(runs), "median_model_calls": statistics.median(r["model_calls"] for r in runs),
            "median_seconds": round(statistics.median(r["seconds"] for r in runs), 2),
            "median_precision": round(statistics.median(r["precision"] for r in runs), 3),
            "median_coverage": round(statistics.median(r["coverage"] for r in runs), 3),
            "budget_exhausted": sum(1 for r in runs if r.get("budget_exhausted"))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.95)
    args = parser.parse_args()
    rows = np.load(TABULAR_MODEL / "heldout.npy")[: args.rows]
    reference_rows = np.load(TABULAR_MODEL / "reference.npy")
    images = np.load(EXAMPLE_MODEL / "reference.npy")
    names = json.loads((TABULAR_MODEL / "metadata.json").read_text())["feature_names"]
    out: dict = {"threshold": args.threshold}
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp), ports=free_ports(("model", "tabular", "explainer")), services=("model", "tabular", "explainer"),
                           env={"SEISMO_EXPLAINER_MAX_SECONDS": "120", "SEISMO_EXPLAINER_MAX_MODEL_CALLS": "200000"})
        stack.start()
        try:
            def ours(model: str, instance: np.ndarray) -> dict:
                r = httpx.post(f"{stack.url('explainer')}/v1/models/{model}:explain",
                               json={"instances": [instance.tolist()], "parameters": {"threshold": args.threshold}}, timeout=300)
                r.raise_for_status()
                return r.json()

            tabular = [ours("tabular-classifier", row) for row in rows]
            image = [ours("image-classifier", images[i]) for i in range(args.images)]
            out["seismo"] = {"tabular": summary(tabular), "image": summary(image)}
            print("seismo", json.dumps(out["seismo"]), flush=True)
            if alibi_available():
                alibi_tabular = [run_alibi("anchor_tabular", runner="alibi_explain_runner.py", url=stack.url("tabular"), model="tabular-classifier",
                                           reference=reference_rows, instance=row, feature_names=np.array(names), threshold=args.threshold)
                                 for row in rows]
                alibi_image = [run_alibi("anchor_image", runner="alibi_explain_runner.py", url=stack.url("model"), model="image-classifier",
                                         reference=images[100:], instance=images[i], threshold=args.threshold, n_segments=16)
                               for i in range(args.images)]
                out["alibi"] = {"tabular": summary(alibi_tabular), "image": summary(alibi_image)}
                out["same_anchored_features_tabular"] = sum(
                    sorted(a["features"]) == o["anchor_feature_indices"] for a, o in zip(alibi_tabular, tabular))
                out["tabular_anchors"] = [{"seismo": o["anchor"], "seismo_precision": round(o["precision"], 3),
                                           "alibi": a["anchor"], "alibi_precision": round(a["precision"], 3)}
                                          for a, o in zip(alibi_tabular, tabular)]
                for kind in ("tabular", "image"):
                    out[f"model_calls_ratio_{kind}_seismo_vs_alibi"] = round(
                        out["seismo"][kind]["median_model_calls"] / max(out["alibi"][kind]["median_model_calls"], 1), 2)
        finally:
            stack.stop()
    save("explainer_speed", out)


if __name__ == "__main__":
    main()
