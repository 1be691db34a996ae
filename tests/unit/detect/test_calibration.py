"""Split-conformal thresholds: the false-positive rate on clean data nobody fitted on is the nominal one.

The rule before (a percentile of the fitted points' own scores) is measured beside it on the same data,
so each test shows the gap the calibration closes and would fail on the old rule."""

import json

import numpy as np
import pytest

from bench.calibration import resplit_rates
from seismo.detect import ClassMahalanobisAdversarial, IsolationForestOutlier, MahalanobisOutlier, load_detector, save_detector
from seismo.detect.calibration import conformal_threshold
from seismo.topology import EXAMPLE_DETECTORS


def test_the_conformal_threshold_is_the_ceil_n_plus_1_q_th_smallest_score():
    assert conformal_threshold(np.arange(1.0, 101.0)[::-1], 95.0) == 96.0  # ceil(101 * 0.95) = 96
    assert conformal_threshold(np.arange(1.0, 20.0), 95.0) == 19.0  # ceil(20 * 0.95) = 19: the largest of 19
    assert conformal_threshold(np.arange(1.0, 10.0), 95.0) == 9.0  # too few for the rank: the largest


def fresh_rates(make, seeds, d=60, n=1000):
    """Mean share of 20,000 fresh heavy-tailed points flagged, over fits on `seeds` references of n x d."""
    rates = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        detector = make(seed).fit(rng.standard_t(5, size=(n, d)))
        rates.append(detector.predict(rng.standard_t(5, size=(20_000, d))).is_outlier.mean())
    return float(np.mean(rates))


def test_mahalanobis_flags_the_nominal_share_of_unseen_data_where_the_in_sample_threshold_did_not():
    # 60 features from 1,000 rows: a covariance fitted on a point makes it look typical, so in-sample scores run low.
    conformal = fresh_rates(lambda seed: MahalanobisOutlier(), range(10))
    in_sample = fresh_rates(lambda seed: MahalanobisOutlier(calibration_fraction=0), range(10))
    assert abs(conformal - 0.05) <= 0.015, conformal
    assert in_sample - 0.05 > 0.025, in_sample


def test_isolation_forest_flags_the_nominal_share_of_unseen_data():
    rate = fresh_rates(lambda seed: IsolationForestOutlier(n_estimators=50, seed=seed), range(4), d=8)
    assert abs(rate - 0.05) <= 0.015, rate


def test_the_report_travels_with_the_saved_detector_and_a_small_reference_says_why_it_is_in_sample(tmp_path):
    rng = np.random.default_rng(0)
    detector = MahalanobisOutlier().fit(rng.normal(size=(600, 5)))
    report = detector.calibration
    assert report["method"] == "split-conformal" and report["source"] == "held out of the reference"
    assert (report["threshold_rows"], report["check_rows"]) == (120, 60) and report["nominal_rate"] == 0.05
    assert 0 <= report["measured_rate"] <= 0.2
    save_detector(detector, tmp_path / "d")
    assert json.loads((tmp_path / "d" / "config.json").read_text())["calibration"] == report
    assert load_detector(tmp_path / "d").calibration == report
    small = MahalanobisOutlier().fit(rng.normal(size=(50, 5)))
    assert small.calibration["method"] == "in-sample" and "too few" in small.calibration["source"]
    given = MahalanobisOutlier().fit(rng.normal(size=(300, 5)), rng.normal(size=(90, 5)))
    assert given.calibration["source"] == "calibration set" and given.calibration["threshold_rows"] == 60
    with pytest.raises(ValueError, match="calibration_fraction"):
        MahalanobisOutlier(calibration_fraction=1.0)


def test_the_adversarial_threshold_comes_from_the_calibration_embeddings_when_given():
    rng = np.random.default_rng(1)
    means = rng.normal(scale=4, size=(3, 10))
    labels = rng.integers(0, 3, 900)
    train = means[labels] + rng.normal(size=(900, 10)) * 0.8  # the model's training inputs embed tighter
    unseen = means[rng.integers(0, 3, 600)] + rng.normal(size=(600, 10))
    fresh = means[rng.integers(0, 3, 20_000)] + rng.normal(size=(20_000, 10))
    with_calibration = ClassMahalanobisAdversarial().fit(train, labels, calibration=unseen)
    without = ClassMahalanobisAdversarial().fit(train, labels)
    assert with_calibration.calibration["source"] == "calibration set"
    assert abs(with_calibration.predict(fresh).is_outlier.mean() - 0.05) <= 0.015
    assert without.predict(fresh).is_outlier.mean() > 0.15  # what a threshold from training embeddings gives


def test_the_example_detectors_flag_the_nominal_share_of_images_the_classifier_never_saw(example_model):
    from models.image_classifier import digits_splits
    from seismo.embeddings.extract import embed

    parts = digits_splits(seed=0)
    vae = load_detector(EXAMPLE_DETECTORS / "outlier")
    adversarial = load_detector(EXAMPLE_DETECTORS / "adversarial")
    for detector in (vae, adversarial):
        assert detector.calibration["source"] == "calibration set"
    unseen_images = np.concatenate([parts.x_calibration, parts.x_test])
    for detector, unseen, seen in ((vae, unseen_images, parts.x_train),
                                   (adversarial, embed(example_model, unseen_images)[0], embed(example_model, parts.x_train)[0])):
        scores = detector.score(unseen)[0]
        assert abs(resplit_rates(scores, detector.calibration["threshold_rows"], 95.0, splits=300).mean() - 0.05) <= 0.015, detector.kind
        # The shipped threshold, one draw of the calibration images, on the test images alone (sampling error about 1.2 points).
        assert abs(np.mean(detector.score(parts.x_test if detector is vae else unseen[-len(parts.x_test):])[0] > detector.threshold)
                   - 0.05) <= 0.03, detector.kind
        in_sample_threshold = np.percentile(detector.score(seen)[0], 95)
        assert np.mean(scores > in_sample_threshold) > 0.065, detector.kind  # the rule before: too many alarms
