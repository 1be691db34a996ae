"""Drift of embedding vectors: centroid distances, the documents' KS over sampled distances, MMD.

`EmbeddingDrift(method=...)`:
- `euclidean` (default): distance between the window's and the reference's centroids; its p-value
  and threshold come from the reference's own fluctuation (pseudo windows against held-out
  centroids, `seismo.stats.centroid`), so it alarms at the stated false alarm rate whatever the
  scale of the space.
- `cosine`: the same with cosine distance (blind to a change of length, by design).
- `whitened`: the euclidean centroid distance after whitening by the reference's covariance (shrunk
  10 % toward its diagonal): a small move along a direction the reference hardly varies in
  counts as much as a large one along its widest spread (a Hotelling-like distance).
- `ks`: the embeddings document's robust alarm: centroid distances of many subsamples of the window
  against those of subsamples of the reference, compared by a KS statistic. Subsamples of one
  window are not independent, so the textbook KS p-value would alarm on clean data; the statistic's
  null comes from pseudo windows of the reference instead.
- `mmd`: Seismo's MMD permutation test on the embeddings (sees changes of shape the centroid misses).

Every result also carries both centroid distances and a per-cluster view: the reference split into
k-means clusters, the window's share in each against the reference's (chi-squared p-value, and
(window - reference) / (window + reference) per cluster, as Phoenix reported it).

The versioning guard: a detector fitted with an embedding version refuses embeddings of another
major or minor version (minor only with `allow_minor=True`, flagged on every result) and notes a
patch on the result (DESIGN.md's rules, `seismo.embeddings.version`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from seismo.detect.base import DriftResult, TestScore
from seismo.detect.drift import _DriftDetector
from seismo.detect.effect import DEFAULT_EFFECT_FLOOR, projected_gap
from seismo.embeddings.version import EmbeddingVersion, EmbeddingVersionError, VersionChange, compare_versions
from seismo.stats import MMDTest, chi2_homogeneity, median_heuristic_sigma
from seismo.stats.centroid import METRICS, empirical_p_value, euclidean, held_out_null, kmeans, nearest, subsample_distances
from seismo.stats.ks import ks_statistic

METHODS = ("euclidean", "cosine", "ks", "mmd", "whitened")
SHRINKAGE = 0.1
"""`whitened`: the share of the covariances between directions shrunk away (a reference of a few hundred
vectors estimates the smallest directions' variance poorly; without it they would dominate)."""


def whitening(x_ref: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray:
    """W with (x - mean) @ W of identity covariance on the reference (after shrinkage toward its diagonal)."""
    covariance = np.atleast_2d(np.cov(x_ref, rowvar=False))
    variances = np.diag(covariance)
    if not (variances > 0).any():  # a constant reference: nothing to whiten
        return np.eye(len(covariance))
    floor = 1e-9 * float(variances.max())
    shrunk = (1 - shrinkage) * covariance + shrinkage * np.diag(np.maximum(variances, floor))
    values, vectors = np.linalg.eigh(shrunk)
    return (vectors / np.sqrt(np.maximum(values, floor))) @ vectors.T


@dataclass(frozen=True)
class EmbeddingDriftResult(DriftResult):
    """A DriftResult (decision on `method`'s p-value) with what every embedding window reports."""

    method: str = "euclidean"
    euclidean_distance: float = 0.0
    cosine_distance: float = 0.0
    distance_threshold: float | None = None  # the centroid distance the reference's fluctuation exceeds with probability p_val
    embedding_version: str | None = None
    reference_version: str | None = None
    version_note: str | None = None
    cluster_p_val: float = 1.0
    cluster_drift: tuple[float, ...] = ()  # (window share - reference share) / (sum), per reference cluster
    cluster_shares: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "method": self.method,
            "euclidean_distance": self.euclidean_distance,
            "cosine_distance": self.cosine_distance,
            "distance_threshold": self.distance_threshold,
            "embedding_version": self.embedding_version,
            "reference_version": self.reference_version,
            "version_note": self.version_note,
            "cluster_p_val": self.cluster_p_val,
            "cluster_drift": list(self.cluster_drift),
            "cluster_shares": list(self.cluster_shares),
        }


class EmbeddingDrift(_DriftDetector):
    kind = "EmbeddingDrift"

    def __init__(self, method: str = "euclidean", p_val: float = 0.05, version: str | None = None, allow_minor: bool = False,
                 n_draws: int = 500, n_clusters: int = 8, max_reference: int = 2000, n_permutations: int = 100,
                 n_subsamples: int = 100, seed: int = 0, preprocess=None, effect_floor: float = DEFAULT_EFFECT_FLOOR):
        super().__init__(p_val, preprocess, effect_floor)
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if version is not None:
            EmbeddingVersion.parse(version)  # malformed versions fail at construction, not at the first window
        if n_draws < 20:
            raise ValueError(f"n_draws must be at least 20 (the null needs a tail), not {n_draws}")
        self.method = method
        self.version = version
        self.allow_minor = allow_minor
        self.n_draws = n_draws
        self.n_clusters = n_clusters
        self.max_reference = max_reference
        self.n_permutations = n_permutations
        self.n_subsamples = n_subsamples
        self.seed = seed
        self._calls = 0

    def fit(self, x_ref: Any, version: str | None = None) -> EmbeddingDrift:
        """Fit on reference embeddings [N, d]; `version` is the embedding version they were made with."""
        if version is not None:
            self.version = str(EmbeddingVersion.parse(version))
        reference = self._reference_features(x_ref)
        if len(reference) < 20:
            raise ValueError(f"an embedding reference needs at least 20 vectors, got {len(reference)}")
        if len(reference) > self.max_reference:  # the null and MMD cost grow with it; a seeded sample keeps the shape
            keep = np.random.default_rng(self.seed).choice(len(reference), self.max_reference, replace=False)
            reference = reference[np.sort(keep)]
        self.x_ref = reference
        self._fitted()
        return self

    def _fitted(self) -> None:
        x_ref = self._require_fit()
        self._centroid = x_ref.mean(axis=0)
        self._whiten = None
        if self.method == "whitened":
            # Cross-fitted: the whitening from one half, the null from the other. Whitening fitted on the
            # very points the null is drawn from makes them look rounder than new data (the smallest
            # directions' variance is underestimated in sample): 11 % false alarms at a nominal 5 %.
            order = np.random.default_rng([self.seed, 8]).permutation(len(x_ref))
            half = len(x_ref) // 2
            self._whiten = whitening(x_ref[order[:half]])
            self._null_part = x_ref[order[half:]]
        self._nulls: dict[tuple[str, int], np.ndarray] = {}
        rng = np.random.default_rng([self.seed, 1])
        self._clusters = kmeans(x_ref, self.n_clusters, rng)
        self._ref_counts = np.bincount(nearest(x_ref, self._clusters), minlength=len(self._clusters)).astype(np.float64)
        # The KS method scores with the first two thirds of a seeded split (centroid, reference distances); the last
        # third is unused since the null re-splits the whole reference per draw (kept: the split fixes the bench's figures).
        order = np.random.default_rng([self.seed, 2]).permutation(len(x_ref))
        self._parts = np.array_split(x_ref[order], 3)
        self._mmd_test: MMDTest | None = None

    # --- the versioning guard ----------------------------------------------------------------------
    def version_note(self, version: str | None) -> str | None:
        """None when `version` is the reference's; a note for a patch (or an allowed minor); otherwise
        EmbeddingVersionError saying why these embeddings cannot be compared with the reference."""
        if self.version is None:
            return None if version is None else f"the reference has no embedding version; scored {version} unchecked"
        if version is None:
            raise EmbeddingVersionError(f"embeddings carry no version; this detector's reference is {self.version}")
        change = compare_versions(self.version, version)
        if change is VersionChange.SAME:
            return None
        if change is VersionChange.PATCH:
            return f"patch: reference {self.version}, scored {version} (same model and extraction, retrained)"
        if change is VersionChange.MINOR and self.allow_minor:
            return f"minor: reference {self.version}, scored {version} (allowed by allow_minor; the spaces may differ)"
        what = {VersionChange.MINOR: "another minor version (another extraction method)",
                VersionChange.MAJOR: "another major version (another architecture)",
                VersionChange.OTHER_SPACE: "another model or space"}[change]
        hint = " (set allow_minor to score it anyway)" if change is VersionChange.MINOR else ""
        raise EmbeddingVersionError(f"embedding version {version} is {what} than the reference's {self.version}: "
                                    f"refit the reference on {version}{hint}")

    # --- statistics ------------------------------------------------------------------------------------
    def null(self, method: str, window_size: int) -> np.ndarray:
        """The statistic's distribution over pseudo windows of the reference (memoised per size)."""
        key = (method, window_size)
        if key not in self._nulls:
            rng = np.random.default_rng([self.seed, 3, window_size, METHODS.index(method)])
            if method == "ks":
                # Each draw splits the reference afresh (centre, reference distances, pseudo window): pseudo windows
                # from one fixed part share its offset and would make the null too narrow (20 % clean alarms in the bench).
                self._nulls[key] = np.array([self._ks_statistic(*self._resplit(window_size, rng), window_size, rng)
                                             for _ in range(max(20, self.n_draws // 5))])
            elif method == "whitened":
                assert self._whiten is not None  # set by _fitted for this method
                part = self._null_part
                # Scaled from the law against this half's centroid to the law against the whole reference's.
                self._nulls[key] = held_out_null(part @ self._whiten, window_size, euclidean, self.n_draws, rng, against_all=True) * np.sqrt(
                    (1 / window_size + 1 / len(self._require_fit())) / (1 / window_size + 1 / len(part)))
            else:
                self._nulls[key] = held_out_null(self._require_fit(), window_size, METRICS[method], self.n_draws, rng, against_all=True)
        return self._nulls[key]

    def _resplit(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pseudo window, centre part, reference-distance part): a fresh three-way split of the reference."""
        x_ref = self._require_fit()
        centre_part, ref_part, pool = np.array_split(x_ref[rng.permutation(len(x_ref))], 3)
        return pool[rng.choice(len(pool), size, replace=size > len(pool))], centre_part, ref_part

    def _ks_statistic(self, window: np.ndarray, centre_part: np.ndarray, ref_part: np.ndarray, window_size: int,
                      rng: np.random.Generator) -> float:
        centre = centre_part.mean(axis=0)
        sample_size = max(2, window_size // 2)
        ref_distances = subsample_distances(ref_part, centre, self.n_subsamples, sample_size, euclidean, rng)
        window_distances = subsample_distances(window, centre, self.n_subsamples, sample_size, euclidean, rng)
        return float(ks_statistic(ref_distances[:, None], window_distances[:, None])[0])

    def score(self, x: Any) -> TestScore:
        """(p-value, statistic) of the configured method on window `x`."""
        window = self._features(x, "window")
        return self._score(window)

    def _score(self, window: np.ndarray) -> TestScore:
        self._require_fit()
        n = len(window)
        call_rng = np.random.default_rng([self.seed, 5, self._calls])
        self._calls += 1
        if self.method in ("euclidean", "cosine"):
            statistic = float(METRICS[self.method](window.mean(axis=0), self._centroid))
            return TestScore(empirical_p_value(self.null(self.method, n), statistic), statistic)
        if self.method == "whitened":
            assert self._whiten is not None
            statistic = float(np.linalg.norm((window.mean(axis=0) - self._centroid) @ self._whiten))
            return TestScore(empirical_p_value(self.null("whitened", n), statistic), statistic)
        if self.method == "ks":
            statistic = self._ks_statistic(window, self._parts[0], self._parts[1], n, call_rng)
            return TestScore(empirical_p_value(self.null("ks", n), statistic), statistic)
        if self._mmd_test is None:
            reference = self._mmd_reference()
            self._mmd_test = MMDTest(reference, median_heuristic_sigma(reference), self.n_permutations, [self.seed, 6])
        mmd2, p_value, _ = self._mmd_test.test(window)
        return TestScore(p_value, mmd2)

    def _mmd_reference(self) -> np.ndarray:
        """At most 500 reference vectors (MMD's cost is quadratic), a seeded sample: the first 500 in the
        caller's order were one cluster when the reference was stored cluster by cluster."""
        x_ref = self._require_fit()
        return x_ref[np.sort(np.random.default_rng([self.seed, 7]).permutation(len(x_ref))[:500])]

    def predict(self, x: Any, version: str | None = None) -> EmbeddingDriftResult:
        """Score window `x` (embeddings of `version`); EmbeddingVersionError when the guard refuses them."""
        note = self.version_note(version)
        window = self._features(x, "window")
        p_value, statistic = self._score(window)
        centroid = window.mean(axis=0)
        n = len(window)
        counts = np.bincount(nearest(window, self._clusters), minlength=len(self._clusters)).astype(np.float64)
        _, cluster_p = chi2_homogeneity(np.vstack([self._ref_counts, counts]))
        ref_share, window_share = self._ref_counts / self._ref_counts.sum(), counts / counts.sum()
        with np.errstate(invalid="ignore"):
            per_cluster = np.where(ref_share + window_share > 0, (window_share - ref_share) / (window_share + ref_share), 0.0)
        threshold_method = self.method if self.method in ("euclidean", "cosine") else "euclidean"
        # The effect: reference and window projected on the direction the centroid moved, their KS gap.
        effect = projected_gap(self._require_fit(), window, self._centroid)
        return EmbeddingDriftResult(
            is_drift=self._verdict(p_value, effect), p_val=float(p_value), distance=float(statistic), threshold=self.p_val,
            effect_size=effect, effect_floor=self.effect_floor,
            method=self.method,
            euclidean_distance=float(METRICS["euclidean"](centroid, self._centroid)),
            cosine_distance=float(METRICS["cosine"](centroid, self._centroid)),
            distance_threshold=float(np.quantile(self.null(threshold_method, n), 1 - self.p_val)),
            embedding_version=version, reference_version=self.version, version_note=note,
            cluster_p_val=float(cluster_p), cluster_drift=tuple(float(v) for v in per_cluster),
            cluster_shares=tuple(float(v) for v in window_share),
        )

    def _params(self) -> dict[str, Any]:
        return {"method": self.method, "p_val": self.p_val, "version": self.version, "allow_minor": self.allow_minor,
                "n_draws": self.n_draws, "n_clusters": self.n_clusters, "max_reference": self.max_reference,
                "n_permutations": self.n_permutations, "n_subsamples": self.n_subsamples, "seed": self.seed,
                "effect_floor": self.effect_floor}


__all__ = ["METHODS", "EmbeddingDrift", "EmbeddingDriftResult", "EmbeddingVersionError"]
