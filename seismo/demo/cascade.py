"""The demo's cascade: two chained models, the upstream one upgraded, and Seismo names it.

`scan-gain` (a scikit-learn regression, served by a third Seismo model server) estimates each scan's
gain from five readings of a calibration patch; the demo divides the raw scan by the estimate and
sends it to the image classifier, naming the gain prediction as the classifier's parent
(`X-Seismo-Parent-Id`). Version 1 uses the first reading only. Version 2 uses all five: clearly more
accurate on its own terms, but trained on gains in percent. The upgrade is a redeploy (the server
restarts on version 2's artifact), the classifier's accuracy falls, and `GET /v1/diagnosis` walks the
lineage upstream and names scan-gain's version 2 and when it arrived.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from seismo.demo.clients import for_each_concurrently
from seismo.local import LocalStack, free_ports
from seismo.probes import wait_until

UPSTREAM = "scan-gain"
DOWNSTREAM = "image-classifier"
READINGS = 5
READING_NOISE = 0.25
"""Each calibration-patch reading is the gain times (1 + this much Gaussian noise)."""


def _readings(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    gain = rng.uniform(0.5, 2.0, n)
    return gain, gain[:, None] * (1.0 + rng.normal(0.0, READING_NOISE, (n, READINGS)))


def train_versions(folder: Path, seed: int = 11) -> dict[str, Path]:
    """scan-gain versions 1 and 2 as model artifacts the model server serves (joblib + metadata.json)."""
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    gain, readings = _readings(np.random.default_rng(seed), 2000)
    versions = {
        "1": (make_pipeline(ColumnTransformer([("first_reading", "passthrough", [0])]), LinearRegression()), gain,
              "the first calibration reading; gain as a factor"),
        "2": (LinearRegression(), 100.0 * gain, "all five calibration readings; gain in percent"),
    }
    out = {}
    for version, (model, target, note) in versions.items():
        path = folder / f"{UPSTREAM}-v{version}"
        path.mkdir(parents=True, exist_ok=True)
        joblib.dump(model.fit(readings, target), path / "model.joblib")
        (path / "metadata.json").write_text(json.dumps({
            "name": UPSTREAM, "version": version, "framework": "sklearn", "file": "model.joblib", "output": "predict",
            "training_data": f"synthetic scanner gains; {note}",
            "inputs": [{"name": "readings", "datatype": "FP64", "shape": [-1, READINGS]}],
            "outputs": [{"name": "gain", "datatype": "FP64", "shape": [-1]}]}, indent=2))
        out[version] = path
    return out


async def _chain(stack: LocalStack, images: np.ndarray, labels: np.ndarray, gain: np.ndarray, readings: np.ndarray,
                 concurrency: int = 8) -> list[dict[str, Any]]:
    """Each scan through scan-gain, then the corrected image through the classifier naming its parent."""
    results: list[dict[str, Any]] = []

    async def chain(client: httpx.AsyncClient, i: int) -> None:
        body = {"inputs": [{"name": "readings", "datatype": "FP64", "shape": [1, READINGS], "data": readings[i].tolist()}]}
        upstream = await client.post(f"{stack.url(UPSTREAM)}/v2/models/{UPSTREAM}/infer", json=body)
        upstream.raise_for_status()
        estimate = float(np.ravel(upstream.json()["outputs"][0]["data"])[0])
        raw = images[i] * gain[i]  # what the scanner delivered
        corrected = np.clip(raw / estimate if estimate > 0 else raw, 0.0, 1.0)
        parent = upstream.headers["x-prediction-id"]
        downstream = await client.post(f"{stack.url('model')}/v1/models/{DOWNSTREAM}:predict",
                                       json={"instances": [corrected.tolist()]}, headers={"X-Seismo-Parent-Id": parent})
        downstream.raise_for_status()
        results.append({"gain_id": parent, "estimate": estimate, "gain": float(gain[i]), "id": downstream.headers["x-prediction-id"],
                        "label": int(labels[i]), "predicted": int(np.argmax(downstream.json()["predictions"][0]))})

    await for_each_concurrently(len(images), chain, concurrency)
    return results


def _send_truth(stack: LocalStack, results: list[dict[str, Any]], percent: bool) -> None:
    """The digit each image shows, and the gain each scan really had in the units its scan-gain version reports."""
    with httpx.Client(timeout=30) as client:
        for r in results:
            for pid, truth in ((r["id"], r["label"]), (r["gain_id"], [r["gain"] * (100.0 if percent else 1.0)])):
                client.post(f"{stack.url('metrics')}/feedback", json={"prediction_id": pid, "truth": truth}).raise_for_status()


def _joined(stack: LocalStack, model: str, since: float) -> int:
    window = f"{int(time.time() - since) + 1}s"  # the performance report's window is a duration back from now
    doc = httpx.get(f"{stack.url('metrics')}/v1/performance", params={"model": model, "window": window}, timeout=10).json()
    return int(doc.get("realized", {}).get("n", 0) or 0)


def run_cascade_scenario(stack: LocalStack, images: np.ndarray, labels: np.ndarray, demo_dir: Path, per_phase: int, say) -> bool:
    """Phase 1 on scan-gain v1, the upgrade, phase 2 on v2, then the diagnosis. True if it names scan-gain v2."""
    rng = np.random.default_rng(5)
    versions = train_versions(demo_dir / "cascade")
    stack.ports[UPSTREAM] = free_ports((UPSTREAM,))[UPSTREAM]
    started = time.time()
    for phase, version in enumerate(("1", "2")):
        if phase:
            say(f"  upgrading {UPSTREAM} to version 2 (a redeploy: its server restarts on the new artifact) ...")
            stack.stop_service(UPSTREAM)
        stack.start_service(UPSTREAM, ["model", "--model-path", str(versions[version]), "--model-name", UPSTREAM])
        stack.wait_ready(UPSTREAM)
        chosen = rng.integers(0, len(images), per_phase)
        gain, readings = _readings(rng, per_phase)
        results = asyncio.run(_chain(stack, images[chosen], labels[chosen], gain, readings))
        _send_truth(stack, results, percent=version == "2")
        own_error = sum(abs(r["estimate"] - r["gain"] * (100.0 if version == "2" else 1.0)) for r in results) / \
            sum(r["gain"] * (100.0 if version == "2" else 1.0) for r in results)
        accuracy = np.mean([r["predicted"] == r["label"] for r in results])
        say(f"  {UPSTREAM} v{version}: {len(results)} scans; its own relative error {own_error:.1%}; "
            f"{DOWNSTREAM} accuracy on its corrected scans {accuracy:.1%}")
    expected = 2 * per_phase
    try:
        wait_until(lambda: _joined(stack, DOWNSTREAM, started) >= expected and _joined(stack, UPSTREAM, started) >= expected, 90, 0.5,
                   "the metrics server to join the chain's feedback")
    except TimeoutError as exc:
        say(f"  {exc}")
        return False
    since = f"{started:.3f}"  # epoch seconds: this scenario's traffic only, not the demo's earlier phases
    answer = httpx.get(f"{stack.url('metrics')}/v1/diagnosis", params={"model": DOWNSTREAM, "since": since}, timeout=60).json()
    verdict = answer["cohorts"]["all"]
    say(f"  GET /v1/diagnosis?model={DOWNSTREAM}&since={since}: {verdict['verdict']} (confidence {verdict['confidence']:.2f})")
    for reason in verdict.get("reasons", []):
        say(f"    - {reason}")
    culprit = verdict.get("culprit") or {}
    own = culprit.get("own_performance") or {}
    if culprit:
        say(f"  culprit: {culprit.get('model')} version {culprit.get('previous_version')} -> {culprit.get('version')} at {culprit.get('at')}"
            + (f"; its own {own['metric']} {own['before']:.3f} -> {own['after']:.3f}" if own else ""))
    return verdict["verdict"] == "upstream_cascade" and culprit.get("model") == UPSTREAM and culprit.get("version") == "2"
