"""Same decisions and p-values as alibi-detect 0.13 on identical data.

alibi-detect cannot share Seismo's environment (it pins numpy<2 and TensorFlow<2.19): `make alibi`
builds `.venv-alibi`, and these tests run it as a subprocess. Without it they skip.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import alibi_available, run_alibi  # noqa: E402
from seismo.detect import ChiSquareDrift, KSDrift, MMDDrift  # noqa: E402

pytestmark = pytest.mark.skipif(not alibi_available(), reason="alibi-detect not installed: `make alibi` builds .venv-alibi")
rng = np.random.default_rng(0)


@pytest.mark.parametrize("shift, correction", [(0.0, "bonferroni"), (0.15, "bonferroni"), (0.1, "fdr")])
def test_ks_same_p_values_and_decision(shift, correction):
    x_ref, x = rng.normal(size=(500, 20)), rng.normal(shift, size=(400, 20))
    theirs = run_alibi("ks", x_ref=x_ref, x=x, correction=correction, repeats=1)
    ours = KSDrift(correction=correction).fit(x_ref).predict(x)
    np.testing.assert_allclose(ours.feature_p_vals, theirs["p_val"], atol=1e-9)
    np.testing.assert_allclose(ours.feature_distances, theirs["distance"], atol=1e-9)
    assert int(ours.is_drift) == theirs["is_drift"]


@pytest.mark.parametrize("shift", [0, 1])
def test_chi_square_same_p_values_and_decision(shift):
    x_ref = rng.integers(0, 4, size=(500, 3))
    x = np.clip(rng.integers(0, 4, size=(300, 3)) + shift * rng.integers(0, 2, size=(300, 3)), 0, 3)
    theirs = run_alibi("chi2", x_ref=x_ref, x=x)
    ours = ChiSquareDrift().fit(x_ref).predict(x)
    np.testing.assert_allclose(ours.feature_p_vals, theirs["p_val"], atol=1e-9)
    assert int(ours.is_drift) == theirs["is_drift"]


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_mmd_same_decision_and_distance_p_value_within_permutation_noise(shift):
    x_ref, x = rng.normal(size=(300, 5)), rng.normal(shift, size=(300, 5))
    theirs = run_alibi("mmd", x_ref=x_ref, x=x, n_permutations=200)
    ours = MMDDrift(n_permutations=200).fit(x_ref).predict(x)
    assert int(ours.is_drift) == theirs["is_drift"]
    assert ours.distance == pytest.approx(theirs["distance"], rel=1e-3, abs=1e-5)
    assert abs(ours.p_val - theirs["p_val"]) < 0.15


def test_detectors_saved_by_alibi_detect_run_behind_seismos_interface(tmp_path):
    import json
    import os
    import subprocess

    from bench.common import ALIBI_PYTHON

    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run([str(ALIBI_PYTHON), str(repo / "bench" / "alibi_adapter_check.py"), str(tmp_path)], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["drift_type"] and out["is_drift"] is True and out["n_p_vals"] == 4 and out["shape"] == [4]
    assert out["outlier_type"] and out["is_outlier"][-2:] == [1, 1]

