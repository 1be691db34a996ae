"""Effect sizes: how far a window moved, which a p-value alone does not say.

With windows large enough, any shift is significant (a 0.02 SD mean shift at 100,000 rows has a KS
p-value far below 1e-6), so a drift verdict needs both: the test says the shift is real, the effect
size says it is large enough to matter. Every default effect is on one scale, a share of probability
mass, so one floor (`DEFAULT_EFFECT_FLOOR`, 0.05) reads the same for every detector:

- KS per feature: the statistic itself, the largest gap between the two cumulative distributions
  (a 0.5 SD shift of a normal feature: 0.20; 0.02 SD: 0.008);
- chi-squared per feature: the total variation distance between the category shares (half their L1);
- MMD: the square root of the (unbiased) MMD^2 with the test's own kernel, in [0, sqrt 2];
- the domain classifier: 2 AUC - 1 (0: no better than chance; 0.5 SD in one feature: 0.28);
- embeddings: the KS statistic of reference and window projected on the direction the centroid moved.

A feature or window drifts only when its test is significant and its effect reaches the floor; 0 turns
the floor off. At small windows the test is the stricter of the two, so the floor costs no power there.
"""

from __future__ import annotations

import numpy as np

from seismo.stats.ks import ks_statistic

DEFAULT_EFFECT_FLOOR = 0.05


def check_floor(effect_floor: float) -> float:
    if not 0 <= effect_floor < 1:
        raise ValueError(f"effect_floor must be in [0, 1), not {effect_floor!r}")
    return float(effect_floor)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Half the L1 distance between two discrete distributions (counts or shares), in [0, 1]."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return float(0.5 * np.abs(p / max(p.sum(), 1e-300) - q / max(q.sum(), 1e-300)).sum())


def ks_gap(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample KS statistic of 1-D samples a and b."""
    return float(ks_statistic(np.asarray(a)[:, None], np.asarray(b)[:, None])[0])


def projected_gap(reference: np.ndarray, window: np.ndarray, reference_centroid: np.ndarray | None = None) -> float:
    """The KS statistic of reference and window along the direction from the reference's centroid to the window's."""
    centre = reference.mean(axis=0) if reference_centroid is None else reference_centroid
    direction = window.mean(axis=0) - centre
    norm = float(np.linalg.norm(direction))
    if not norm > 0:
        return 0.0
    direction = direction / norm
    return ks_gap(reference @ direction, window @ direction)


__all__ = ["DEFAULT_EFFECT_FLOOR", "check_floor", "ks_gap", "projected_gap", "total_variation"]
