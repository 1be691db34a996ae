import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from seismo.detect import (
    PCA,
    ChiSquareDrift,
    ClassifierDrift,
    DetectorConfigError,
    DetectorInputError,
    DriftResult,
    IsolationForestOutlier,
    KSDrift,
    MahalanobisOutlier,
    MMDDrift,
    OutlierResult,
    PredictionDrift,
    load_detector,
    save_detector,
)

rng = np.random.default_rng(0)
REF = rng.normal(size=(600, 6))
SAME = rng.normal(size=(300, 6))
SHIFTED = rng.normal(0.4, size=(300, 6))


@pytest.mark.parametrize("make", [lambda: KSDrift(), lambda: KSDrift(correction="fdr"), lambda: MMDDrift(n_permutations=50),
                                  lambda: ClassifierDrift(n_folds=3), lambda: KSDrift(preprocess=PCA(3))])
def test_drift_detectors_separate_same_from_shifted(make):
    detector = make().fit(REF)
    same, shifted = detector.predict(SAME), detector.predict(SHIFTED)
    assert isinstance(same, DriftResult) and not same.is_drift and same.p_val > detector.p_val / 6
    # A permutation test's p-value is at least 1 / (1 + permutations): the strongest evidence it can give.
    assert shifted.is_drift and shifted.p_val <= max(0.01, 1 / (1 + getattr(detector, "n_permutations", 0)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        same.is_drift = True  # frozen


def test_ks_result_fields_and_chi_square_new_category():
    result = KSDrift().fit(REF).predict(SHIFTED)
    assert result.feature_p_vals.shape == (6,) and result.feature_distances.shape == (6,)
    assert result.threshold == pytest.approx(0.05 / 6) and result.p_val == result.feature_p_vals.min()
    cats = rng.integers(0, 3, size=(500, 2))
    detector = ChiSquareDrift().fit(cats)
    assert not detector.predict(rng.integers(0, 3, size=(200, 2))).is_drift
    assert detector.predict(np.c_[rng.integers(0, 4, 200), rng.integers(0, 3, 200)]).is_drift  # category 3 is new


def test_prediction_drift_from_model_outputs():
    probs = rng.dirichlet(np.ones(5), 1000)
    detector = PredictionDrift().fit(probs)
    assert not detector.predict(rng.dirichlet(np.ones(5), 500)).is_drift
    skewed = rng.dirichlet(np.ones(5), 500)
    skewed[:, 0] += 2  # the model now predicts class 0 almost always
    result = detector.predict(skewed)
    assert result.is_drift and result.distance > 0.2 and result.threshold == 0.2 and result.p_val < 1e-6
    assert PredictionDrift(metric="js").fit(probs).threshold == 0.1


@pytest.mark.parametrize("make", [lambda: MahalanobisOutlier(), lambda: IsolationForestOutlier(n_estimators=50)])
def test_outlier_detectors_flag_far_points_and_about_5_percent_of_normal(make):
    detector = make().fit(REF)
    result = detector.predict(np.vstack([SAME, SAME[:10] + 8]))
    assert isinstance(result, OutlierResult)
    assert 0.01 < result.is_outlier[:300].mean() < 0.12
    assert result.is_outlier[300:].all()
    assert result.instance_score.shape == (310,)


def test_mahalanobis_golden_and_online_update_equals_refit():
    detector = MahalanobisOutlier().fit(np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
    # mean (1, 1), covariance diag(4/3, 4/3): the point (3, 1) is at squared distance 4 / (4/3) = 3.
    scores, features = detector.score(np.array([[3.0, 1.0]]))
    assert scores[0] == pytest.approx(3.0, rel=1e-5) and features[0] == pytest.approx([3.0, 0.0], rel=1e-5)
    a, b = rng.normal(size=(200, 3)), rng.normal(1, 2, size=(150, 3))
    online = MahalanobisOutlier(calibration_fraction=0).fit(a)  # every row in the fit, as in the refit
    online.update(b)
    full = MahalanobisOutlier(calibration_fraction=0).fit(np.vstack([a, b]))
    assert np.allclose(online.mean, full.mean) and np.allclose(online.comoment, full.comoment)


@pytest.mark.parametrize("make", [lambda: KSDrift(correction="fdr", preprocess=PCA(3)), lambda: MMDDrift(n_permutations=20, seed=3),
                                  lambda: ChiSquareDrift(), lambda: PredictionDrift(metric="js"), lambda: ClassifierDrift(n_folds=3),
                                  lambda: MahalanobisOutlier(), lambda: IsolationForestOutlier(n_estimators=20)])
def test_save_and_load_give_the_same_answers(tmp_path, make):
    data = np.abs(np.round(REF)) if "Chi" in repr(make.__code__.co_names) else REF
    detector = make().fit(data)
    save_detector(detector, tmp_path / "d")
    loaded = load_detector(tmp_path / "d")
    window = data[:200] + 0.2
    a, b = detector.predict(window), loaded.predict(window)
    if isinstance(a, DriftResult):
        if isinstance(detector, MMDDrift):  # permutations continue the same seeded stream on both
            assert (a.distance, a.is_drift) == (b.distance, b.is_drift)
        else:
            assert a.to_json() == b.to_json()
    else:
        assert np.array_equal(a.instance_score, b.instance_score) and a.threshold == b.threshold


def test_loading_refuses_unknown_fields_kinds_and_versions(tmp_path):
    save_detector(KSDrift().fit(REF), tmp_path / "d")
    config_file = tmp_path / "d" / "config.json"
    good = json.loads(config_file.read_text())
    for change, message in [
        (lambda c: c.update(extra=1), "unknown fields"),
        (lambda c: c["params"].update(window=5), "unknown KSDrift parameters"),
        (lambda c: c.update(detector="Nope"), "unknown detector 'Nope'"),
        (lambda c: c.update(format_version=2), "format_version 2"),
        (lambda c: c.update(preprocess={"kind": "fft"}), "unknown preprocessing 'fft'"),
    ]:
        config = json.loads(json.dumps(good))
        change(config)
        config_file.write_text(json.dumps(config))
        with pytest.raises(DetectorConfigError, match=message):
            load_detector(tmp_path / "d")
    with pytest.raises(DetectorConfigError, match="config.json is missing"):
        load_detector(tmp_path / "nothing")


@pytest.mark.parametrize("bad, message", [
    (np.ones((5, 7)), r"shape \[7\]; the reference's are \[6\]"),
    (np.full((5, 6), np.nan), "NaN or infinity"),
    (np.empty((0, 6)), "no instances"),
    ([["a"] * 6], "not numeric"),
])
def test_bad_input_is_a_clear_error(bad, message):
    for detector in (KSDrift().fit(REF), MahalanobisOutlier().fit(REF)):
        with pytest.raises(DetectorInputError, match=message):
            detector.predict(bad)


def test_options_are_validated():
    with pytest.raises(ValueError, match="correction must be one of"):
        KSDrift(correction="holm")
    with pytest.raises(ValueError, match="p_val must be in"):
        MMDDrift(p_val=2)
    with pytest.raises(RuntimeError, match="not fitted"):
        KSDrift().predict(SAME)


@pytest.mark.integration  # a fresh interpreter: what a service process imports
def test_statistics_and_non_neural_detectors_import_no_tensorflow():
    code = ("import sys, seismo.stats, seismo.detect; from seismo.detect import KSDrift, MMDDrift, MahalanobisOutlier, "
            "IsolationForestOutlier, ClassifierDrift, PredictionDrift, ChiSquareDrift; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_without_alibi_an_alibi_folder_is_a_clear_error(tmp_path):
    (tmp_path / "config.toml").write_text('name = "KSDrift"\n')
    with pytest.raises(DetectorConfigError, match="saved by alibi-detect, which is not installed"):
        load_detector(tmp_path)
