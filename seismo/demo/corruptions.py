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


# --- the embeddings document's image issues (bench/embedding_drift.py, the demo's embedding row) -----------
# Each takes images [N, 32, 32, 3] in [0, 1], a severity 1..5 and a generator; severity 3 is "moderate".


def blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.3, 0.45, 0.6, 0.8, 1.2)[severity - 1]
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0))


def spots(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Bright round spots (dust, dead pixels, stickers): 1 to 5 per image, radius 1 to 3."""
    count = severity
    out = x.copy()
    yy, xx = np.mgrid[: x.shape[1], : x.shape[2]]
    for n in range(len(x)):
        for _ in range(count):
            cy, cx, r = rng.integers(0, x.shape[1]), rng.integers(0, x.shape[2]), rng.integers(1, 4)
            out[n][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    return out


def brighten(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + (0.02, 0.05, 0.1, 0.2, 0.35)[severity - 1], 0, 1)


def darken(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return x * (0.95, 0.9, 0.8, 0.65, 0.45)[severity - 1]


def rotate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Each image turned by up to +-5 .. +-40 degrees (a tilted camera)."""
    limit = (5, 10, 15, 25, 40)[severity - 1]
    angles = rng.uniform(-limit, limit, len(x))
    return np.stack([np.clip(ndimage.rotate(img, a, axes=(0, 1), reshape=False, order=1, mode="constant"), 0, 1)
                     for img, a in zip(x, angles)])


def crop(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of 97 % .. 65 % of each side, scaled back to full size (a zoomed, off-centre camera)."""
    keep = (0.97, 0.92, 0.85, 0.75, 0.65)[severity - 1]
    size = x.shape[1]
    side = max(2, int(round(size * keep)))
    out = np.empty_like(x)
    for n, img in enumerate(x):
        top, left = rng.integers(0, size - side + 1, 2)
        piece = img[top:top + side, left:left + side]
        out[n] = np.clip(ndimage.zoom(piece, (size / side, size / side, 1), order=1)[:size, :size], 0, 1)
    return out


def new_objects(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Objects not in the training set (the document's baskets of mixed fruit): a share of the images
    (5 % .. 80 %) replaced by two digits side by side, each squeezed to half the width."""
    share = (0.05, 0.1, 0.2, 0.4, 0.8)[severity - 1]
    out = x.copy()
    chosen = rng.choice(len(x), int(round(share * len(x))), replace=False)
    half = x.shape[2] // 2
    for n in chosen:
        a, b = x[rng.integers(len(x))], x[rng.integers(len(x))]
        out[n, :, :half] = a[:, ::2]
        out[n, :, half:] = b[:, ::2]
    return out


IMAGE_ISSUES = {"blur": blur, "spots": spots, "brighten": brighten, "darken": darken, "rotate": rotate, "crop": crop,
                "new_objects": new_objects}


def image_issue(x: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """`x` with the embeddings document's issue `name` at `severity` (1..5)."""
    if name not in IMAGE_ISSUES:
        raise ValueError(f"unknown image issue {name!r}; known: {sorted(IMAGE_ISSUES)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1 to 5, not {severity}")
    return IMAGE_ISSUES[name](np.asarray(x, dtype=np.float32), severity, np.random.default_rng(seed)).astype(np.float32)
