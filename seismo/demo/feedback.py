"""The demo's ground-truth part: predictions in two cohorts, truth at about 90 % and then about 40 %.

Each prediction carries its cohort in the `X-Seismo-Cohort` header, which the model server logs as
the `cohort` extension; the truth is sent later by prediction id, half as `POST /feedback` and half
as Seldon feedback events through the broker, and the metrics server joins each with its stored
prediction. The truth is synthetic (it agrees with the model at the phase's rate), so the model's
own confidence, which drives the estimate, does not change: the calibration check is what says the
estimate no longer holds.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import numpy as np

from seismo.demo.clients import for_each_concurrently
from seismo.probes import wait_until
from seismo.protocol.types import SELDON_FEEDBACK

MODEL = "image-classifier"
COHORTS = ("web", "mobile")
# (label, share of truth that agrees with the model per cohort)
PHASES = (("phase 1: about 90 % right", {"web": 0.9, "mobile": 0.9}),
          ("phase 2: about 40 % right", {"web": 0.6, "mobile": 0.2}))


async def _predict(model_url: str, images: np.ndarray, concurrency: int = 8) -> list[tuple[str, str, int]]:
    """(prediction id, cohort, predicted class) per image; cohorts alternate."""
    results: list[tuple[str, str, int] | None] = [None] * len(images)

    async def predict(client: httpx.AsyncClient, i: int) -> None:
        cohort = COHORTS[i % 2]
        r = await client.post(f"{model_url}/v1/models/{MODEL}:predict", json={"instances": [images[i].tolist()]},
                              headers={"X-Seismo-Cohort": cohort})
        r.raise_for_status()
        results[i] = (r.headers["x-prediction-id"], cohort, int(np.argmax(r.json()["predictions"][0])))

    await for_each_concurrently(len(images), predict, concurrency)
    return [r for r in results if r is not None]


def _truths(predictions: list[tuple[str, str, int]], agreement: dict[str, float], rng: np.random.Generator) -> list[int]:
    """Truth that agrees with the model at the cohort's rate: the rest names another class."""
    out = []
    for _, cohort, predicted in predictions:
        if rng.random() < agreement[cohort]:
            out.append(predicted)
        else:
            out.append(int((predicted + rng.integers(1, 10)) % 10))
    return out


def _send_feedback(stack, predictions: list[tuple[str, str, int]], truths: list[int]) -> None:
    with httpx.Client(timeout=30) as client:
        for i, ((pid, _, _), truth) in enumerate(zip(predictions, truths)):
            if i % 2 == 0:
                r = client.post(f"{stack.url('metrics')}/feedback", json={"prediction_id": pid, "truth": truth})
            else:  # as Seldon Core's executor sends it: an event through the broker, the prediction in requestid
                headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "seismo-demo", "ce-type": SELDON_FEEDBACK,
                           "ce-requestid": pid, "ce-inferenceservicename": MODEL, "content-type": "application/json"}
                r = client.post(f"{stack.url('broker')}/", json={"truth": {"data": {"ndarray": [truth]}}}, headers=headers)
            r.raise_for_status()


def _report(stack, window: int, cohort: str = "all") -> dict:
    return httpx.get(f"{stack.url('metrics')}/v1/performance", params={"model": MODEL, "cohort": cohort, "window": str(window)},
                     timeout=10).json()


def _wait(predicate, timeout: float = 60.0) -> bool:
    try:
        wait_until(predicate, timeout, 0.25, "the metrics server to join the feedback")
        return True
    except TimeoutError:
        return False


def _fmt(value) -> str:
    return "   n/a" if value is None else f"{value:6.2f}"


def run_feedback_scenario(stack, images: np.ndarray, per_phase: int, say) -> bool:
    """Two phases of predictions with feedback; prints accuracy per phase and cohort. True if all joined."""
    rng = np.random.default_rng(7)
    say(f"  {'':28} {'overall':>7} {'web':>6} {'mobile':>6}   {'estimated':>9} {'calibration error':>17}")
    all_joined = True
    joined_before = 0
    for label, agreement in PHASES:
        chosen = images[rng.choice(len(images), per_phase, replace=False)]
        predictions = asyncio.run(_predict(stack.url("model"), chosen))
        _send_feedback(stack, predictions, _truths(predictions, agreement, rng))
        expected = joined_before + len(predictions)
        all_joined &= _wait(lambda target=expected: _report(stack, per_phase)["counts"]["joined"] >= target)
        joined_before = expected
        overall = _report(stack, per_phase)
        cohorts = {c: _report(stack, per_phase // 2, c)["realized"].get("accuracy") for c in COHORTS}
        estimated = overall["estimated"]  # on_labelled: the estimate for exactly the predictions with truth
        say(f"  {label:28} {_fmt(overall['realized'].get('accuracy')):>7} {_fmt(cohorts['web']):>6} {_fmt(cohorts['mobile']):>6}"
            f"   {_fmt(estimated.get('on_labelled', {}).get('accuracy')):>9} {_fmt(estimated.get('calibration', {}).get('error')):>17}")
    counts = _report(stack, per_phase)["counts"]
    say(f"  feedback: {counts['received']} received, {counts['joined']} joined by prediction id, {counts['pending_now']} still pending, "
        f"{counts['orphaned']} orphaned")
    say("  the estimate (from the model's own confidence) stays high because the images did not change; the calibration")
    say("  check on the labelled predictions is what flags it as unreliable once the truth disagrees")
    return all_joined
