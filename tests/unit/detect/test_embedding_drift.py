"""EmbeddingDrift on shifted Gaussian clouds, the versioning guard, save and load."""

import numpy as np
import pytest

from seismo.detect import EmbeddingDrift, EmbeddingDriftResult, load_detector, save_detector
from seismo.embeddings import EmbeddingVersionError

VERSION = "image-classifier/penultimate@1.2.3"


@pytest.fixture(scope="module")
def reference():
    return np.random.default_rng(0).normal(loc=1.0, size=(1000, 32))


@pytest.mark.parametrize("method", ["euclidean", "ks", "mmd", "whitened"])
def test_clean_windows_rarely_alarm_and_shifted_ones_do(reference, method):
    detector = EmbeddingDrift(method=method, version=VERSION).fit(reference)
    rng = np.random.default_rng(10)
    clean = [detector.predict(rng.normal(loc=1.0, size=(100, 32)), VERSION).is_drift for _ in range(40)]
    shifted = [detector.predict(rng.normal(loc=1.0, size=(100, 32)) + 0.15, VERSION).is_drift for _ in range(20)]
    assert sum(clean) <= 5  # 5 % false alarms expected: 2 of 40, with room for chance
    assert sum(shifted) >= 18


def test_whitened_sees_a_small_move_along_a_narrow_direction_the_euclidean_distance_misses():
    """A cloud 10 times wider in its first 4 directions than in the other 12: a window moved by 0.4 of a
    narrow direction's spread is lost in the wide directions' fluctuation for the plain centroid distance,
    and plain to the whitened one; clean windows stay at the nominal rate for both."""
    rng = np.random.default_rng(3)
    spread = np.r_[np.full(4, 10.0), np.ones(12)]
    reference = rng.normal(size=(800, 16)) * spread
    move = np.zeros(16)
    move[10] = 0.4
    caught = {}
    for method in ("euclidean", "whitened"):
        detector = EmbeddingDrift(method=method).fit(reference)
        clean = [detector.predict(rng.normal(size=(200, 16)) * spread).is_drift for _ in range(30)]
        caught[method] = sum(detector.predict(rng.normal(size=(200, 16)) * spread + move).is_drift for _ in range(20))
        assert sum(clean) <= 4, method
    assert caught["whitened"] >= 12 and caught["euclidean"] <= 3, caught


def test_euclidean_distance_and_p_value_of_a_known_shift(reference):
    detector = EmbeddingDrift(version=VERSION).fit(reference)
    window = reference[:200] + np.full(32, 0.5)  # centroid moves by 0.5 * sqrt(32) minus the sampling gap
    result = detector.predict(window, VERSION)
    expected = np.linalg.norm(window.mean(0) - reference.mean(0))
    assert result.euclidean_distance == pytest.approx(expected)
    assert result.distance == pytest.approx(expected)
    assert result.is_drift and result.p_val == pytest.approx(1 / (1 + detector.n_draws))
    assert result.distance_threshold < result.euclidean_distance


def test_scaled_production_cosine_zero_euclidean_not():
    rng = np.random.default_rng(3)
    reference = rng.normal(loc=2.0, size=(600, 16))
    detector = EmbeddingDrift(method="cosine").fit(reference)
    result = detector.predict(2.0 * detector.x_ref[:300] + 0.0)
    scaled_centroid = 2.0 * detector.x_ref[:300].mean(0)
    assert result.cosine_distance == pytest.approx(float(1 - scaled_centroid @ detector.x_ref.mean(0)
                                                        / np.linalg.norm(scaled_centroid) / np.linalg.norm(detector.x_ref.mean(0))))
    same_direction = detector.predict(3.0 * np.tile(detector.x_ref.mean(0), (50, 1)))
    assert same_direction.cosine_distance == pytest.approx(0.0, abs=1e-9)
    assert not same_direction.is_drift  # cosine cannot see a change of length
    assert same_direction.euclidean_distance == pytest.approx(2.0 * np.linalg.norm(detector.x_ref.mean(0)))


def test_a_new_cluster_shows_in_the_cluster_view():
    rng = np.random.default_rng(4)
    centres = rng.normal(scale=8.0, size=(4, 8))
    reference = np.concatenate([c + rng.normal(size=(200, 8)) for c in centres])
    detector = EmbeddingDrift(n_clusters=4).fit(reference)
    window = np.concatenate([centres[0] + rng.normal(size=(60, 8)), np.full(8, 30.0) + rng.normal(size=(60, 8))])
    result = detector.predict(window)
    assert result.cluster_p_val < 1e-6
    assert max(result.cluster_drift) > 0.3  # some reference cluster took the newcomers and is overgrown
    assert sum(result.cluster_shares) == pytest.approx(1.0)


def test_versioning_guard(reference):
    detector = EmbeddingDrift(version=VERSION).fit(reference)
    window = reference[:100]
    assert detector.predict(window, VERSION).version_note is None
    patch = detector.predict(window, "image-classifier/penultimate@1.2.9")
    assert "patch" in patch.version_note and patch.embedding_version.endswith("1.2.9")
    with pytest.raises(EmbeddingVersionError, match="another major version"):
        detector.predict(window, "image-classifier/penultimate@2.0.0")
    with pytest.raises(EmbeddingVersionError, match="another minor version.*allow_minor"):
        detector.predict(window, "image-classifier/penultimate@1.3.0")
    with pytest.raises(EmbeddingVersionError, match="another model or space"):
        detector.predict(window, "image-classifier/logits@1.2.3")
    with pytest.raises(EmbeddingVersionError, match="carry no version"):
        detector.predict(window, None)
    with pytest.raises(EmbeddingVersionError, match="MAJOR.MINOR.PATCH"):
        detector.predict(window, "image-classifier@1.2")
    lenient = EmbeddingDrift(version=VERSION, allow_minor=True).fit(reference)
    assert "minor" in lenient.predict(window, "image-classifier/penultimate@1.3.0").version_note


def test_save_and_load_keep_version_and_results(tmp_path, reference):
    detector = EmbeddingDrift(method="ks", version=VERSION, n_draws=100).fit(reference)
    window = reference[:150] + 0.05
    before = detector.predict(window, VERSION)
    loaded = load_detector(save_detector(detector, tmp_path / "emb"))
    assert isinstance(loaded, EmbeddingDrift) and loaded.version == VERSION
    after = loaded.predict(window, VERSION)
    assert isinstance(after, EmbeddingDriftResult)
    assert after.euclidean_distance == pytest.approx(before.euclidean_distance)
    assert after.to_json()["reference_version"] == VERSION


def test_bad_settings_and_inputs(reference):
    with pytest.raises(ValueError, match="method must be one of"):
        EmbeddingDrift(method="hyperbox")
    with pytest.raises(EmbeddingVersionError):
        EmbeddingDrift(version="nope")
    detector = EmbeddingDrift().fit(reference)
    with pytest.raises(ValueError, match="shape"):
        detector.predict(np.zeros((10, 31)))


def test_mmd_samples_the_reference_whatever_its_order():
    """MMD tested against the first 500 rows in the caller's order: a reference stored cluster by cluster
    gave a false alarm on every clean window."""
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 4, size=(6, 16))
    rows = np.concatenate([c + rng.normal(size=(300, 16)) for c in centres])  # 1,800 x 16, cluster by cluster
    detector = EmbeddingDrift(method="mmd", n_permutations=50, seed=0).fit(rows)
    clean = [detector.predict(centres[rng.integers(6, size=100)] + rng.normal(size=(100, 16))) for _ in range(10)]
    assert sum(r.is_drift for r in clean) <= 2, [round(r.p_val, 3) for r in clean]
