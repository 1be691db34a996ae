"""Image corruptions at five severities, after CIFAR-10-C (Hendrycks & Dietterich), for 32x32x3 in [0, 1].

The demo and the quality benchmark use them to make drifted traffic from clean images. Parameters
follow CIFAR-10-C's; brightness adds to all channels instead of converting to HSV (same direction,
no colour-space dependency).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return np.clip(x + rng.normal(0, c, x.shape), 0, 1)


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    return np.clip(x + c, 0, 1)


def _box_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Area-weighted resampling (PIL's BOX filter): each output cell averages the input it overlaps."""
    edges_out = np.linspace(0, n_in, n_out + 1)
    lo = np.maximum(edges_out[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges_out[1:, None], np.arange(1, n_in + 1)[None, :])
    overlap = np.clip(hi - lo, 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    size = x.shape[1]
    small = max(1, int(size * c))
    down, up = _box_matrix(small, size), _box_matrix(size, small)
    resample = up @ down  # [size, size]: down to small x small, back up, both area-weighted
    return np.clip(np.einsum("ij,njkc,lk->nilc", resample, x, resample), 0, 1)


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3))[severity - 1]
    out = np.empty_like(x)
    for n in range(len(x)):
        angle = rng.uniform(-45, 45)
        kernel = np.zeros((2 * radius + 1, 2 * radius + 1))
        offsets = np.arange(radius + 1)
        weights = np.exp(-(offsets**2) / (2 * sigma**2))
        dy, dx = np.sin(np.radians(angle)), np.cos(np.radians(angle))
        for o, w in zip(offsets, weights):  # a one-sided streak, as a moving camera leaves
            kernel[radius + int(round(o * dy)), radius + int(round(o * dx))] += w
        kernel /= kernel.sum()
        for ch in range(x.shape[-1]):
            out[n, :, :, ch] = ndimage.convolve(x[n, :, :, ch], kernel, mode="nearest")
    return np.clip(out, 0, 1)


CORRUPTIONS = {"gaussian_noise": gaussian_noise, "motion_blur": motion_blur, "brightness": brightness, "pixelate": pixelate}


def corrupt(x: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1 to 5, not {severity}")
    return CORRUPTIONS[name](np.asarray(x, dtype=np.float32), severity, np.random.default_rng(seed)).astype(np.float32)
