"""One explanation, without HTTP: the instance, a `predict` function that calls the model, a budget.

`predict(batch) -> outputs` is the only way to the model; every call is charged to the budget (one
model call = one instance predicted). Labels are the argmax of class scores, or the output itself
when the model answers one value per instance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seismo.explain.anchors import AnchorSearch, Budget, BudgetExhausted
from seismo.explain.config import ExplainedModel
from seismo.explain.image import ImageSampler, segment
from seismo.explain.tabular import TabularSampler

Predict = Callable[[np.ndarray], np.ndarray]
METHODS = ("anchors", "kernel_shap")


def labels_of(outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs.argmax(axis=1)
    return outputs.reshape(len(outputs))


def _charged(predict: Predict, budget: Budget) -> Predict:
    def call(batch: np.ndarray) -> np.ndarray:
        budget.charge(len(batch))
        return np.asarray(predict(batch))

    return call


def _label_json(label) -> int | float:
    return int(label) if float(label).is_integer() else float(label)


@dataclass(frozen=True)
class Explanation:
    """One explanation: what every method reports, plus the method's own fields in `details`
    (the anchor and its examples, or the SHAP values)."""

    method: str
    prediction: int | float | None
    model_calls: int
    model_requests: int
    budget_exhausted: bool
    seconds: float
    reason: str | None
    anchor_found: bool | None = None
    """Anchors only: whether an anchor reached the precision threshold."""
    precision: float | None = None
    coverage: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """ok, budget_exhausted or no_anchor: the label of seismo_explainer_explanations_total."""
        if self.budget_exhausted:
            return "budget_exhausted"
        return "no_anchor" if self.anchor_found is False else "ok"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "prediction": self.prediction, "model_calls": self.model_calls,
                               "model_requests": self.model_requests, "budget_exhausted": self.budget_exhausted,
                               "reason": self.reason, "seconds": self.seconds}
        if self.method == "anchors":
            out.update(precision=self.precision, coverage=self.coverage, anchor_found=self.anchor_found)
        return {**out, **self.details}


def _anchor_explanation(budget: Budget, result, prediction, details: dict[str, Any]) -> Explanation:
    return Explanation("anchors", _label_json(prediction), budget.calls, budget.requests, result.budget_exhausted,
                       round(budget.seconds, 3), result.reason, result.valid, result.precision, result.coverage, details)


def explain_tabular_anchor(model: ExplainedModel, reference: np.ndarray, instance: np.ndarray, predict: Predict, budget: Budget,
                           threshold: float, seed: int, batch_size: int = 100, beam_size: int = 2) -> Explanation:
    call = _charged(predict, budget)
    label = labels_of(call(instance[None]))[0]
    sampler = TabularSampler(instance, reference, set(model.categorical), lambda b: labels_of(call(b)), label,
                             np.random.default_rng(seed), model.bins)
    result = AnchorSearch(sampler, threshold=threshold, batch_size=batch_size, beam_size=beam_size).run()
    names = model.names_for(reference.shape[1])
    return _anchor_explanation(budget, result, label, {
        "anchor": sampler.predicates(result.anchor, names),
        "anchor_features": [names[j] for j in result.anchor],
        "anchor_feature_indices": list(result.anchor),
        "examples": {"covered_true": [r.tolist() for r in result.examples_true],
                     "covered_false": [r.tolist() for r in result.examples_false]},
        "feature_names": names,
    })


def explain_image_anchor(model: ExplainedModel, reference: np.ndarray, image: np.ndarray, predict: Predict, budget: Budget,
                         threshold: float, seed: int, batch_size: int = 100, beam_size: int = 1, epsilon: float = 0.2) -> Explanation:
    """Image defaults (beam 1, KL-LUCB tolerance 0.2) measured on the example classifier: a threshold-0.9
    anchor in about 8,000 model calls instead of 21,000 (beam 1, 0.1) or 55,000 (beam 2, 0.1)."""
    call = _charged(predict, budget)
    label = labels_of(call(image[None]))[0]
    options = {k: v for k, v in model.segmentation.items() if k != "method"}
    segments = segment(image, model.segmentation.get("method", "slic"), **options)
    rng = np.random.default_rng(seed)
    background = None  # superpixel means
    if model.background == "reference" and len(reference):
        background = reference[rng.choice(len(reference), min(100, len(reference)), replace=False)]
    sampler = ImageSampler(image, segments, lambda b: labels_of(call(b)), label, rng, background)
    result = AnchorSearch(sampler, threshold=threshold, batch_size=batch_size, beam_size=beam_size, epsilon=epsilon).run()
    return _anchor_explanation(budget, result, label, {
        "anchor": {"segments": list(result.anchor), "mask": sampler.mask(result.anchor).astype(np.uint8).tolist()},
        "segments": segments.tolist(),
        "examples": {"covered_true": [np.flatnonzero(m).tolist() for m in result.examples_true],
                     "covered_false": [np.flatnonzero(m).tolist() for m in result.examples_false]},
    })


def explain_kernel_shap(model: ExplainedModel, reference: np.ndarray, instance: np.ndarray, predict: Predict, budget: Budget,
                        seed: int, background_size: int = 20, nsamples: int | None = None) -> Explanation:
    """KernelSHAP (the `shap` package) with a k-means summary of the reference as background.

    It evaluates nsamples x background rows; nsamples is sized to the call budget up front, since
    shap cannot stop halfway and hand back partial values.
    """
    import shap

    call = _charged(predict, budget)
    outputs = np.asarray(call(instance[None]))
    n_features = reference.shape[1]
    k = min(background_size, len(reference))
    background = shap.kmeans(reference, k) if len(reference) > k else reference
    wanted = nsamples or 2 * n_features + 2048  # shap's own default when none is asked for
    affordable = (budget.max_calls - budget.calls) // k - 1
    nsamples = min(wanted, affordable)
    names = model.names_for(n_features)
    prediction = _label_json(labels_of(outputs)[0])
    details = {"feature_names": names, "background_size": k, "nsamples": max(nsamples, 0)}

    def shap_explanation(exhausted: bool, reason: str | None, values: list | None, expected: list | None) -> Explanation:
        return Explanation("kernel_shap", prediction, budget.calls, budget.requests, exhausted, round(budget.seconds, 3), reason,
                           details={**details, "shap_values": values, "expected_value": expected})

    if nsamples < n_features + 2:
        return shap_explanation(True, f"the call budget allows {max(nsamples, 0)} coalitions; KernelSHAP needs at least {n_features + 2}",
                                None, None)
    explainer = shap.KernelExplainer(lambda batch: np.asarray(call(np.asarray(batch, dtype=np.float32)), dtype=np.float64), background)
    np.random.seed(seed)  # shap samples coalitions with numpy's global generator
    try:
        values = np.asarray(explainer.shap_values(instance[None].astype(np.float64), nsamples=nsamples, silent=True))
        reason = None if nsamples == wanted else f"nsamples cut from {wanted} to {nsamples} by the call budget"
    except BudgetExhausted as exc:
        return shap_explanation(True, str(exc), None, None)
    values = values[0]  # [features] or [features, outputs]
    expected = np.atleast_1d(explainer.expected_value)
    return shap_explanation(nsamples < wanted, reason, values.tolist(), expected.tolist())
