"""Detector speed on identical data, in the same run: Seismo vs scipy and (where installed) alibi-detect 0.13.

- KS over 1000 x 256 (reference and window both 1000 x 256): Seismo's KSDrift.predict, a loop of
  `scipy.stats.ks_2samp(method="asymp")` per feature (what alibi-detect does), and alibi-detect's
  KSDrift. Seismo is timed cold (first window of its size: every kstwo value computed) and warm
  (later windows of the same size, as in the drift service).
- MMD over 2000 x 32 with 100 permutations: Seismo's MMDDrift (warm: the window size seen before, as in
  the drift service; cold: the first window of a size also computes the reference's share), and
  alibi-detect's TensorFlow MMDDrift.
- Decisions: both libraries' is_drift on windows without drift and with it (KS p-values must agree
  exactly; MMD's are permutation estimates, so only clear cases are compared).

    python -m bench.detector_speed
"""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import ks_2samp

from bench.common import alibi_available, run_alibi, save
from seismo.detect import KSDrift, MMDDrift
from seismo.stats import ks as ks_module


def median_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    rng = np.random.default_rng(0)
    x_ref, x = rng.normal(size=(1000, 256)), rng.normal(0.02, size=(1000, 256))
    detector = KSDrift().fit(x_ref)
    ks_module.forget_p_values()  # cold: no p-value computed before
    started = time.perf_counter()
    detector.predict(x)
    ks_cold = time.perf_counter() - started
    windows = [rng.normal(0.02, size=(1000, 256)) for _ in range(6)]
    more = np.random.default_rng(1)  # a stream of its own: the data drawn after these stays as it was
    windows += [more.normal(0.02, size=(1000, 256)) for _ in range(7)]
    for w in windows[:3]:
        detector.predict(w)  # the service's steady state: windows of one size
    ks_warm = float(np.median([median_time(lambda w=w: detector.predict(w), 1) for w in windows[3:]]))  # ten windows
    scipy_loop = median_time(lambda: [ks_2samp(x_ref[:, j], x[:, j], method="asymp") for j in range(256)], 3)
    result = {"ks_1000x256": {"seismo_cold_s": round(ks_cold, 4), "seismo_warm_s": round(ks_warm, 4), "scipy_loop_s": round(scipy_loop, 4),
                              "scipy_loop_vs_seismo_warm": round(scipy_loop / ks_warm, 1)}}

    m_ref, m_x = rng.normal(size=(2000, 32)), rng.normal(0.05, size=(2000, 32))
    mmd = MMDDrift(n_permutations=100).fit(m_ref)
    started = time.perf_counter()
    mmd.predict(m_x)
    mmd_cold = time.perf_counter() - started
    mmd_seconds = median_time(lambda: mmd.predict(m_x), 5)
    result["mmd_2000x32_100perm"] = {"seismo_s": round(mmd_seconds, 4), "seismo_cold_s": round(mmd_cold, 4)}
    # Decisions on windows nobody tuned for: no drift (two seeds) and a clear shift (two sizes of it).
    ks_windows = [rng.normal(size=(1000, 256)), rng.normal(size=(1000, 256)), rng.normal(0.15, size=(1000, 256))]
    mmd_windows = [rng.normal(size=(2000, 32)), rng.normal(size=(2000, 32)), rng.normal(0.1, size=(2000, 32)),
                   rng.normal(0.2, size=(2000, 32))]
    seismo_ks = [detector.predict(w) for w in ks_windows]
    seismo_mmd = [bool(mmd.predict(w).is_drift) for w in mmd_windows]

    if alibi_available():
        alibi_ks = run_alibi("ks", x_ref=x_ref, x=x, repeats=5)
        result["ks_1000x256"].update(alibi_s=round(alibi_ks["seconds"], 4), alibi_vs_seismo_warm=round(alibi_ks["seconds"] / ks_warm, 1),
                                     alibi_vs_seismo_cold=round(alibi_ks["seconds"] / ks_cold, 1))
        alibi_mmd = run_alibi("mmd", x_ref=m_ref, x=m_x, n_permutations=100, repeats=1)
        result["mmd_2000x32_100perm"].update(alibi_tensorflow_s=round(alibi_mmd["seconds"], 2),
                                             alibi_vs_seismo=round(alibi_mmd["seconds"] / mmd_seconds, 1),
                                             alibi_vs_seismo_cold=round(alibi_mmd["seconds"] / mmd_cold, 1))
        alibi_ks_decisions = [run_alibi("ks", x_ref=x_ref, x=w, repeats=1) for w in ks_windows]
        alibi_mmd_decisions = run_alibi("mmd_windows", x_ref=m_ref, windows=np.stack(mmd_windows))["is_drift"]
        result["decisions"] = {
            "ks_seismo": [bool(r.is_drift) for r in seismo_ks], "ks_alibi": [bool(r["is_drift"]) for r in alibi_ks_decisions],
            "ks_largest_p_value_difference": float(max(np.abs(np.asarray(r.feature_p_vals) - np.asarray(a["p_val"])).max()
                                                       for r, a in zip(seismo_ks, alibi_ks_decisions))),
            "mmd_seismo": seismo_mmd, "mmd_alibi": [bool(d) for d in alibi_mmd_decisions],
        }
        result["decisions"]["same"] = (result["decisions"]["ks_seismo"] == result["decisions"]["ks_alibi"]
                                       and seismo_mmd == result["decisions"]["mmd_alibi"])
    else:
        result["alibi"] = "not installed (`make alibi`); comparison columns skipped"
    save("detector_speed", result)


if __name__ == "__main__":
    main()
