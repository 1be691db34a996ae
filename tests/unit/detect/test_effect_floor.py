"""Practical significance: at windows of 100,000 a 0.02 SD shift is significant but must not alarm by
default; a 0.5 SD shift must. Each case also runs with the floor off, to show the floor is what decides."""

import json

import numpy as np
import pytest

from seismo.detect import ChiSquareDrift, ClassifierDrift, EmbeddingDrift, KSDrift, MMDDrift, load_detector, save_detector
from seismo.detect.effect import DEFAULT_EFFECT_FLOOR, ks_gap, projected_gap, total_variation

N = 100_000
rng = np.random.default_rng(0)
REFERENCE = rng.normal(size=(N, 1))


def shifted(sd: float, n: int = N, d: int = 1) -> np.ndarray:
    window = np.random.default_rng(int(sd * 1000) + d).normal(size=(n, d))
    window[:, 0] += sd
    return window


def test_ks_at_100000_rows_alarms_on_half_an_sd_and_not_on_two_hundredths():
    detector = KSDrift().fit(REFERENCE)
    small, large = detector.predict(shifted(0.02)), detector.predict(shifted(0.5))
    assert small.p_val < small.threshold and not small.is_drift and small.effect_size < DEFAULT_EFFECT_FLOOR  # real, too small to matter
    assert large.is_drift and large.effect_size == pytest.approx(0.197, abs=0.01)  # Phi(0.25) - Phi(-0.25)
    assert small.to_json()["effect_size"] == small.effect_size and small.to_json()["effect_floor"] == DEFAULT_EFFECT_FLOOR
    assert KSDrift(effect_floor=0).fit(REFERENCE).predict(shifted(0.02)).is_drift  # the p-value alone alarms


def test_embedding_drift_at_100000_rows_alarms_on_half_an_sd_and_not_on_two_hundredths():
    reference = np.random.default_rng(1).normal(size=(N, 4))
    make = lambda floor=DEFAULT_EFFECT_FLOOR: EmbeddingDrift(max_reference=N, n_draws=100, effect_floor=floor).fit(reference)  # noqa: E731
    detector = make()
    small, large = detector.predict(shifted(0.02, d=4)), detector.predict(shifted(0.5, d=4))
    assert small.p_val < 0.05 and not small.is_drift and small.effect_size < DEFAULT_EFFECT_FLOOR
    assert large.is_drift and large.effect_size == pytest.approx(0.197, abs=0.02)
    assert make(0).predict(shifted(0.02, d=4)).is_drift


def test_chi_squared_floor_is_on_the_category_shares():
    reference = np.random.default_rng(2).choice([0.0, 1.0], size=(N, 1))
    detector = ChiSquareDrift().fit(reference)
    drifted = lambda share: (np.random.default_rng(3).random((N, 1)) < share).astype(float)  # noqa: E731
    small, large = detector.predict(drifted(0.51)), detector.predict(drifted(0.7))
    assert small.p_val < 1e-4 and not small.is_drift and small.effect_size == pytest.approx(0.01, abs=0.004)
    assert large.is_drift and large.effect_size == pytest.approx(0.2, abs=0.01)
    assert ChiSquareDrift(effect_floor=0).fit(reference).predict(drifted(0.51)).is_drift


def test_mmd_and_classifier_carry_their_effect_and_the_floor_is_saved(tmp_path):
    reference = np.random.default_rng(4).normal(size=(400, 2))
    window = shifted(1.0, n=300, d=2)
    mmd = MMDDrift(n_permutations=50).fit(reference).predict(window)
    assert mmd.is_drift and mmd.effect_size == pytest.approx(np.sqrt(mmd.distance))
    classifier = ClassifierDrift(n_folds=3).fit(reference).predict(window)
    assert classifier.is_drift and classifier.effect_size == pytest.approx(2 * classifier.distance - 1)
    assert not MMDDrift(n_permutations=50, effect_floor=0.99).fit(reference).predict(window).is_drift
    save_detector(KSDrift(effect_floor=0.1).fit(reference), tmp_path / "ks")
    assert json.loads((tmp_path / "ks" / "config.json").read_text())["params"]["effect_floor"] == 0.1
    assert load_detector(tmp_path / "ks").effect_floor == 0.1
    with pytest.raises(ValueError, match="effect_floor"):
        KSDrift(effect_floor=1.5)


def test_the_effect_helpers_against_hand_values():
    assert total_variation([50, 50], [70, 30]) == pytest.approx(0.2)
    assert ks_gap(np.array([0.0, 1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0, 5.0])) == pytest.approx(0.5)
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert projected_gap(points, points + [10.0, 0.0]) == 1.0 and projected_gap(points, points) == 0.0
