"""Performance maths: exact numbers on hand-made sequences; the estimator where the truth is known."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from seismo.stats.model_metrics import (
    binary_metrics,
    calibration_error,
    classification_metrics,
    confusion_counts,
    estimated_accuracy,
    estimated_binary_metrics,
    regression_metrics,
)


def test_confusion_counts_follow_seldons_one_vs_rest_semantics():
    # predicted 0 truth 0; predicted 1 truth 0; predicted 2 truth 2; predicted 2 truth 1.
    counts = confusion_counts(np.array([0, 1, 2, 2]), np.array([0, 0, 2, 1]), 3)
    assert counts.tp.tolist() == [1, 0, 1]
    assert counts.fp.tolist() == [0, 1, 1]
    assert counts.fn.tolist() == [1, 1, 0]
    assert counts.tn.tolist() == [2, 2, 2]
    assert counts.n == 4


def test_multiclass_metrics_by_hand_and_against_scikit_learn():
    predicted, truth = np.array([0, 1, 2, 2, 1, 0]), np.array([0, 0, 2, 1, 1, 0])
    metrics = classification_metrics(confusion_counts(predicted, truth, 3))
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert metrics["per_class"]["recall"] == pytest.approx([2 / 3, 0.5, 1.0])
    assert metrics["precision"] == pytest.approx(precision_score(truth, predicted, average="macro"))
    assert metrics["recall"] == pytest.approx(recall_score(truth, predicted, average="macro"))
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    # specificity of class 0: TN / (TN + FP) = 3 / 3
    assert metrics["per_class"]["specificity"][0] == 1.0


def test_a_class_never_predicted_nor_seen_is_undefined_not_zero():
    metrics = classification_metrics(confusion_counts(np.array([0, 0]), np.array([0, 0]), 3))
    assert np.isnan(metrics["per_class"]["precision"][2]) and metrics["precision"] == 1.0


def test_binary_with_threshold():
    probability, truth = np.array([0.9, 0.6, 0.4, 0.2]), np.array([1, 0, 1, 0])
    m = binary_metrics(probability, truth, threshold=0.5)
    assert (m["accuracy"], m["precision"], m["recall"], m["specificity"]) == (0.5, 0.5, 0.5, 0.5)
    m = binary_metrics(probability, truth, threshold=0.3)  # 0.9, 0.6, 0.4 positive
    assert m["recall"] == 1.0 and m["precision"] == pytest.approx(2 / 3)


def test_regression_metrics_by_hand():
    m = regression_metrics(np.array([3.0, 5.0, 2.0]), np.array([2.0, 5.0, 4.0]))
    assert m["mae"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["mape"] == pytest.approx((0.5 + 0 + 0.5) / 3 * 100)
    assert np.isnan(regression_metrics(np.array([1.0]), np.array([0.0]))["mape"])


def test_estimated_accuracy_of_a_calibrated_model_is_within_a_few_points():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4) * 0.7, size=5000)
    truth = np.array([rng.choice(4, p=p) for p in probabilities])  # calibrated by construction
    realized = float((probabilities.argmax(axis=1) == truth).mean())
    assert abs(estimated_accuracy(probabilities) - realized) < 0.02
    assert calibration_error(probabilities, truth) < 0.03


def test_an_overconfident_model_is_flagged_by_the_calibration_check():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(4) * 0.7, size=5000)
    truth = np.array([rng.choice(4, p=p) for p in probabilities])
    sharpened = probabilities**4 / (probabilities**4).sum(axis=1, keepdims=True)  # same ranking, overconfident
    realized = float((sharpened.argmax(axis=1) == truth).mean())
    assert estimated_accuracy(sharpened) - realized > 0.1  # the estimate alone would mislead
    assert calibration_error(sharpened, truth) > 0.1


def test_estimated_binary_metrics_match_realized_on_calibrated_scores():
    rng = np.random.default_rng(2)
    probability = rng.beta(2, 2, size=20000)
    truth = (rng.uniform(size=20000) < probability).astype(int)
    estimated, realized = estimated_binary_metrics(probability), binary_metrics(probability, truth)
    for key in ("accuracy", "precision", "recall", "f1", "specificity"):
        assert abs(estimated[key] - realized[key]) < 0.02, key


def test_the_calibration_check_holds_its_false_alarm_rate_at_every_sample_size():
    """ECE > 0.05 flagged a perfectly calibrated model in 99 % of windows of 30 labelled rows (ECE is biased
    upward on small samples); the check now alarms in about 1 % at any size, and still on a miscalibrated model."""
    from seismo.performance.report import CALIBRATION_ALPHA
    from seismo.stats.model_metrics import calibration_test

    rng = np.random.default_rng(11)

    def window(n: int, overconfident: float = 0.0) -> tuple[float, float]:
        p = rng.dirichlet(np.ones(3) * 0.7, size=n)
        truth = np.array([rng.choice(3, p=row) for row in p])  # labels drawn from the model's own probabilities
        if overconfident:
            p = p ** (1 + overconfident)
            p /= p.sum(axis=1, keepdims=True)
            p = np.where(p == p.max(axis=1, keepdims=True), np.minimum(p + overconfident, 1.0), p)
        return calibration_test(p, truth)

    for n in (30, 100, 500):
        results = [window(n) for _ in range(100)]
        by_threshold = np.mean([ece > 0.05 for ece, _ in results])
        flagged = np.mean([ece > 0.05 and p < CALIBRATION_ALPHA for ece, p in results])
        assert flagged <= 0.04, (n, flagged)
        if n == 30:
            assert by_threshold > 0.8  # what the threshold alone did
    miscalibrated = [window(500, overconfident=0.3) for _ in range(20)]
    assert np.mean([ece > 0.05 and p < CALIBRATION_ALPHA for ece, p in miscalibrated]) >= 0.9
