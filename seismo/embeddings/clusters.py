"""Outlier cohorts by clustering: where production embeddings went that the reference never was.

Reference and production embeddings are clustered together (scikit-learn's HDBSCAN on their first
principal components: density clusters need no k and leave noise unassigned; PCA keeps HDBSCAN's
distance computations cheap and meaningful in 64+ dimensions). A cluster is *new* when the reference
has (almost) no points in it, *overgrown* when production's share of it is at least twice the
reference's. Per cluster: size, shares, the ids of the production points nearest its centre, the
model's accuracy where truth has come, and the outlier scores' quartiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NEW_SHARE = 0.01  # a cluster holding at most 1 % of the reference is new to it
OVERGROWN_RATIO = 2.0


@dataclass(frozen=True)
class ProductionPoint:
    prediction_id: str
    correct: bool | None = None  # None: no truth yet
    outlier_score: float | None = None


def comparable(detector: Any, version: str | None) -> bool:
    """Whether embeddings of `version` may be set beside the detector's reference (its versioning guard)."""
    from seismo.embeddings.version import EmbeddingVersionError

    try:
        detector.version_note(version)
    except EmbeddingVersionError:
        return False
    return True


def project(points: np.ndarray, dimensions: int = 10) -> np.ndarray:
    """The first principal components (of the pooled points)."""
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[: min(dimensions, vt.shape[0])].T


def cluster_labels(points: np.ndarray, min_cluster_size: int = 10) -> np.ndarray:
    """HDBSCAN labels of the points (-1: noise)."""
    from sklearn.cluster import HDBSCAN

    if len(points) < 2 * min_cluster_size:
        return np.full(len(points), -1)
    return HDBSCAN(min_cluster_size=min_cluster_size, min_samples=1, copy=True).fit_predict(project(points))


def cohorts(reference: np.ndarray, production: np.ndarray, points: list[ProductionPoint], min_cluster_size: int = 10,
            top: int = 5) -> dict[str, Any]:
    """The clusters of reference + production, with the new and overgrown ones first."""
    labels = cluster_labels(np.concatenate([reference, production]), min_cluster_size)
    ref_labels, prod_labels = labels[: len(reference)], labels[len(reference):]
    clusters = []
    for label in sorted(set(labels.tolist()) - {-1}):
        in_ref, in_prod = int(np.sum(ref_labels == label)), np.flatnonzero(prod_labels == label)
        ref_share, prod_share = in_ref / len(reference), len(in_prod) / max(1, len(production))
        status = ("new" if ref_share <= NEW_SHARE and len(in_prod) else
                  "overgrown" if prod_share >= OVERGROWN_RATIO * ref_share and len(in_prod) >= min_cluster_size else "known")
        centre = production[in_prod].mean(axis=0) if len(in_prod) else None
        nearest = (in_prod[np.argsort(np.linalg.norm(production[in_prod] - centre, axis=1))[:top]] if centre is not None
                   else np.array([], dtype=int))
        truth = [bool(points[i].correct) for i in in_prod if points[i].correct is not None]
        scores = np.array([points[i].outlier_score for i in in_prod if points[i].outlier_score is not None])
        clusters.append({
            "cluster": label, "status": status, "size": int(len(in_prod) + in_ref), "production": int(len(in_prod)),
            "reference": in_ref, "production_share": round(prod_share, 4), "reference_share": round(ref_share, 4),
            "drift": round((prod_share - ref_share) / (prod_share + ref_share), 4) if prod_share + ref_share else 0.0,
            "top_ids": [points[i].prediction_id for i in nearest],
            "accuracy": round(sum(truth) / len(truth), 4) if truth else None, "with_truth": len(truth),
            "outlier_score_quartiles": np.quantile(scores, [0.25, 0.5, 0.75]).round(6).tolist() if len(scores) else None,
        })
    order = {"new": 0, "overgrown": 1, "known": 2}
    clusters.sort(key=lambda c: (order[c["status"]], -c["production"]))
    return {"clusters": clusters, "reference_points": len(reference), "production_points": len(production),
            "production_noise": int(np.sum(prod_labels == -1)), "labels": labels.tolist()}


def correctness(view: dict) -> list[bool] | None:
    """Per instance, whether the predicted class (argmax of the first output) equals the truth in the
    record's feedback (Seldon's `truth` or a plain list of labels); None without usable truth."""
    feedback = view["annotations"].get("feedback")
    truth = feedback.get("truth") if isinstance(feedback, dict) else None
    if isinstance(truth, dict):
        truth = (truth.get("data") or {}).get("ndarray") if isinstance(truth.get("data"), dict) else None
    response = view["response"]
    try:
        if isinstance(response, dict) and isinstance(response.get("outputs"), list):
            first = response["outputs"][0]
            predicted = np.asarray(first["data"], dtype=np.float64).reshape(first["shape"])
        elif isinstance(response, dict) and "predictions" in response:
            predicted = np.asarray(response["predictions"], dtype=np.float64)
        else:
            return None
        labels = predicted.argmax(axis=-1) if predicted.ndim > 1 else predicted
        truth_array = np.asarray(truth, dtype=np.float64).reshape(-1) if truth is not None else None
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    if truth_array is None or len(truth_array) != len(labels):
        return None
    return [bool(a == b) for a, b in zip(labels.tolist(), truth_array.tolist())]
