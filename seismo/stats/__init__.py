"""Pure numpy/scipy statistics, one file per test. Nothing here imports TensorFlow or a web framework."""

from seismo.stats.chi2 import chi2_homogeneity, chi2_per_feature, contingency_table
from seismo.stats.corrections import benjamini_hochberg, bonferroni, correct
from seismo.stats.distances import feature_distances, hellinger, histogram, jensen_shannon, kl, psi, quantile_edges, wasserstein
from seismo.stats.ks import SortedReference, ks_2samp, ks_asymp_p_value, ks_statistic
from seismo.stats.mmd import MMDTest, median_heuristic_sigma, mmd2_unbiased_many, mmd_permutation_test, rbf_kernel, squared_distances

__all__ = [
    "SortedReference", "benjamini_hochberg", "bonferroni", "chi2_homogeneity", "chi2_per_feature", "contingency_table", "correct",
    "feature_distances", "hellinger", "histogram", "jensen_shannon", "kl", "ks_2samp", "ks_asymp_p_value",
    "MMDTest", "ks_statistic", "median_heuristic_sigma", "mmd2_unbiased_many", "mmd_permutation_test", "psi",
    "quantile_edges", "rbf_kernel", "squared_distances", "wasserstein",
]
