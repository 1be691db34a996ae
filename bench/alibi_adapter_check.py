"""Checks seismo.detect.alibi_adapter inside the alibi-detect environment; prints JSON.

Run by tests/unit/detect/test_alibi_crosscheck.py as `.venv-alibi/bin/python bench/alibi_adapter_check.py DIR`
with the repository on PYTHONPATH (Seismo's detectors need only numpy and scipy, which that
environment has).
"""

import json
import sys

import numpy as np
from alibi_detect.cd import KSDrift
from alibi_detect.od import Mahalanobis
from alibi_detect.saving import save_detector

from seismo.detect import DriftResult, OutlierResult, load_detector

folder = sys.argv[1]
rng = np.random.default_rng(0)
x_ref, x = rng.normal(size=(300, 4)).astype(np.float32), rng.normal(0.5, size=(200, 4)).astype(np.float32)
save_detector(KSDrift(x_ref, p_val=0.05), f"{folder}/ks")
od = Mahalanobis(threshold=10.0)
od.infer_threshold(x_ref, threshold_perc=95)
save_detector(od, f"{folder}/maha")
drift = load_detector(f"{folder}/ks")
outlier = load_detector(f"{folder}/maha")
d, o = drift.predict(x), outlier.predict(np.vstack([x_ref[:5], x_ref[:2] + 20]))
print(json.dumps({"drift_type": type(d) is DriftResult, "is_drift": d.is_drift, "n_p_vals": len(d.feature_p_vals),
                  "outlier_type": type(o) is OutlierResult, "is_outlier": o.is_outlier.astype(int).tolist(), "shape": list(drift.instance_shape)}))
