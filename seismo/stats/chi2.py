"""Chi-squared test of homogeneity for categorical features: reference counts vs window counts.

Equal to `scipy.stats.chi2_contingency` on the 2 x k table (with its Yates correction when the
table has one degree of freedom). Categories seen in neither sample are left out of the table.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2


def contingency_table(reference: np.ndarray, sample: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """2 x k counts of each category in the reference (row 0) and the sample (row 1)."""
    ref_counts = (reference[:, None] == categories[None, :]).sum(axis=0)
    sample_counts = (sample[:, None] == categories[None, :]).sum(axis=0)
    table = np.vstack([ref_counts, sample_counts]).astype(np.float64)
    return table[:, table.sum(axis=0) > 0]


def chi2_homogeneity(table: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of a contingency table, as scipy.stats.chi2_contingency computes them."""
    observed = np.asarray(table, dtype=np.float64)
    observed = observed[:, observed.sum(axis=0) > 0]  # a category in neither sample: no expected count to divide by
    if observed.shape[1] < 2:
        return 0.0, 1.0  # one category only: nothing can differ
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / observed.sum()
    dof = (observed.shape[0] - 1) * (observed.shape[1] - 1)
    if dof == 1:  # Yates' continuity correction, scipy's default for 2 x 2
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, float(chi2.sf(statistic, dof))


def chi2_per_feature(reference: np.ndarray, sample: np.ndarray, categories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(statistics, p-values) per feature; `categories[j]` are feature j's known values."""
    results = [chi2_homogeneity(contingency_table(reference[:, j], sample[:, j], np.asarray(cats))) for j, cats in enumerate(categories)]
    return np.array([r[0] for r in results]), np.array([r[1] for r in results])
