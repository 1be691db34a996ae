"""Centroid distances between two sets of embedding vectors, and their null distribution.

The embeddings document found the euclidean distance between the reference's and production's
centroids the most stable and scalable drift measure (cosine reacted more strongly, less stably).
A distance alone has no scale, so its threshold comes from the reference's own fluctuation: pseudo
windows drawn from the reference, each compared with the centroid of the reference points *not*
drawn (held out). Comparing a draw with a centroid it helped make would shrink the null and alarm
on clean data (the mistake eth-easl/modyn #414 reports of a reference-only bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise euclidean distance between centroids ([k, d] against [k, d] or [d])."""
    return np.sqrt(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=-1))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine distance (1 - cosine similarity); 0 for parallel centroids whatever their length."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    dot = np.sum(a * b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 1.0)
    return np.clip(1.0 - similarity, 0.0, 2.0)


METRICS: dict[str, Metric] = {"euclidean": euclidean, "cosine": cosine}


def held_out_null(reference: np.ndarray, window_size: int, metric: Metric, n_draws: int, rng: np.random.Generator,
                  against_all: bool = False) -> np.ndarray:
    """Centroid distances of `n_draws` pseudo windows drawn from `reference`, each against the
    centroid of the reference points it does not contain.

    With `against_all` the distances are rescaled to the law of what a drift test computes: a new
    window against the centroid of the whole reference, whose standard error is sqrt(1/n + 1/N)
    where a pseudo window's against the rest is sqrt(1/n + 1/(N - n)) (at n = N/2 the null would be
    15 % too wide and the test far below its nominal rate). A window larger than half the reference
    is drawn at half its size and always rescaled so. The scaling is exact for euclidean distances of
    a Gaussian cloud and close for cosine ones.
    """
    n_ref = len(reference)
    size = max(1, min(window_size, n_ref // 2))
    total = reference.sum(axis=0)
    out = np.empty(n_draws)
    chunk = max(1, 2_000_000 // max(1, size * reference.shape[1]))  # bound the [chunk, size, d] gather
    for start in range(0, n_draws, chunk):
        k = min(chunk, n_draws - start)
        idx = np.argsort(rng.random((k, n_ref)), axis=1)[:, :size]  # k draws without replacement
        drawn = reference[idx].sum(axis=1)
        out[start:start + k] = metric(drawn / size, (total - drawn) / (n_ref - size))
    if against_all or size < window_size:
        out *= np.sqrt((1 / window_size + 1 / n_ref) / (1 / size + 1 / (n_ref - size)))
    return out


def empirical_p_value(null: np.ndarray, observed: float) -> float:
    """(1 + #null >= observed) / (1 + #null): never exactly 0 (alibi-detect #960 left the +1 out)."""
    return float((1 + np.count_nonzero(null >= observed)) / (1 + len(null)))


def subsample_distances(points: np.ndarray, centre: np.ndarray, n_samples: int, sample_size: int, metric: Metric,
                        rng: np.random.Generator) -> np.ndarray:
    """Distances to `centre` of the centroids of `n_samples` random subsets of `points` (the documents'
    sampled-distance set; with replacement when the points are fewer than `sample_size`)."""
    n = len(points)
    if n > sample_size:
        idx = np.argsort(rng.random((n_samples, n)), axis=1)[:, :sample_size]
    else:
        idx = rng.integers(0, n, size=(n_samples, sample_size))
    return metric(points[idx].mean(axis=1), centre)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 50) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; the [k, d] centres (fewer when points are fewer)."""
    k = min(k, len(points))
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = np.min(((points[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        if d2.sum() <= 0:
            break
        centres.append(points[rng.choice(len(points), p=d2 / d2.sum())])
    c = np.asarray(centres, dtype=np.float64)
    for _ in range(iterations):
        labels = nearest(points, c)
        moved = np.array([points[labels == j].mean(axis=0) if np.any(labels == j) else c[j] for j in range(len(c))])
        if np.allclose(moved, c):
            break
        c = moved
    return c


def nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each point."""
    d2 = (points**2).sum(1)[:, None] + (centres**2).sum(1)[None, :] - 2.0 * points @ centres.T
    return np.argmin(d2, axis=1)
