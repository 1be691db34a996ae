"""Seismo's calibrated accuracy estimate and NannyML's CBPE on the same chunks (needs `make nannyml`; skipped without it)."""

import numpy as np
import pytest

from bench.cbpe_crosscheck import CHUNK, NANNYML_PYTHON, CorrelatedClasses, nannyml_estimates
from seismo.stats.model_metrics import estimated_accuracy, fit_calibrator

pytestmark = pytest.mark.skipif(not NANNYML_PYTHON.exists(), reason="NannyML's environment is not installed (make nannyml)")


def test_the_calibrated_estimate_agrees_with_nannymls_cbpe_on_every_chunk():
    world = CorrelatedClasses("naive_bayes")
    reference = world.scores(4000, seed=1)
    chunks = [world.scores(CHUNK, seed=200 + i) for i in range(6)]
    calibrator = fit_calibrator(reference[0].max(axis=1), (reference[0].argmax(axis=1) == reference[1]).astype(float))
    ours = [estimated_accuracy(scores, calibrator) for scores, _ in chunks]
    theirs = nannyml_estimates(reference, (np.concatenate([s for s, _ in chunks]), np.concatenate([t for _, t in chunks])))
    assert theirs is not None and len(theirs["estimated"]) == len(chunks)
    assert np.max(np.abs(np.subtract(ours, theirs["estimated"]))) < 0.015
    assert np.max(np.abs(np.subtract([estimated_accuracy(s) for s, _ in chunks], theirs["estimated"]))) > 0.2  # uncalibrated: far off
