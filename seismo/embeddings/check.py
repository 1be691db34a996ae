"""`seismo embeddings check OLD NEW`: is the claimed version bump between two models honest?

Both models embed the same probe set (the old model's shipped reference sample unless `--probe`).
Three measures say how far the space moved:
- displacement: how far each probe point moved, relative to the old space's spread (the mean distance
  of a point from its centroid); the median is the probe canary. A fine-tune moves points a fifth of
  the spread on the example model, a retrain of the same architecture from another seed more than
  the whole spread (the coordinates mean something else);
- the centroid shift between the two embeddings of the probe, relative to the old space's normal
  fluctuation (the 95th percentile of centroid distances of pseudo windows of that size drawn from
  the old embeddings, `seismo.stats.centroid.held_out_null`): at most 1 means the shift is within
  what sampling alone produces;
- nearest-neighbour overlap: for each probe point, the share of its 10 nearest neighbours that are
  the same in both spaces (1: the neighbourhoods are intact; a rotation keeps this at 1 but moves the
  centroid, a retrain from scratch usually breaks both).
A patch must leave the space where it was (median displacement <= 0.5 and overlap >= 0.6); a
same-version "bump" must too. An honest patch whose centroid moved more than the normal fluctuation
still makes a detector fitted on the old version alarm: the check says to refit the reference then.
A minor or major bump is always allowed: the reference must be refit, and the check says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from seismo.embeddings.version import EmbeddingVersion, VersionChange, compare_versions
from seismo.stats.centroid import euclidean, held_out_null

MAX_SHIFT_RATIO = 1.0
MAX_DISPLACEMENT = 0.5
MIN_NEIGHBOUR_OVERLAP = 0.6
NEIGHBOURS = 10


@dataclass(frozen=True)
class CheckResult:
    old_version: str
    new_version: str
    claimed: str  # the VersionChange value
    probe_size: int
    old_dimension: int
    new_dimension: int
    centroid_shift: float | None  # None when the dimensions differ
    fluctuation: float | None  # the old space's 95th-percentile centroid distance for a window of probe_size
    shift_ratio: float | None
    neighbour_overlap: float | None
    displacement: float | None  # median distance each probe point moved / the old space's spread
    space_moved: bool
    honest: bool
    message: str

    def to_json(self) -> dict:
        return asdict(self)


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean share of each point's k nearest neighbours (itself excluded) that agree between spaces a and b."""
    k = min(k, len(a) - 1)

    def neighbours(x: np.ndarray) -> np.ndarray:
        d2 = (x**2).sum(1)[:, None] + (x**2).sum(1)[None, :] - 2.0 * x @ x.T
        np.fill_diagonal(d2, np.inf)
        return np.argpartition(d2, k, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(np.intersect1d(na[i], nb[i], assume_unique=True)) / k for i in range(len(a))]))


def compare_spaces(old: np.ndarray, new: np.ndarray, old_version: str, new_version: str, seed: int = 0) -> CheckResult:
    """The verdict on embeddings of the same probe in the old and the new space."""
    claimed = compare_versions(old_version, new_version)
    n = len(old)
    shift = fluctuation = ratio = overlap = displacement = None
    if old.shape[1] != new.shape[1]:
        moved = True
        how = f"the dimension changed ({old.shape[1]} -> {new.shape[1]})"
    else:
        shift = float(euclidean(new.mean(0), old.mean(0)))
        # Pseudo windows of a quarter of the probe: the probe itself is the whole set.
        null = held_out_null(old, max(2, n // 4), euclidean, 500, np.random.default_rng(seed))
        fluctuation = float(np.quantile(null, 0.95))
        ratio = shift / fluctuation if fluctuation > 0 else float("inf")
        overlap = neighbour_overlap(old, new)
        spread = float(np.linalg.norm(old - old.mean(0), axis=1).mean())
        displacement = float(np.median(np.linalg.norm(new - old, axis=1)) / spread) if spread > 0 else float("inf")
        moved = displacement > MAX_DISPLACEMENT or overlap < MIN_NEIGHBOUR_OVERLAP
        how = (f"points moved {displacement:.2f} of the spread (median), {overlap:.0%} of nearest neighbours kept, "
               f"centroid shift {ratio:.2f}x the normal fluctuation")
    if claimed in (VersionChange.PATCH, VersionChange.SAME):
        word = "patch" if claimed is VersionChange.PATCH else "the same version"
        if moved:
            honest = False
            bump = str(EmbeddingVersion.parse(old_version))
            message = (f"claimed {word}, but the space changed ({how}): bump the minor version or refit the reference "
                       f"(detectors fitted on {bump} would score these embeddings as if they were comparable)")
        else:
            honest = True
            message = f"{word} is honest: the space did not move ({how})"
            message += ("; but the centroid moved more than its normal fluctuation, so detectors fitted on "
                        f"{old_version} would alarm: refit their reference on {new_version}" if (ratio or 0) > MAX_SHIFT_RATIO
                        else f"; detectors fitted on {old_version} keep working")
    else:
        honest = True
        refit = "refit every reference on the new version"
        message = (f"{claimed.value.replace('_', ' ')} change: {refit} ({how})" if moved else
                   f"{claimed.value.replace('_', ' ')} change ({how}); the space did not move, so a patch would have been "
                   f"enough, but {refit} anyway: detectors refuse another {claimed.value.replace('_', ' ')} version")
    return CheckResult(str(old_version), str(new_version), claimed.value, n, old.shape[1], new.shape[1], shift, fluctuation,
                       ratio, overlap, displacement, moved, honest, message)


def check_models(old_model: Path, new_model: Path, probe: np.ndarray | None = None, limit: int = 500) -> CheckResult:
    """Embed the probe (default: the old model's shipped reference.npy) with both models and compare."""
    from seismo.embeddings.extract import embed

    if probe is None:
        shipped = Path(old_model) / "reference.npy"
        if not shipped.exists():
            raise ValueError(f"{old_model} ships no reference.npy: pass a probe set with --probe FILE.npy")
        probe = np.load(shipped, allow_pickle=False)
    probe = probe[:limit]
    if len(probe) < 4 * NEIGHBOURS:
        raise ValueError(f"the probe set has {len(probe)} items; the check needs at least {4 * NEIGHBOURS}")
    old, old_version = embed(old_model, probe)
    new, new_version = embed(new_model, probe)
    return compare_spaces(old, new, old_version, new_version)
