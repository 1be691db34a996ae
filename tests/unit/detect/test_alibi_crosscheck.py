"""Same decisions and p-values as alibi-detect 0.13 on identical data.

alibi-detect cannot share Seismo's environment (it pins numpy<2 and TensorFlow<2.19): `make alibi`
builds `.venv-alibi`, and these tests run it as a subprocess. Without it they skip.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import alibi_available, run_alibi_many  # noqa: E402
from seismo.detect import ChiSquareDrift, KSDrift, MMDDrift  # noqa: E402

pytestmark = pytest.mark.skipif(not alibi_available(), reason="alibi-detect not installed: `make alibi` builds .venv-alibi")

KS_CASES = [(0.0, "bonferroni"), (0.15, "bonferroni"), (0.1, "fdr")]
CHI2_SHIFTS = [0, 1]
MMD_SHIFTS = [0.0, 0.3]


def _data() -> dict[tuple, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    data: dict[tuple, dict[str, np.ndarray]] = {}
    for shift, correction in KS_CASES:
        data["ks", shift, correction] = {"x_ref": rng.normal(size=(500, 20)), "x": rng.normal(shift, size=(400, 20))}
    for shift in CHI2_SHIFTS:
        x_ref = rng.integers(0, 4, size=(500, 3))
        data["chi2", shift] = {"x_ref": x_ref, "x": np.clip(rng.integers(0, 4, size=(300, 3)) + shift * rng.integers(0, 2, size=(300, 3)), 0, 3)}
    for shift in MMD_SHIFTS:
        data["mmd", shift] = {"x_ref": rng.normal(size=(300, 5)), "x": rng.normal(shift, size=(300, 5))}
    return data


DATA = _data()


@pytest.fixture(scope="module")
def theirs() -> dict[tuple, dict]:
    """alibi-detect's answers on every case, from one run of its interpreter (its import alone takes seconds)."""
    params = {"ks": lambda key: {"correction": key[2], "repeats": 1}, "chi2": lambda key: {}, "mmd": lambda key: {"n_permutations": 200}}
    keys = list(DATA)
    answers = run_alibi_many([(key[0], {**DATA[key], **params[key[0]](key)}) for key in keys])
    return dict(zip(keys, answers, strict=True))


@pytest.mark.parametrize("shift, correction", KS_CASES)
def test_ks_same_p_values_and_decision(theirs, shift, correction):
    data, answer = DATA["ks", shift, correction], theirs["ks", shift, correction]
    ours = KSDrift(correction=correction).fit(data["x_ref"]).predict(data["x"])
    np.testing.assert_allclose(ours.feature_p_vals, answer["p_val"], atol=1e-9)
    np.testing.assert_allclose(ours.feature_distances, answer["distance"], atol=1e-9)
    assert int(ours.is_drift) == answer["is_drift"]


@pytest.mark.parametrize("shift", CHI2_SHIFTS)
def test_chi_square_same_p_values_and_decision(theirs, shift):
    data, answer = DATA["chi2", shift], theirs["chi2", shift]
    ours = ChiSquareDrift().fit(data["x_ref"]).predict(data["x"])
    np.testing.assert_allclose(ours.feature_p_vals, answer["p_val"], atol=1e-9)
    assert int(ours.is_drift) == answer["is_drift"]


@pytest.mark.parametrize("shift", MMD_SHIFTS)
def test_mmd_same_decision_and_distance_p_value_within_permutation_noise(theirs, shift):
    data, answer = DATA["mmd", shift], theirs["mmd", shift]
    ours = MMDDrift(n_permutations=200).fit(data["x_ref"]).predict(data["x"])
    assert int(ours.is_drift) == answer["is_drift"]
    assert ours.distance == pytest.approx(answer["distance"], rel=1e-3, abs=1e-5)
    assert abs(ours.p_val - answer["p_val"]) < 0.15


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

