"""Centroid distances and their null, on known geometry."""

import numpy as np
import pytest

from seismo.stats.centroid import cosine, empirical_p_value, euclidean, held_out_null, kmeans, nearest


def test_distances_by_hand():
    assert euclidean(np.array([0.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(5.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 1.0]), np.array([3.0, 3.0])) == pytest.approx(0.0, abs=1e-12)
    assert cosine(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == pytest.approx(2.0)


def test_scaled_production_moves_the_euclidean_centroid_not_the_cosine_one():
    rng = np.random.default_rng(0)
    reference = rng.normal(loc=2.0, size=(500, 16))
    production = 3.0 * reference  # every vector longer, none turned
    assert cosine(production.mean(0), reference.mean(0)) == pytest.approx(0.0, abs=1e-12)
    assert euclidean(production.mean(0), reference.mean(0)) == pytest.approx(2.0 * np.linalg.norm(reference.mean(0)))


def test_held_out_null_matches_the_centroid_standard_error():
    # For N(0, I_d) the distance between a window of n and the other N - n has mean ~ sqrt(d (1/n + 1/(N-n))).
    rng = np.random.default_rng(1)
    d, n_ref, n = 32, 2000, 100
    reference = rng.normal(size=(n_ref, d))
    null = held_out_null(reference, n, euclidean, 400, rng)
    expected = np.sqrt(d * (1 / n + 1 / (n_ref - n)))
    assert null.mean() == pytest.approx(expected, rel=0.05)
    # A window bigger than half the reference is scaled from half-size draws toward the same law.
    big = held_out_null(reference, 1500, euclidean, 200, rng)
    assert big.mean() == pytest.approx(np.sqrt(d * (1 / 1500 + 1 / n_ref)), rel=0.1)
    # Against the whole reference (what a drift test compares a window with): sqrt(1/n + 1/N), here 6 % narrower.
    small_ref = reference[:300]
    rest = held_out_null(small_ref, n, euclidean, 1000, np.random.default_rng(2))
    whole = held_out_null(small_ref, n, euclidean, 1000, np.random.default_rng(2), against_all=True)
    assert rest.mean() == pytest.approx(np.sqrt(d * (1 / n + 1 / 200)), rel=0.03)
    assert whole.mean() == pytest.approx(np.sqrt(d * (1 / n + 1 / 300)), rel=0.03)


def test_empirical_p_value_is_never_zero():
    null = np.arange(99, dtype=float)
    assert empirical_p_value(null, 1000.0) == pytest.approx(0.01)
    assert empirical_p_value(null, -1.0) == pytest.approx(1.0)


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([c + rng.normal(scale=0.3, size=(50, 2)) for c in centres])
    found = kmeans(points, 3, rng)
    assert sorted(np.bincount(nearest(points, found)).tolist()) == [50, 50, 50]
