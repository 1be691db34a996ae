"""Runs alibi's AnchorTabular / AnchorImage against a model server over HTTP; prints JSON.

Executed by `.venv-alibi/bin/python` (alibi 0.9.6 needs numpy<2, like alibi-detect). Both explainers
call the same model server Seismo's explainer calls, with V1 requests, so they explain the same model
and instance; calls are counted here. alibi is under the Business Source License from 0.9.5 on: used
for comparison only, never by Seismo itself. It imports nothing from Seismo.

    python bench/alibi_explain_runner.py anchor_tabular|anchor_image INPUT.npz
"""

import json
import os
import sys
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402


def remote_predictor(url, model, counter):
    def predict(batch):
        batch = np.asarray(batch, dtype=np.float32)
        outputs = []
        for start in range(0, len(batch), 256):
            chunk = batch[start:start + 256]
            request = urllib.request.Request(f"{url}/v1/models/{model}:predict", data=json.dumps({"instances": chunk.tolist()}).encode(),
                                             headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as answer:
                outputs.append(np.asarray(json.loads(answer.read())["predictions"]))
            counter["calls"] += len(chunk)
            counter["requests"] += 1
        scores = np.concatenate(outputs)
        return scores.argmax(axis=1) if scores.ndim == 2 else scores

    return predict


def main():
    task, path = sys.argv[1], sys.argv[2]
    data = dict(np.load(path, allow_pickle=False))
    counter = {"calls": 0, "requests": 0}
    predict = remote_predictor(str(data["url"]), str(data["model"]), counter)
    np.random.seed(int(data.get("seed", 0)))
    started = time.perf_counter()
    if task == "anchor_tabular":
        from alibi.explainers import AnchorTabular

        names = [str(n) for n in data["feature_names"]]
        explainer = AnchorTabular(predict, names, seed=int(data.get("seed", 0)))
        explainer.fit(data["reference"], disc_perc=(25, 50, 75))
        explanation = explainer.explain(data["instance"], threshold=float(data.get("threshold", 0.95)))
        out = {"anchor": list(explanation.anchor), "features": [int(f) for f in explanation.raw["feature"]]}
    elif task == "anchor_image":
        from alibi.explainers import AnchorImage

        image = data["instance"]
        kwargs = {"n_segments": int(data.get("n_segments", 16)), "compactness": 10, "start_label": 0}
        explainer = AnchorImage(predict, image.shape, segmentation_fn="slic", segmentation_kwargs=kwargs,
                                images_background=data["reference"][:100], seed=int(data.get("seed", 0)))
        explanation = explainer.explain(image, threshold=float(data.get("threshold", 0.95)), p_sample=0.5)
        anchor_pixels = np.asarray(explanation.anchor).any(axis=-1) if np.asarray(explanation.anchor).ndim == 3 else np.asarray(explanation.anchor) != 0
        out = {"anchor_pixels": int(anchor_pixels.sum())}
    else:
        raise SystemExit(f"unknown task {task}")
    out.update(precision=float(np.atleast_1d(explanation.precision)[0]), coverage=float(explanation.coverage),
               seconds=time.perf_counter() - started, model_calls=counter["calls"], model_requests=counter["requests"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
