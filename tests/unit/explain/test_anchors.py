"""Anchors on models whose rule is known, called in-process (the service tests call them over HTTP)."""

from pathlib import Path

import numpy as np
import pytest

from seismo.explain.anchors import AnchorSearch, Budget, kl_lower, kl_upper
from seismo.explain.config import ExplainedModel
from seismo.explain.image import ImageSampler, segment
from seismo.explain.methods import explain_image_anchor, explain_kernel_shap, explain_tabular_anchor
from seismo.explain.tabular import Discretizer

RNG = np.random.default_rng(0)
REFERENCE = RNG.random((2000, 5)).astype(np.float32)


def rule(batch):
    """Class 1 exactly when feature 2 > 0.5, as one-hot scores."""
    positive = (np.asarray(batch)[:, 2] > 0.5).astype(float)
    return np.stack([1 - positive, positive], axis=1)


def tabular_model():
    return ExplainedModel("rule", "tabular", "http://unused", Path("unused.npy"), tuple(f"f{j}" for j in range(5)))


def test_kl_bounds_bracket_the_mean_and_shrink_with_samples():
    assert kl_lower(0.9, 1.0) < 0.9 < kl_upper(0.9, 1.0)
    assert kl_upper(0.9, 0.01) - kl_lower(0.9, 0.01) < kl_upper(0.9, 0.1) - kl_lower(0.9, 0.1)
    assert kl_upper(1.0, 0.1) == pytest.approx(1.0) and kl_lower(0.0, 0.1) == pytest.approx(0.0)


def test_discretizer_bins_by_reference_quartiles_and_reads_like_a_rule():
    d = Discretizer.fit(np.arange(100, dtype=float)[:, None], set(), 4)
    assert d.bins(np.array([[0.0], [30.0], [99.0]]))[:, 0].tolist() == [0, 1, 3]
    assert d.describe(0, 99.0, "age") == "age > 74.25" and d.describe(0, 30.0, "age") == "24.75 < age <= 49.5"


@pytest.mark.parametrize("x2", [0.9, 0.1])
def test_tabular_anchor_names_the_one_feature_the_model_uses(x2):
    instance = np.array([0.3, 0.7, x2, 0.2, 0.6], dtype=np.float32)
    budget = Budget(20000, 60)
    result = explain_tabular_anchor(tabular_model(), REFERENCE, instance, rule, budget, threshold=0.95, seed=1).to_json()
    assert result["anchor_feature_indices"] == [2], result["anchor"]
    assert result["precision"] >= 0.95 and result["anchor_found"] and not result["budget_exhausted"]
    assert 0.15 < result["coverage"] < 0.35  # one quartile bin of a uniform feature
    assert result["prediction"] == (1 if x2 > 0.5 else 0)
    assert result["model_calls"] == budget.calls <= 20000
    assert all((row[2] > 0.5) == (x2 > 0.5) for row in result["examples"]["covered_true"])


def test_call_budget_is_respected_and_the_best_so_far_comes_back_marked():
    instance = np.array([0.3, 0.7, 0.9, 0.2, 0.6], dtype=np.float32)
    budget = Budget(450, 60)
    result = explain_tabular_anchor(tabular_model(), REFERENCE, instance, rule, budget, threshold=0.95, seed=1).to_json()
    assert result["budget_exhausted"] and budget.calls <= 450 and "budget" in result["reason"]
    assert isinstance(result["anchor"], list)


def test_time_budget_is_respected():
    import time

    def slow(batch):
        time.sleep(0.05)
        return rule(batch)

    instance = np.array([0.3, 0.7, 0.9, 0.2, 0.6], dtype=np.float32)
    budget = Budget(10**6, 0.3)
    result = explain_tabular_anchor(tabular_model(), REFERENCE, instance, slow, budget, threshold=0.95, seed=1).to_json()
    assert result["budget_exhausted"] and "time limit" in result["reason"] and result["seconds"] < 1.0


def region_model(batch):
    """Looks only at the top-left 8x8 corner: class 1 when it is bright."""
    corner = np.asarray(batch)[:, :8, :8, :].mean(axis=(1, 2, 3))
    positive = (corner > 0.5).astype(float)
    return np.stack([1 - positive, positive], axis=1)


def region_image(rng, bright: bool) -> np.ndarray:
    image = rng.random((32, 32, 3)).astype(np.float32) * 0.06 + 0.47  # smooth, as photos are; white noise defeats SLIC
    image[:8, :8, :] = 0.95 if bright else 0.05
    return image


def test_image_anchor_covers_the_region_the_model_looks_at():
    rng = np.random.default_rng(3)
    background = np.stack([region_image(rng, bright=bool(i % 2)) for i in range(40)])
    model = ExplainedModel("region", "image", "http://unused", Path("unused.npy"), segmentation={"method": "grid", "size": 8}, background="reference")
    image = region_image(rng, bright=True)
    result = explain_image_anchor(model, background, image, region_model, Budget(20000, 60), threshold=0.95, seed=0).to_json()
    mask = np.array(result["anchor"]["mask"], dtype=bool)
    assert result["prediction"] == 1 and result["precision"] >= 0.95
    assert mask[:8, :8].all() and mask.sum() == 64  # exactly the corner's grid cell
    assert result["coverage"] == pytest.approx(0.5, abs=0.05)


def test_slic_superpixels_follow_the_bright_region():
    rng = np.random.default_rng(4)
    image = region_image(rng, bright=True)
    segments = segment(image, "slic", n_segments=16, compactness=10)
    background = np.stack([region_image(rng, bright=bool(i % 2)) for i in range(40)])
    model = ExplainedModel("region", "image", "http://unused", Path("unused.npy"), segmentation={"method": "slic", "n_segments": 16}, background="reference")
    result = explain_image_anchor(model, background, image, region_model, Budget(20000, 60), threshold=0.95, seed=0).to_json()
    mask = np.array(result["anchor"]["mask"], dtype=bool)
    assert segments.max() >= 4
    assert mask[:8, :8].mean() > 0.8  # the anchor covers the corner the model looks at
    assert mask.mean() < 0.5  # and not the whole image


def test_empty_anchor_when_the_prediction_never_changes():
    sampler = ImageSampler(np.zeros((8, 8)), np.zeros((8, 8), dtype=np.int64), lambda b: np.zeros(len(b)), 0, np.random.default_rng(0))
    result = AnchorSearch(sampler, batch_size=50).run()
    assert result.anchor == () and result.valid and result.precision == 1.0 and result.coverage == 1.0


def test_kernel_shap_attributes_the_prediction_to_feature_2():
    instance = np.array([0.3, 0.7, 0.9, 0.2, 0.6], dtype=np.float32)
    budget = Budget(20000, 60)
    result = explain_kernel_shap(tabular_model(), REFERENCE, instance, rule, budget, seed=0).to_json()
    values = np.array(result["shap_values"])  # [features, classes]
    assert values.shape == (5, 2)
    assert np.argmax(np.abs(values[:, 1])) == 2 and values[2, 1] > 0.3
    assert budget.calls <= 20000 and result["model_calls"] == budget.calls


def test_kernel_shap_sizes_itself_to_the_budget():
    instance = np.array([0.3, 0.7, 0.9, 0.2, 0.6], dtype=np.float32)
    result = explain_kernel_shap(tabular_model(), REFERENCE, instance, rule, Budget(100, 60), seed=0).to_json()
    assert result["budget_exhausted"] and result["shap_values"] is None and result["model_calls"] <= 100
    small = explain_kernel_shap(tabular_model(), REFERENCE, instance, rule, Budget(1000, 60), seed=0).to_json()
    assert small["budget_exhausted"] and small["nsamples"] < 2 * 5 + 2048 and small["model_calls"] <= 1000
