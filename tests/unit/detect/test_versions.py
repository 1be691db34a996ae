"""Saved detectors carry a version fingerprint and their provenance; results can name the detector exactly."""

import json

import numpy as np

from seismo.detect import KSDrift, MahalanobisOutlier, load_detector, save_detector

RNG = np.random.default_rng(0)
REF = RNG.normal(size=(300, 4)).astype(np.float32)


def test_the_same_detector_gets_the_same_version_and_another_a_different_one(tmp_path):
    first = save_detector(KSDrift().fit(REF), tmp_path / "a")
    second = save_detector(KSDrift().fit(REF), tmp_path / "b", provenance={"source": "file", "reference": "x.npy"})
    other = save_detector(KSDrift().fit(REF + 1), tmp_path / "c")
    versions = [json.loads((f / "config.json").read_text())["detector_version"] for f in (first, second, other)]
    assert versions[0] == versions[1] != versions[2] and versions[0].startswith("KSDrift-")
    assert load_detector(second).detector_version == versions[1] and load_detector(second).provenance == {"source": "file", "reference": "x.npy"}
    assert load_detector(first).provenance is None


def test_a_folder_saved_before_versions_gets_the_same_fingerprint_on_load(tmp_path):
    folder = save_detector(MahalanobisOutlier().fit(REF), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    recorded = config.pop("detector_version")
    (folder / "config.json").write_text(json.dumps(config))
    assert load_detector(folder).detector_version == recorded
