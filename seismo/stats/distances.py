"""Distances between a reference and a sample distribution, per feature.

Binning (documented because every number depends on it): numeric features use `n_bins` bins whose
edges are the reference's quantiles (equal-mass bins, so the reference histogram is flat and no bin is
empty by construction), with the outer edges open to catch values beyond the reference range.
Categorical features use one bin per category. Smoothing is explicit: `epsilon` is added to every
bin's probability before renormalising, so an empty bin gives a large but finite PSI and KL.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_BINS = 10
DEFAULT_EPSILON = 1e-4


def quantile_edges(reference: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Inner bin edges from the reference's quantiles (duplicates removed for discrete data)."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1]))


def histogram(values: np.ndarray, edges: np.ndarray, epsilon: float = DEFAULT_EPSILON) -> np.ndarray:
    """Smoothed bin probabilities of `values` over open-ended bins cut at `edges`."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1).astype(np.float64)
    p = counts / max(counts.sum(), 1.0) + epsilon
    return p / p.sum()


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index: sum (q - p) ln(q / p). Rule of thumb: > 0.2 is a real shift."""
    return float(np.sum((q - p) * np.log(q / p)))


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """Kullback-Leibler divergence KL(p || q) in nats; a bin empty in `p` adds nothing (0 log 0 = 0)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    present = p > 0
    return float(np.sum(p[present] * np.log(p[present] / q[present])))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (the square root of the divergence, natural log; in [0, sqrt(ln 2)])."""
    mid = (p + q) / 2
    return float(np.sqrt(max(0.5 * kl(p, mid) + 0.5 * kl(q, mid), 0.0)))


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance, in [0, 1]."""
    return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def wasserstein(reference: np.ndarray, sample: np.ndarray) -> float:
    """1-D earth mover's distance between two samples (equals scipy.stats.wasserstein_distance)."""
    a, b = np.sort(reference), np.sort(sample)
    support = np.sort(np.concatenate([a, b]))
    widths = np.diff(support)
    cdf_a = np.searchsorted(a, support[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, support[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * widths))


BINNED = {"psi": psi, "kl": kl, "js": jensen_shannon, "hellinger": hellinger}


def category_histogram(values: np.ndarray, categories: np.ndarray, epsilon: float = DEFAULT_EPSILON) -> np.ndarray:
    """Smoothed probabilities of each of `categories` (sorted) among `values`: one bin per category."""
    counts = np.bincount(np.searchsorted(categories, values), minlength=len(categories)).astype(np.float64)
    p = counts / max(counts.sum(), 1.0) + epsilon
    return p / p.sum()


def feature_distances(reference: np.ndarray, sample: np.ndarray, metric: str, n_bins: int = DEFAULT_BINS,
                      epsilon: float = DEFAULT_EPSILON, categorical: Sequence[int] = ()) -> np.ndarray:
    """One distance per feature of [n, d] and [m, d] arrays. The `categorical` columns get a bin per
    category seen in either (a category new in `sample` is its own bin, not folded into a quantile bin);
    the others quantile bins of the reference (or, for wasserstein, the values themselves)."""
    if metric not in BINNED and metric != "wasserstein":
        raise ValueError(f"metric must be one of {sorted([*BINNED, 'wasserstein'])}, not {metric!r}")
    if metric == "wasserstein" and categorical:
        raise ValueError("wasserstein compares numeric features; categorical ones need a binned metric (psi, kl, js, hellinger)")
    out = []
    for j in range(reference.shape[1]):
        if metric == "wasserstein":
            out.append(wasserstein(reference[:, j], sample[:, j]))
        elif j in categorical:
            categories = np.union1d(reference[:, j], sample[:, j])
            out.append(BINNED[metric](category_histogram(reference[:, j], categories, epsilon),
                                      category_histogram(sample[:, j], categories, epsilon)))
        else:
            edges = quantile_edges(reference[:, j], n_bins)
            out.append(BINNED[metric](histogram(reference[:, j], edges, epsilon), histogram(sample[:, j], edges, epsilon)))
    return np.array(out)
