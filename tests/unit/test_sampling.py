"""Sampling with exact accounting: the share by prediction id, and the outlier and drift services honouring it."""

import numpy as np
import orjson
import pytest
from helpers import ServedApp, metric_sum
from prometheus_client import CollectorRegistry

from seismo.detect import KSDrift, MahalanobisOutlier, save_detector
from seismo.protocol.cloudevents import from_http
from seismo.sampling import in_sample
from seismo.services.drift import DriftSettings
from seismo.services.drift import create_app as drift_app
from seismo.services.outlier import OutlierSettings
from seismo.services.outlier import create_app as outlier_app

REF = np.random.default_rng(0).normal(size=(300, 4))


def test_the_sample_is_a_share_of_ids_that_grows_with_it_and_decides_alike_everywhere():
    ids = [f"prediction-{i}" for i in range(20_000)]
    tenth = {i for i in ids if in_sample(i, 0.1)}
    half = {i for i in ids if in_sample(i, 0.5)}
    assert abs(len(tenth) / len(ids) - 0.1) < 0.01 and abs(len(half) / len(ids) - 0.5) < 0.015
    assert tenth <= half  # a larger share keeps every prediction a smaller one had
    assert all(in_sample(i, 1.0) for i in ids[:100])
    assert [in_sample(i, 0.3) for i in ids[:500]] == [in_sample(i, 0.3) for i in ids[:500]]  # no state: every replica agrees


def event(i, rows, model="tab"):
    return ({"ce-specversion": "1.0", "ce-id": f"p{i}", "ce-source": "http://m/", "ce-type": "org.kubeflow.serving.inference.request",
             "ce-inferenceservicename": model, "content-type": "application/json"}, orjson.dumps({"instances": np.asarray(rows).tolist()}))


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sampled")
    save_detector(MahalanobisOutlier().fit(REF), folder / "outlier")
    save_detector(KSDrift().fit(REF), folder / "drift")
    return folder


def test_the_detectors_watch_the_share_and_count_what_they_leave_out(detectors, tmp_path):
    share, n = 0.4, 60
    expected = [i for i in range(n) if in_sample(f"p{i}", share)]
    settings = OutlierSettings(detector_path=detectors / "outlier", model="tab", adversarial=False, sample_share=share)
    with ServedApp(outlier_app(settings, CollectorRegistry())) as client:
        answers = [client.post("/", headers=h, content=b) for h, b in (event(i, REF[:2]) for i in range(n))]
        assert [i for i, r in enumerate(answers) if r.status_code == 200] == expected
        assert all(r.status_code == 204 and not r.content for i, r in enumerate(answers) if i not in expected)
        assert orjson.loads(from_http(answers[expected[0]].headers, answers[expected[0]].content).data)["sample_share"] == share
        text = client.get("/metrics").text
        assert metric_sum(text, "seismo_outlier_events_sampled_out_total", model="tab") == n - len(expected)
        assert metric_sum(text, "seismo_outlier_instances_total") == 2 * len(expected)
        assert metric_sum(text, "seismo_outlier_sample_share", model="tab") == share
        # another model's event, or another type of event, is refused as before, never silently sampled out
        h, b = event(1000, REF[:1], model="other")
        assert client.post("/", headers=h, content=b).status_code == 400
        out = next(i for i in range(n, 10 * n) if not in_sample(f"p{i}", share))
        h, b = event(out, REF[:1])
        assert client.post("/", headers={**h, "ce-type": "org.kubeflow.serving.inference.outlier"}, content=b).status_code == 400
    drift = DriftSettings(detector_path=detectors / "drift", model="tab", window_size=10, state_path=tmp_path / "w.db",
                          embedding_detector_path=None, sample_share=share)
    with ServedApp(drift_app(drift, CollectorRegistry())) as client:
        replies = [client.post("/", headers=h, content=b) for h, b in (event(i, REF[i:i + 1]) for i in range(n))]
        windows = [orjson.loads(from_http(r.headers, r.content).data) for r in replies if r.status_code == 200]
        assert len(windows) == len(expected) // 10 and all(w["sample_share"] == share and w["size"] == 10 for w in windows)
        text = client.get("/metrics").text
        assert metric_sum(text, "seismo_drift_instances_total") == len(expected)
        assert metric_sum(text, "seismo_drift_events_sampled_out_total") == n - len(expected)


def test_a_share_outside_0_to_1_is_refused():
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="sample_share"):
            OutlierSettings(sample_share=bad)
