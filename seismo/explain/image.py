"""Image anchors: superpixels are the predicates; a perturbed image keeps some and replaces the rest.

Superpixels come from scikit-image (SLIC by default, or felzenszwalb / quickshift) or a plain grid.
A replaced superpixel takes the pixels of a background image (a random reference image per sample,
as alibi's `images_background` does), or, without references, the superpixel's mean colour. Each
superpixel outside the anchor is kept with probability 1/2, so an anchor of k superpixels covers
2^-k of the perturbation distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from seismo.batching import split_rows
from seismo.explain.anchors import Anchor

SEGMENTATIONS = ("slic", "felzenszwalb", "quickshift", "grid")


def segment(image: np.ndarray, method: str = "slic", **options: Any) -> np.ndarray:
    """Superpixel labels 0..k-1 for an [H, W, C] image in [0, 1]."""
    if method not in SEGMENTATIONS:
        raise ValueError(f"segmentation must be one of {', '.join(SEGMENTATIONS)}, not {method!r}")
    if method == "grid":
        size = int(options.get("size", 8))
        h, w = image.shape[:2]
        rows, cols = np.arange(h)[:, None] // size, np.arange(w)[None, :] // size
        return (rows * ((w + size - 1) // size) + cols).astype(np.int64)
    from skimage import segmentation

    image = np.asarray(image, dtype=np.float64)
    channel_axis = -1 if image.ndim == 3 else None
    if method == "slic":
        labels = segmentation.slic(image, n_segments=int(options.get("n_segments", 16)), compactness=float(options.get("compactness", 10.0)),
                                   start_label=0, channel_axis=channel_axis)
    elif method == "felzenszwalb":
        labels = segmentation.felzenszwalb(image, scale=float(options.get("scale", 50)), sigma=float(options.get("sigma", 0.5)),
                                           min_size=int(options.get("min_size", 20)), channel_axis=channel_axis)
    else:
        labels = segmentation.quickshift(image if image.ndim == 3 else np.stack([image] * 3, -1), kernel_size=float(options.get("kernel_size", 3)),
                                         max_dist=float(options.get("max_dist", 6)), ratio=float(options.get("ratio", 0.5)))
    _, labels = np.unique(labels, return_inverse=True)  # 0..k-1 without gaps
    return labels.reshape(image.shape[:2]).astype(np.int64)


class ImageSampler:
    def __init__(self, image: np.ndarray, segments: np.ndarray, predict_labels: Callable[[np.ndarray], np.ndarray], instance_label,
                 rng: np.random.Generator, background: np.ndarray | None = None, coverage_samples: int = 1000):
        self.image = np.asarray(image, dtype=np.float32)
        self.segments = segments
        self.n_features = int(segments.max()) + 1
        self.predict_labels = predict_labels
        self.instance_label = instance_label
        self.rng = rng
        if background is not None and len(background):
            self.background = np.asarray(background, dtype=np.float32)
        else:  # each superpixel's mean colour
            fudged = self.image.copy()
            for s in range(self.n_features):
                fudged[segments == s] = self.image[segments == s].mean(axis=0)
            self.background = fudged[None]
        self.coverage_masks = rng.random((coverage_samples, self.n_features)) < 0.5

    def draw(self, anchor: Anchor, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n perturbed images and their keep-masks over superpixels."""
        masks = self.rng.random((n, self.n_features)) < 0.5
        masks[:, list(anchor)] = True
        keep = masks[:, self.segments]  # [n, H, W]
        if self.image.ndim == 3:
            keep = keep[..., None]
        fill = self.background[self.rng.integers(0, len(self.background), n)]
        return np.where(keep, self.image[None], fill).astype(np.float32), masks

    def sample(self, requests: list[tuple[Anchor, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        drawn = [self.draw(anchor, n) for anchor, n in requests]
        images = [images for images, _ in drawn]
        labels = split_rows(self.predict_labels(np.concatenate(images)), images)  # one model call for all requests
        # Examples are kept as superpixel masks: small, and enough to rebuild the image.
        return [(masks, part_labels == self.instance_label) for (_, masks), part_labels in zip(drawn, labels)]

    def coverage(self, anchor: Anchor) -> float:
        if not anchor:
            return 1.0
        return float(np.mean(np.all(self.coverage_masks[:, list(anchor)], axis=1)))

    def mask(self, anchor: Anchor) -> np.ndarray:
        """Pixels inside the anchor's superpixels."""
        return np.isin(self.segments, list(anchor))
