"""Failure modes produced on purpose, with known answers: the diagnosis's scenario tests and benchmark.

Production traffic for the example tabular model (the wine classifier) is drawn from a per-class
Gaussian fitted on scikit-learn's wine data (fresh instances, the model scores about as on its
held-out split). Each scenario is a timeline of predictions with ground truth:

- `healthy`: that traffic throughout.
- `concept_drift`: from half-way, the task changes: 60 % of class-1 wines are now labelled class 2
  (P(y|x) moved, the inputs did not).
- `data_drift`: from half-way, 60 % of the traffic is a new sub-population the model never saw
  (flavanoids, colour intensity and proline 2.5 standard deviations lower); labels keep their meaning.
- `training_serving_skew`: from the start, the serving pipeline sends proline in thousands and colour
  intensity in tenths (a unit mismatch between training and serving).
- `upstream_cascade`: colour intensity and proline come from an upstream model (`wine-assay`, a
  regression on a noisy lab reading). Half-way it is upgraded to version 2: three times more accurate
  on its own terms, but it reports colour normalised to [0, 1] and proline in g/L. The wine model's
  requests name their upstream prediction (lineage), and the wine model regresses. An assay request
  holds two instances (the colour and the proline reading), one predicted value each; its feedback is
  its own truth (the lab values in the units it reports), so its own error compares before and after.
- `no_ground_truth`: healthy traffic with almost no feedback.

`replay_into(scenario, store, tracker)` writes the predictions as the logger would (request and
response events folded into records) and the feedback as the metrics server receives it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from seismo.protocol.feedback import parse_feedback
from seismo.protocol.types import KSERVE_REQUEST, KSERVE_RESPONSE, EventKind
from seismo.store import RecordStore, RecordUpdate

SCENARIOS = ("healthy", "concept_drift", "data_drift", "training_serving_skew", "upstream_cascade", "no_ground_truth")
MODEL = "tabular-classifier"
UPSTREAM = "wine-assay"
UPSTREAMS = {UPSTREAM, "scan-gain"}
"""The scenarios' upstream regressions (this one and the image scenarios' scanner-gain model)."""
COLOR, FLAVANOIDS, PROLINE = 9, 6, 12


@dataclass
class Prediction:
    prediction_id: str
    model: str
    version: str
    at: float
    inputs: np.ndarray
    outputs: np.ndarray
    truth: Any | None
    parent_id: str | None = None
    embedding: np.ndarray | None = None
    """The response's embedding (one row per instance), for a model the diagnosis compares by embedding."""
    embedding_version: str | None = None


@dataclass
class Scenario:
    name: str
    expected: str
    predictions: list[Prediction] = field(default_factory=list)


class WineWorld:
    """The data-generating process and the example model (trained artifacts from `make model`)."""

    def __init__(self, model_dir: Path):
        import joblib
        from sklearn.datasets import load_wine

        self.model = joblib.load(Path(model_dir) / "model.joblib")
        data = load_wine()
        x, y = data.data, data.target
        self.means = [x[y == c].mean(axis=0) for c in range(3)]
        self.covariances = [np.cov(x[y == c].T) for c in range(3)]
        self.spread = x.std(axis=0)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        classes = rng.integers(0, 3, n)
        out = np.empty((n, len(self.spread)))
        for c in range(3):
            chosen = classes == c
            out[chosen] = rng.multivariate_normal(self.means[c], self.covariances[c], int(chosen.sum()))
        return np.maximum(out, 0.0), classes  # no wine has negative proline

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(inputs.astype(np.float32))


def build(world: WineWorld, name: str, seed: int, n: int = 800, start: float | None = None, labelled: float = 0.8) -> Scenario:
    """One run of a scenario: `n` predictions one second apart ending a minute ago, `labelled` of them with feedback."""
    start = time.time() - n - 60.0 if start is None else start
    rng = np.random.default_rng(seed)
    inputs, truth = world.draw(rng, n)
    half = np.arange(n) >= n // 2
    scenario = Scenario(name, name)
    assay_version = np.where(half, "2", "1")
    if name == "concept_drift":
        flip = half & (truth == 1) & (rng.random(n) < 0.6)
        truth = np.where(flip, 2, truth)
    elif name == "data_drift":
        new = half & (rng.random(n) < 0.6)
        for j in (FLAVANOIDS, COLOR, PROLINE):
            inputs[new, j] = np.maximum(inputs[new, j] - 2.5 * world.spread[j], 0.0)
    elif name == "training_serving_skew":
        inputs[:, PROLINE] /= 1000.0
        inputs[:, COLOR] /= 10.0
    if name == "upstream_cascade":  # the assay model measures colour and proline; v2 is sharper but in other units
        assayed = (COLOR, PROLINE)
        units_v2 = np.array([1 / 13.0, 1 / 1000.0])  # normalised colour, proline in g/L instead of mg/L
        truth_v1 = inputs[:, assayed]
        estimate_v1 = truth_v1 + rng.normal(0, 1, (n, 2)) * 0.15 * world.spread[list(assayed)]
        estimate_v2 = (truth_v1 + rng.normal(0, 1, (n, 2)) * 0.05 * world.spread[list(assayed)]) * units_v2
        for i in range(n):
            version = str(assay_version[i])
            value = estimate_v2[i] if version == "2" else estimate_v1[i]
            true_value = truth_v1[i] * units_v2 if version == "2" else truth_v1[i]
            scenario.predictions.append(Prediction(f"assay-{seed}-{i}", UPSTREAM, version, start + i - 0.5,
                                                   truth_v1[i] + rng.normal(0, 1, 2), value, true_value.tolist()))
            inputs[i, list(assayed)] = value
    probabilities = world.predict(inputs)
    keep = rng.random(n) < (labelled if name != "no_ground_truth" else 0.02)
    parents = {i: p.prediction_id for i, p in enumerate(scenario.predictions)} if name == "upstream_cascade" else {}
    for i in range(n):
        scenario.predictions.append(Prediction(f"{name}-{seed}-{i}-{uuid.uuid4().hex[:6]}", MODEL, "1", start + i, inputs[i],
                                               probabilities[i], int(truth[i]) if keep[i] else None, parents.get(i)))
    scenario.predictions.sort(key=lambda p: p.at)
    return scenario


def _tensor(name: str, rows: np.ndarray, one_value_per_instance: bool = False) -> dict:
    """A V2 tensor: one instance (a leading batch axis of 1), or one value per instance."""
    rows = np.asarray(rows, dtype=np.float64)
    rows = rows.reshape(-1, 1) if one_value_per_instance else rows.reshape(1, *rows.shape)
    return {"name": name, "datatype": "FP64", "shape": list(rows.shape), "data": np.round(rows, 5).reshape(-1).tolist()}


def _response(p: Prediction, one_value_per_instance: bool) -> bytes:
    outputs = [_tensor("probabilities", p.outputs, one_value_per_instance)]
    if p.embedding is not None:
        outputs.append(_tensor("embedding", p.embedding))
    return orjson.dumps({"outputs": outputs})


def replay_into(scenario: Scenario, store: RecordStore, tracker: Any, now: float | None = None) -> None:
    """The scenario's predictions as logged records, then every prediction seen and every truth sent."""
    from seismo.performance.tracker import Incoming

    updates = []
    for p in scenario.predictions:
        extensions = {"inferenceservicename": p.model, "modelversion": p.version, "requestid": p.prediction_id}
        if p.parent_id:
            extensions["parentid"] = p.parent_id
        if p.embedding is not None:  # as Seismo's model server names it on the response event
            extensions.update(embeddingoutput="embedding", embeddingversion=p.embedding_version or "")
        upstream = p.model in UPSTREAMS  # a regression: one reading in, one value out, per instance
        request = orjson.dumps({"inputs": [_tensor("input_1", p.inputs, upstream)]})
        updates.append(RecordUpdate(p.prediction_id, EventKind.REQUEST, KSERVE_REQUEST, p.model, p.at,
                                    request, "application/json", None, p.version, extensions))
        updates.append(RecordUpdate(p.prediction_id, EventKind.RESPONSE, KSERVE_RESPONSE, p.model, p.at + 0.01,
                                    _response(p, upstream), "application/json", 200, p.version, extensions))
    for start in range(0, len(updates), 500):
        store.apply(updates[start:start + 500])
    tracker.scan(now=now, settle=0.0, lookback=10 * 365 * 86400.0, limit=1000)
    feedback = [Incoming(parse_feedback({"prediction_id": p.prediction_id, "truth": p.truth if isinstance(p.truth, list) else [p.truth]}),
                         p.at + 30.0)
                for p in scenario.predictions if p.truth is not None and p.model in tracker.models]
    for start in range(0, len(feedback), 256):
        tracker.process(feedback[start:start + 256])


def wine_config() -> str:
    """The metrics config the wine scenarios are diagnosed under (absolute paths to `make model`'s artifacts)."""
    from seismo.topology import EXAMPLE_TABULAR_MODEL

    return f"""
models:
  {MODEL}:
    type: multiclass-onehot
    diagnosis:
      reference: {EXAMPLE_TABULAR_MODEL / "reference.npy"}
  {UPSTREAM}:
    type: regression            # the assay's own ground truth: the lab reading
"""


def diagnose_scenario(scenario: Scenario, config_text: str, folder: Path, model: str) -> dict:
    """Replay one run into a fresh SQLite record store and ledger under `folder`; `model`'s `all` cohort diagnosis."""
    from prometheus_client import CollectorRegistry

    from seismo.diagnosis.report import Diagnoser
    from seismo.performance.config import load_models
    from seismo.performance.ledger import Ledger
    from seismo.performance.prometheus import PerformanceMetrics
    from seismo.performance.tracker import Tracker
    from seismo.store import SQLiteRecordStore

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.yaml").write_text(config_text)
    models = load_models(folder / "metrics.yaml")
    run = uuid.uuid4().hex[:8]
    store, ledger = SQLiteRecordStore(folder / f"records-{run}.db"), Ledger(folder / f"ledger-{run}.db")
    try:
        tracker = Tracker(models, ledger, store, PerformanceMetrics(CollectorRegistry()), 86400, 3600, 0.05)
        replay_into(scenario, store, tracker)
        return Diagnoser(models, ledger, store).diagnose(model)["cohorts"]["all"]
    finally:
        store.close()
        ledger.close()
        for path in folder.glob(f"*-{run}.db*"):
            path.unlink()
