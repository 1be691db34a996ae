"""Multiple-testing corrections across features: one drift decision from many p-values."""

from __future__ import annotations

import numpy as np


def bonferroni(p_values: np.ndarray, alpha: float) -> tuple[bool, float]:
    """(drift?, per-feature threshold): drift when any p-value is below alpha / number of features."""
    threshold = alpha / len(p_values)
    return bool((p_values < threshold).any()), threshold


def benjamini_hochberg(p_values: np.ndarray, alpha: float) -> tuple[bool, float]:
    """(drift?, threshold): the false discovery rate procedure (alibi-detect's 'fdr').

    Sorted p-values p_(i) are compared with alpha * i / n; drift when any falls below its line.
    The threshold returned is the largest line value that was met, or alpha / n when none was.
    """
    n = len(p_values)
    ordered = np.sort(p_values)
    lines = alpha * np.arange(1, n + 1) / n
    below = ordered < lines
    if below.any():
        return True, float(lines[np.nonzero(below)[0].max()])
    return False, float(lines[0])


CORRECTIONS = {"bonferroni": bonferroni, "fdr": benjamini_hochberg}


def correct(p_values: np.ndarray, alpha: float, correction: str) -> tuple[bool, float]:
    try:
        return CORRECTIONS[correction](np.asarray(p_values, dtype=np.float64), alpha)
    except KeyError:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, not {correction!r}") from None
