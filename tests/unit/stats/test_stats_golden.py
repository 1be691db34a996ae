"""Golden values on tiny hand-made arrays, and equality with scipy on random ones."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from seismo.stats import (
    benjamini_hochberg,
    bonferroni,
    chi2_homogeneity,
    contingency_table,
    feature_distances,
    hellinger,
    histogram,
    jensen_shannon,
    kl,
    ks_2samp,
    median_heuristic_sigma,
    mmd2_unbiased_many,
    mmd_permutation_test,
    psi,
    quantile_edges,
    rbf_kernel,
    squared_distances,
    wasserstein,
)
from seismo.stats.classifier import domain_classifier_test


def test_ks_golden_values_by_hand():
    # ECDFs of [1,2,3] and [2,3,4] differ by 1/3 at 1 and 3, by 1/3 at 2 too: D = 1/3.
    statistic, _ = ks_2samp(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [3.0], [4.0]]))
    assert statistic[0] == pytest.approx(1 / 3)
    # Disjoint samples: D = 1. Identical samples (with ties): D = 0, p = 1.
    assert ks_2samp(np.array([[0.0], [1.0]]), np.array([[5.0], [6.0]]))[0][0] == 1.0
    same = np.array([[1.0], [1.0], [2.0]])
    d, p = ks_2samp(same, same)
    assert d[0] == 0.0 and p[0] == 1.0


@pytest.mark.parametrize("n, m, seed", [(1000, 1000, 0), (200, 350, 1), (57, 1000, 2)])
def test_ks_equals_scipy_asymp_including_ties(n, m, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 12))
    b = rng.normal(0.1, 1.1, size=(m, 12))
    a[:, :4], b[:, :4] = np.round(a[:, :4]), np.round(b[:, :4])  # heavy ties
    statistic, p_value = ks_2samp(a, b)
    for j in range(12):
        expected = sps.ks_2samp(a[:, j], b[:, j], method="asymp")
        assert statistic[j] == pytest.approx(expected.statistic, abs=1e-12)
        assert p_value[j] == pytest.approx(expected.pvalue, abs=1e-9)


@pytest.mark.parametrize("n, m", [(2, 2), (1, 5), (30, 7), (400, 400)])
def test_ks_equals_scipy_when_window_values_are_reference_values(n, m):
    """Ties only across the two samples (the search for 'reference points below' must not count them)."""
    rng = np.random.default_rng(n + m)
    a = rng.normal(size=(n, 5))
    b = a[rng.integers(0, n, size=m)] + np.where(rng.random((m, 5)) < 0.5, 0.0, rng.normal(size=(m, 5)))
    statistic, _ = ks_2samp(a, b)
    expected = [sps.ks_2samp(a[:, j], b[:, j], method="asymp").statistic for j in range(5)]
    assert statistic == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("case", ["cauchy", "constant", "outside", "tiny_range", "one_reference_value", "huge"])
def test_ks_value_index_edge_cases_equal_scipy(case):
    """The reference's value index (buckets over its 0.5-99.5 % range, tails in end buckets) must give
    scipy's statistic whatever the values: heavy tails, a constant feature, a window outside the range,
    a range below float32's resolution, a reference of one value, magnitudes float32 cannot hold."""
    rng = np.random.default_rng(len(case))
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(200, 4))
    if case == "cauchy":
        a, b = rng.standard_cauchy((300, 4)), rng.standard_cauchy((200, 4))
    elif case == "constant":
        a[:, 1], b[:, 1] = 2.0, np.where(rng.random(200) < 0.5, 2.0, 3.0)
    elif case == "outside":
        b = b * 10 + 50
    elif case == "tiny_range":
        a, b = 1.0 + a * 1e-12, 1.0 + b * 1e-12
    elif case == "one_reference_value":
        a = a[:1]
    elif case == "huge":
        a, b = a * 1e300, b * 1e300
    statistic, _ = ks_2samp(a, b)
    expected = [sps.ks_2samp(a[:, j], b[:, j], method="asymp").statistic for j in range(4)]
    assert statistic == pytest.approx(expected, abs=1e-12)


def test_ks_rejects_values_it_cannot_order():
    with pytest.raises(ValueError, match="NaN or infinity"):
        ks_2samp(np.zeros((3, 1)), np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match="NaN or infinity"):
        ks_2samp(np.array([[0.0], [np.inf]]), np.zeros((3, 1)))


def test_chi2_golden_and_equal_to_scipy():
    # 2x2 by hand with Yates: observed [[10, 20], [20, 10]], expected 15 everywhere, |o-e| = 5 -> 4.5.
    statistic, p = chi2_homogeneity(np.array([[10, 20], [20, 10]]))
    assert statistic == pytest.approx(4 * 4.5**2 / 15)
    rng = np.random.default_rng(0)
    for k in (2, 3, 6):
        table = contingency_table(rng.integers(0, k, 400), rng.integers(0, k, 250), np.arange(k))
        expected = sps.chi2_contingency(table)
        assert chi2_homogeneity(table)[0] == pytest.approx(expected.statistic, abs=1e-9)
        assert chi2_homogeneity(table)[1] == pytest.approx(expected.pvalue, abs=1e-9)
    # Categories seen in neither sample are dropped, a single category cannot differ.
    assert contingency_table(np.array([0, 0]), np.array([0, 1]), np.arange(4)).shape == (2, 2)
    assert chi2_homogeneity(np.array([[5], [7]])) == (0.0, 1.0)
    # A column empty in both rows (an embedding cluster neither sample fell in) is left out, not a NaN.
    assert chi2_homogeneity(np.array([[10, 0, 20], [20, 0, 10]])) == chi2_homogeneity(np.array([[10, 20], [20, 10]]))


def test_corrections():
    p = np.array([0.01, 0.02, 0.03, 0.5])
    assert bonferroni(p, 0.05) == (True, 0.0125)
    assert bonferroni(np.array([0.03, 0.5]), 0.05) == (False, 0.025)
    # BH lines for n=4, alpha=0.05: 0.0125, 0.025, 0.0375, 0.05; 0.03 < 0.0375 -> drift, threshold 0.0375.
    assert benjamini_hochberg(p, 0.05) == (True, pytest.approx(0.0375))
    assert benjamini_hochberg(np.array([0.2, 0.3]), 0.05)[0] is False


def test_binned_distances_golden():
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert psi(p, q) == pytest.approx(-0.25 * np.log(0.5) + 0.25 * np.log(1.5))
    assert kl(p, q) == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3))
    assert hellinger(p, p) == 0.0 and hellinger(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert jensen_shannon(p, q) == pytest.approx(np.sqrt(sps.entropy(p, (p + q) / 2) / 2 + sps.entropy(q, (p + q) / 2) / 2))
    # Quantile edges make the reference histogram flat; epsilon keeps empty bins finite.
    ref = np.arange(100.0)
    assert np.allclose(histogram(ref, quantile_edges(ref, 4), epsilon=0), 0.25)
    h = histogram(np.full(10, 1000.0), quantile_edges(ref, 4), epsilon=1e-4)
    assert h[-1] > 0.99 and (h > 0).all() and h.sum() == pytest.approx(1.0)


def test_wasserstein_equals_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=300), rng.exponential(size=200)
    assert wasserstein(a, b) == pytest.approx(sps.wasserstein_distance(a, b), abs=1e-12)
    assert wasserstein(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == pytest.approx(2.0)
    d = feature_distances(np.c_[a[:200], a[:200]], np.c_[b, b], "wasserstein")
    assert d[0] == d[1] == pytest.approx(sps.wasserstein_distance(a[:200], b))
    with pytest.raises(ValueError, match="metric must be one of"):
        feature_distances(np.c_[a], np.c_[b], "cosine")


def test_mmd_golden_and_permutation_test():
    # Two points each, kernel by hand: MMD^2_u = k(x1,x2) + k(y1,y2) - 2/4 * sum k(x,y).
    x, y = np.array([[0.0], [1.0]]), np.array([[3.0], [4.0]])
    kernel = rbf_kernel(squared_distances(np.r_[x, y], np.r_[x, y]), 1.0)
    by_hand = np.exp(-0.5) + np.exp(-0.5) - 0.5 * (np.exp(-4.5) + np.exp(-8) + np.exp(-2) + np.exp(-4.5))
    assert mmd2_unbiased_many(kernel, np.array([[1.0], [1.0], [0.0], [0.0]]))[0] == pytest.approx(by_hand)
    # Median heuristic: distances among [0, 1, 3] squared: 1, 9, 4 (each twice) -> median 4 -> sigma sqrt(2).
    assert median_heuristic_sigma(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(np.sqrt(2.0))
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 4))
    sigma = median_heuristic_sigma(ref)
    _, p_same, _ = mmd_permutation_test(ref, rng.normal(size=(200, 4)), sigma, 100, seed=1)
    _, p_shift, _ = mmd_permutation_test(ref, rng.normal(0.5, size=(200, 4)), sigma, 100, seed=1)
    assert p_same > 0.05 and p_shift == pytest.approx(1 / 101)  # every permutation below the observed: the least p there is
    again = mmd_permutation_test(ref, ref[:100] + 0.1, sigma, 50, seed=7)
    assert again == mmd_permutation_test(ref, ref[:100] + 0.1, sigma, 50, seed=7)  # seeded


def test_domain_classifier_auc_and_p_value():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 3))
    auc_same, p_same = domain_classifier_test(ref, rng.normal(size=(300, 3)))
    auc_shift, p_shift = domain_classifier_test(ref, rng.normal(1.0, size=(300, 3)))
    assert 0.4 < auc_same < 0.6 and p_same > 0.05
    assert auc_shift > 0.7 and p_shift < 1e-6


def test_jensen_shannon_takes_empty_bins_as_scipy_does():
    """0 log 0 is 0: an empty bin made the distance NaN, and a NaN distance never alarms."""
    from scipy.spatial.distance import jensenshannon

    from seismo.stats.distances import jensen_shannon, kl

    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q), abs=1e-12)  # 0.4645
    assert np.isfinite(kl(p, q)) and kl(p, q) == pytest.approx(np.log(2))


def test_prediction_drift_refuses_no_smoothing():
    """epsilon=0 made PSI and JS NaN on a never-predicted class, so a 50/50 -> 10/90 shift reported no drift."""
    from seismo.detect.drift import PredictionDrift

    with pytest.raises(ValueError, match="epsilon must be above 0"):
        PredictionDrift(epsilon=0)


def test_the_mmd_p_value_is_never_zero():
    """The observed split counts among the permutations, as the other tests' p-values add one."""
    from seismo.stats.mmd import mmd_permutation_test

    rng = np.random.default_rng(0)
    reference, shifted = rng.normal(size=(60, 3)), rng.normal(5.0, 1.0, size=(60, 3))
    _, p_value, _ = mmd_permutation_test(reference, shifted, sigma=1.0, n_permutations=50, seed=0)
    assert p_value == pytest.approx(1 / 51)


def test_categorical_features_get_a_bin_per_category():
    """A new category at 3 % hid inside a quantile bin (PSI 0.015); with its own bin it is a real shift."""
    from seismo.stats.distances import feature_distances, psi

    rng = np.random.default_rng(5)
    reference = rng.integers(0, 4, size=(4000, 1)).astype(float)
    sample = np.where(rng.random((1000, 1)) < 0.03, 4.0, rng.integers(0, 4, size=(1000, 1)))
    numeric = feature_distances(reference, sample, "psi")[0]
    categorical = feature_distances(reference, sample, "psi", categorical=[0])[0]
    assert numeric < 0.05 < 0.1 < categorical
    replaced = np.where(sample == 3.0, 7.0, sample)  # one category replaced entirely by an unseen one
    assert feature_distances(reference, replaced, "psi", categorical=[0])[0] > 1.0
    by_hand = [np.array([(x == c).mean() for c in range(5)]) + 1e-4 for x in (reference, sample)]
    assert categorical == pytest.approx(psi(*(h / h.sum() for h in by_hand)))  # one smoothed bin per category
    with pytest.raises(ValueError, match="categorical ones need a binned metric"):
        feature_distances(reference, sample, "wasserstein", categorical=[0])


def test_mmd_test_equals_the_pooled_float64_formula_on_its_permutations(monkeypatch):
    """MMDTest's sums (the reference's share computed once, float32 blocks, a'Ka and a'K1 only) give what
    the plain pooled kernel gives for the same permutations, in blocks smaller than the reference too."""
    import seismo.stats.mmd as mmd

    monkeypatch.setattr(mmd, "BLOCK_ROWS", 64)
    rng = np.random.default_rng(0)
    ref, window = rng.normal(size=(300, 5)), rng.normal(0.1, size=(250, 5))
    sigma = median_heuristic_sigma(ref)
    test = mmd.MMDTest(ref + 1e4, sigma, 50, seed=3)  # far from 0: the centring keeps float32 exact enough
    observed, p_value, threshold = test.test(window + 1e4)
    plan = test._plans[250]
    values = mmd2_unbiased_many(rbf_kernel(squared_distances(np.r_[ref, window], np.r_[ref, window]), sigma),
                                np.r_[plan.a_ref, plan.a_win].astype(np.float64))
    assert observed == pytest.approx(values[0], abs=1e-6)
    assert p_value == (1 + np.count_nonzero(values[1:] >= values[0])) / 51
    assert threshold == pytest.approx(np.quantile(values[1:], 0.95), abs=1e-6)


def test_mmd_test_keeps_its_false_alarm_rate_with_one_draw_of_permutations():
    """Every window of one size reuses the detector's permutations: still about 5 % false alarms."""
    from seismo.stats.mmd import MMDTest

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 4))
    test = MMDTest(ref, median_heuristic_sigma(ref), 100, seed=0)
    alarms = sum(test.test(rng.normal(size=(100, 4)))[1] < 0.05 for _ in range(200))
    assert 2 <= alarms <= 20  # 10 expected; a binomial(200, 0.05) is outside [2, 20] with probability < 0.3 %
    assert all(test.test(rng.normal(0.6, 1.0, size=(100, 4)))[1] < 0.05 for _ in range(10))


@pytest.mark.parametrize("n, m", [(1000, 1000), (1000, 200), (600, 999), (997, 991)])
def test_ks_p_values_are_kstwo_whether_precomputed_memoised_or_new(n, m):
    """The p-values come from a table on the 1/lcm(n, m) grid (for 1000 vs 1000, its start computed up front)
    or, for a grid too fine (997 vs 991), a memo: each must equal scipy's kstwo.sf of that statistic, on
    windows with and without drift."""
    from scipy.stats import kstwo

    from seismo.stats import ks

    ks.forget_p_values()
    rng = np.random.default_rng(n + m)
    reference = rng.normal(size=(n, 40))
    effective_n = float(np.round(n * m / (n + m)))
    for shift in (0.0, 0.0, 0.05, 0.4, 0.0):
        statistic, p_value = ks_2samp(reference, rng.normal(shift, size=(m, 40)))
        expected = [float(np.clip(kstwo.sf(float(d), effective_n), 0, 1)) for d in statistic]
        assert p_value.tolist() == expected
    if (n, m) == (1000, 1000):  # a grid of 1/1000: all of it below n d^2 = 2.2 (d <= 0.067) is in the table
        assert not np.isnan(ks._tables[(n, m)][:68]).any()
    assert ((n, m) in ks._tables) == (math.lcm(n, m) <= ks.MAX_TABLE)
    # A statistic off the grid (not a two-sample statistic of these sizes) is still scipy's p-value.
    off_grid = np.array([0.0123456789, 0.05])
    assert ks.ks_asymp_p_value(off_grid, n, m).tolist() == [float(kstwo.sf(d, effective_n)) for d in off_grid]


@pytest.mark.parametrize("max_entries", [3, 40, 1_000_000])
def test_ks_statistic_equals_scipy_with_few_or_many_buckets(monkeypatch, max_entries):
    """Boundaries between buckets only bound the statistic; the buckets that could hold it are merged value
    by value. With one bucket per feature everything is merged, with many almost nothing: same statistic,
    on continuous, tied and cross-sample-tied values, with windows of several sizes against one reference."""
    from seismo.stats import ks

    monkeypatch.setattr(ks, "MAX_INDEX_ENTRIES", max_entries)
    rng = np.random.default_rng(max_entries)
    a = rng.normal(size=(300, 6))
    a[:, :2] = np.round(a[:, :2], 1)
    reference = ks.SortedReference(a)
    for m, shift in ((120, 0.0), (300, 0.3), (120, 0.1), (7, 0.0)):
        b = rng.normal(shift, size=(m, 6))
        b[:, :2] = np.round(b[:, :2], 1)
        b[: m // 3, 2] = a[rng.integers(0, 300, m // 3), 2]  # window values equal to reference values
        expected = [sps.ks_2samp(a[:, j], b[:, j]).statistic for j in range(6)]
        assert ks.ks_statistic(reference, b) == pytest.approx(expected, abs=1e-12)


def test_ks_statistic_from_threads_sharing_one_reference():
    """A reference keeps one set of window buffers; tests run at once from other threads get their own
    and must not see each other's counts."""
    from concurrent.futures import ThreadPoolExecutor

    from seismo.stats import ks

    rng = np.random.default_rng(7)
    a = rng.normal(size=(500, 64))
    reference = ks.SortedReference(a)
    windows = [rng.normal(shift, size=(400, 64)) for shift in np.linspace(0, 0.5, 16)]
    expected = [ks.ks_statistic(a, w) for w in windows]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda w: ks.ks_statistic(reference, w), windows))
            assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))
