"""Runs alibi-detect on arrays handed over in an .npz file; prints JSON. Executed by `.venv-alibi/bin/python`.

alibi-detect 0.13 pins numpy<2 and TensorFlow<2.19, so it cannot share Seismo's environment: the
benchmarks and cross-check tests write the data, run this script under the other interpreter, and
compare. It imports nothing from Seismo. alibi-detect is under the Business Source License from
0.11.5 on: it is used here for comparison only, never by Seismo itself.

    python bench/alibi_runner.py TASK INPUT.npz
    python bench/alibi_runner.py many INPUT.npz   # several tasks at once (bench.common.run_alibi_many)
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402


def timed(fn, repeats):
    fn()  # warm-up (TensorFlow traces, caches fill)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, float(np.median(times))


def run(task: str, data: dict) -> dict:
    out = {}
    if task == "ks":
        from alibi_detect.cd import KSDrift

        det = KSDrift(data["x_ref"], p_val=0.05, correction=str(data.get("correction", "bonferroni")))
        pred, seconds = timed(lambda: det.predict(data["x"]), int(data.get("repeats", 5)))
        out = {"is_drift": int(pred["data"]["is_drift"]), "p_val": pred["data"]["p_val"].tolist(),
               "distance": pred["data"]["distance"].tolist(), "seconds": seconds}
    elif task == "chi2":
        from alibi_detect.cd import ChiSquareDrift

        det = ChiSquareDrift(data["x_ref"], p_val=0.05)
        pred = det.predict(data["x"])
        out = {"is_drift": int(pred["data"]["is_drift"]), "p_val": pred["data"]["p_val"].tolist()}
    elif task == "mmd":
        from alibi_detect.cd import MMDDrift

        det = MMDDrift(data["x_ref"].astype(np.float32), p_val=0.05, backend="tensorflow", n_permutations=int(data.get("n_permutations", 100)))
        pred, seconds = timed(lambda: det.predict(data["x"].astype(np.float32)), int(data.get("repeats", 1)))
        out = {"is_drift": int(pred["data"]["is_drift"]), "p_val": float(pred["data"]["p_val"]),
               "distance": float(pred["data"]["distance"]), "seconds": seconds}
    elif task == "mmd_windows":  # one MMDDrift (TensorFlow backend, 100 permutations) over many windows
        from alibi_detect.cd import MMDDrift

        det = MMDDrift(data["x_ref"].astype(np.float32), p_val=0.05, backend="tensorflow", n_permutations=100)
        windows = [w.astype(np.float32) for w in data["windows"]]
        started = time.perf_counter()
        out = {"is_drift": [int(det.predict(w)["data"]["is_drift"]) for w in windows],
               "seconds_per_window": (time.perf_counter() - started) / len(windows)}
    elif task == "ks_uae":
        from functools import partial

        import tensorflow as tf
        from alibi_detect.cd import KSDrift
        from alibi_detect.cd.tensorflow import UAE, preprocess_drift

        tf.random.set_seed(0)
        encoder = tf.keras.Sequential([
            tf.keras.layers.InputLayer(input_shape=data["x_ref"].shape[1:]),
            tf.keras.layers.Conv2D(64, 4, strides=2, padding="same", activation=tf.nn.relu),
            tf.keras.layers.Conv2D(128, 4, strides=2, padding="same", activation=tf.nn.relu),
            tf.keras.layers.Conv2D(512, 4, strides=2, padding="same", activation=tf.nn.relu),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(32),
        ])
        uae = UAE(encoder_net=encoder)
        det = KSDrift(data["x_ref"], p_val=0.05, preprocess_fn=partial(preprocess_drift, model=uae, batch_size=256))
        windows = data["windows"]
        windows = [w.astype(np.float32) for w in windows]  # float16 on the way in keeps the handoff file small
        started = time.perf_counter()
        out = {"is_drift": [int(det.predict(w)["data"]["is_drift"]) for w in windows],
               "seconds_per_window": (time.perf_counter() - started) / len(windows)}
    else:
        raise SystemExit(f"unknown task {task}")
    return out


def main():
    task, path = sys.argv[1], sys.argv[2]
    data = dict(np.load(path))
    if task == "many":  # several tasks in one interpreter (alibi-detect and TensorFlow import once): see bench.common.run_alibi_many
        plan = json.loads(str(data.pop("plan")))
        out = [run(item["task"], {key[len(prefix):]: value for key, value in data.items() if key.startswith(prefix := f"{i}__")})
               for i, item in enumerate(plan)]
    else:
        out = run(task, data)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
