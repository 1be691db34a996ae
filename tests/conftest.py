from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seismo.topology import EXAMPLE_MODEL  # noqa: E402


@pytest.fixture(scope="session")
def example_model() -> Path:
    """The one trained example artifact every test shares (`make test` trains it if missing)."""
    if not (EXAMPLE_MODEL / "metadata.json").exists():
        pytest.fail(f"example model missing at {EXAMPLE_MODEL}: run `make model` (make test does it for you)")
    return EXAMPLE_MODEL


@pytest.fixture(scope="session")
def example_images(example_model: Path) -> np.ndarray:
    return np.load(example_model / "reference.npy")
