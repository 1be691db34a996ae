"""The held-out CIFAR-10-C corruptions bench.detection reports apart: valid images, seeded, and stronger
with severity where CIFAR-10-C's parameters make them so."""

import numpy as np
import pytest

from bench.held_out_corruptions import HELD_OUT, corrupt_held_out

IMAGES = np.random.default_rng(0).random((6, 32, 32, 3)).astype(np.float32) * 0.8 + 0.1


@pytest.mark.parametrize("name", sorted(HELD_OUT))
def test_each_corruption_keeps_the_shape_and_range_changes_the_images_and_repeats_with_its_seed(name):
    out = corrupt_held_out(IMAGES, name, 3, seed=5)
    assert out.shape == IMAGES.shape and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert np.abs(out - IMAGES).mean() > 1e-3
    assert np.array_equal(out, corrupt_held_out(IMAGES, name, 3, seed=5))
    assert np.array_equal(IMAGES, np.random.default_rng(0).random((6, 32, 32, 3)).astype(np.float32) * 0.8 + 0.1)  # input untouched


@pytest.mark.parametrize("name", ["shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "defocus_blur", "zoom_blur", "fog",
                                  "contrast", "jpeg_compression"])
def test_severity_5_moves_the_images_further_than_severity_1(name):
    change = [np.abs(corrupt_held_out(IMAGES, name, s, seed=1) - IMAGES).mean() for s in (1, 5)]
    assert change[1] > change[0]
