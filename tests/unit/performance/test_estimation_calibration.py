"""Estimation calibrated on a labelled reference (as NannyML's CBPE does): a miscalibrated model's
estimated accuracy is biased without it, and within two points with it."""

import numpy as np
import pytest

from bench.cbpe_crosscheck import CorrelatedClasses
from seismo.performance.config import ConfigError, model_config
from seismo.performance.ledger import Rows
from seismo.performance.report import estimated
from seismo.stats.model_metrics import estimated_accuracy, estimated_binary_metrics, fit_calibrator

MODEL = CorrelatedClasses("naive_bayes")  # GaussianNB on correlated features: over-confident
gaussian_nb_scores = MODEL.scores


def test_isotonic_fit_matches_scikit_learn():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    x = np.round(rng.random(500), 2)  # ties, as confidences have
    y = (rng.random(500) < x**2).astype(float)
    ours = fit_calibrator(x, y)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(x, y)
    grid = np.linspace(-0.1, 1.1, 241)
    assert np.allclose(ours(grid), theirs.predict(grid), atol=1e-12)
    assert np.all(np.diff(ours.values) >= 0) and ours.rows == 500
    with pytest.raises(ValueError, match="at least two"):
        fit_calibrator(np.array([0.5]), np.array([1.0]))


def test_a_miscalibrated_models_estimate_is_unbiased_once_calibrated_on_the_reference():
    reference_scores, reference_truth = gaussian_nb_scores(4000, seed=1)
    calibrator = fit_calibrator(reference_scores.max(axis=1), (reference_scores.argmax(axis=1) == reference_truth).astype(float))
    raw_errors, calibrated_errors = [], []
    for chunk in range(10):
        scores, truth = gaussian_nb_scores(500, seed=100 + chunk)
        realized = float(np.mean(scores.argmax(axis=1) == truth))
        raw_errors.append(estimated_accuracy(scores) - realized)
        calibrated_errors.append(estimated_accuracy(scores, calibrator) - realized)
    assert np.mean(raw_errors) > 0.04  # over-confident: the raw estimate is too high on every chunk
    assert abs(np.mean(calibrated_errors)) < 0.015 and np.max(np.abs(calibrated_errors)) < 0.04


def test_binary_estimates_keep_the_models_predictions_and_take_calibrated_chances():
    rng = np.random.default_rng(2)
    raw = rng.random(20_000)
    truth = (rng.random(20_000) < raw**3).astype(float)  # the true chance of a positive is raw^3
    calibrator = fit_calibrator(raw, truth)
    scores = rng.random(5000)
    plain, calibrated = estimated_binary_metrics(scores, 0.5), estimated_binary_metrics(scores, 0.5, calibrator)
    expected_positive_rate = np.mean(scores**3)
    predicted_positive = scores >= 0.5
    expected_tp = np.sum(scores[predicted_positive] ** 3)
    assert calibrated["precision"] == pytest.approx(expected_tp / predicted_positive.sum(), abs=0.01)
    assert calibrated["recall"] == pytest.approx(expected_tp / (expected_positive_rate * len(scores)), abs=0.02)
    assert plain["precision"] > calibrated["precision"] + 0.1


def test_the_metrics_config_fits_the_map_from_its_estimation_reference(tmp_path):
    scores, truth = gaussian_nb_scores(2000, seed=3)
    np.savez(tmp_path / "validation.npz", scores=scores, truth=truth)
    config = model_config("nb", {"type": "multiclass-onehot", "estimation": {"reference": "validation.npz"}}, tmp_path)
    assert config.calibrator is not None and config.calibrator.rows == 2000
    seen = [tuple(row) for row in gaussian_nb_scores(400, seed=4)[0]]
    answer = estimated(config, seen, _no_rows(), 0.05)
    plain = estimated(model_config("nb", {"type": "multiclass-onehot"}), seen, _no_rows(), 0.05)
    assert answer["calibrated_on"] == 2000 and plain["calibrated_on"] is None and answer["accuracy"] < plain["accuracy"] - 0.03
    for doc, message in [({"type": "regression", "estimation": {"reference": "validation.npz"}}, "carry none"),
                         ({"type": "binary", "estimation": {"reference": "missing.npz"}}, "missing.npz"),
                         ({"type": "binary", "estimation": {"reference": "validation.npz", "extra": 1}}, "extra")]:
        with pytest.raises(ConfigError, match=message):
            model_config("nb", doc, tmp_path)


def _no_rows() -> Rows:
    empty = np.array([], dtype=np.float64)
    return Rows(predicted=empty, truth=empty, scores=[])
