"""Outlier and drift services with real saved detectors, on loopback sockets."""

import json

import numpy as np
import orjson
import pytest
from helpers import ServedApp, metric_sum
from prometheus_client import CollectorRegistry

from seismo.detect import KSDrift, MahalanobisOutlier, save_detector
from seismo.protocol.cloudevents import from_http
from seismo.services.drift import DriftSettings
from seismo.services.drift import create_app as drift_app
from seismo.services.outlier import OutlierSettings
from seismo.services.outlier import create_app as outlier_app

rng = np.random.default_rng(0)
REF = rng.normal(size=(500, 4))


def request_event(i, rows, model="tab", type_="org.kubeflow.serving.inference.request", protocol="v1"):
    headers = {"ce-specversion": "1.0", "ce-id": f"p{i}", "ce-source": "http://m/", "ce-type": type_,
               "ce-inferenceservicename": model, "ce-namespace": "default", "content-type": "application/json"}
    if protocol == "v1":
        body = {"instances": np.asarray(rows).tolist()}
    elif protocol == "v2":
        rows = np.asarray(rows)
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}]}
    elif protocol == "v2-binary":  # the OIP binary tensor extension, as the model server logs it (no header length)
        raw = np.asarray(rows, dtype="<f8").tobytes()
        headers["content-type"] = "application/octet-stream"
        return headers, orjson.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": list(np.shape(rows)),
                                                  "parameters": {"binary_data_size": len(raw)}}]}) + raw
    else:
        body = {"data": {"ndarray": np.asarray(rows).tolist()}}
    return headers, orjson.dumps(body)


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detectors")
    save_detector(MahalanobisOutlier().fit(REF), folder / "outlier")
    save_detector(KSDrift().fit(REF), folder / "drift")
    return folder


def test_outlier_replies_with_scores_same_id_and_extensions(detectors):
    settings = OutlierSettings(detector_path=detectors / "outlier", model="tab", adversarial=False)
    with ServedApp(outlier_app(settings, CollectorRegistry())) as client:
        headers, body = request_event(1, np.vstack([REF[:3], REF[:1] + 10]))
        r = client.post("/", headers=headers, content=body)
        assert r.status_code == 200
        reply = from_http(r.headers, r.content)
        assert reply.type == "org.kubeflow.serving.inference.outlier" and reply.id == "p1"
        assert reply.extensions["inferenceservicename"] == "tab" and reply.extensions["namespace"] == "default"
        data = orjson.loads(reply.data)
        assert data["is_outlier"] == [0, 0, 0, 1] and len(data["instance_score"]) == 4 and data["threshold"] > 0
        saved = json.loads((detectors / "outlier" / "config.json").read_text())
        assert data["detector_version"] == saved["detector_version"] and saved["detector_version"].startswith("MahalanobisOutlier-")
        for protocol in ("v2", "v2-binary", "seldon"):  # every payload protocol is read
            h, b = request_event(2, REF[:2] + 10, protocol=protocol)
            assert orjson.loads(from_http(*(lambda r: (r.headers, r.content))(client.post("/", headers=h, content=b))).data)["is_outlier"] == [1, 1]
        metrics = client.get("/metrics").text
        assert metric_sum(metrics, "seismo_outlier_instances_total", outcome="outlier") == 7
        assert metric_sum(metrics, "seismo_outlier_threshold") == pytest.approx(data["threshold"])


@pytest.mark.parametrize("make, reason, message", [
    (lambda: request_event(1, np.ones((2, 5))), "wrong_shape", "shape [5]; the detector's reference has [4]"),
    (lambda: request_event(1, REF[:2], model="other"), "unknown_model", "no detector for model 'other'"),
    (lambda: request_event(1, REF[:2], type_="org.kubeflow.serving.inference.response"), "wrong_type", "not an inference request"),
    (lambda: ({**request_event(1, REF[:1])[0]}, b'{"instances": [[1, NaN]]}'), "bad_payload", "not valid JSON"),
    (lambda: ({**request_event(1, REF[:1])[0]}, b'{"foo": 1}'), "bad_payload", "none of the V1, V2 or Seldon"),
    (lambda: ({"content-type": "application/json"}, b"{}"), "invalid_event", "not a CloudEvent"),
])
def test_bad_input_is_a_counted_400_with_the_reason(detectors, make, reason, message):
    for app in (outlier_app(OutlierSettings(detector_path=detectors / "outlier", model="tab", adversarial=False), CollectorRegistry()),
                drift_app(DriftSettings(detector_path=detectors / "drift", model="tab", state_path=detectors / f"w-{reason}.db"), CollectorRegistry())):
        with ServedApp(app) as client:
            headers, body = make()
            r = client.post("/", headers=headers, content=body)
            assert r.status_code == 400 and message in r.json()["error"]
            text = client.get("/metrics").text
            assert metric_sum(text, "seismo_outlier_events_rejected_total", reason=reason) + metric_sum(text, "seismo_drift_events_rejected_total", reason=reason) == 1


def test_drift_windows_never_exceed_their_size_and_survive_a_restart(detectors, tmp_path):
    settings = DriftSettings(detector_path=detectors / "drift", model="tab", window_size=100, state_path=tmp_path / "w.db")
    with ServedApp(drift_app(settings, CollectorRegistry())) as client:
        for i in range(6):  # 60 rows: no window yet
            h, b = request_event(i, rng.normal(size=(10, 4)))
            assert client.post("/", headers=h, content=b).status_code == 202
        assert metric_sum(client.get("/metrics").text, "seismo_drift_window_fill") == 60
    with ServedApp(drift_app(settings, CollectorRegistry())) as client:  # restarted: the 60 rows are still there
        assert metric_sum(client.get("/metrics").text, "seismo_drift_window_fill") == 60
        h, b = request_event(99, rng.normal(1.5, size=(50, 4)))  # fills the window (40 used) and starts the next (10)
        r = client.post("/", headers=h, content=b)
        assert r.status_code == 200
        reply = from_http(r.headers, r.content)
        data = orjson.loads(reply.data)
        assert reply.type == "org.kubeflow.serving.inference.drift" and reply.id == "p99"
        assert data["size"] == 100 and data["window"] == 0 and data["is_drift"] is True
        assert set(data) >= {"is_drift", "p_val", "distance", "threshold", "feature_p_vals", "feature_distances", "start", "end"}
        metrics = client.get("/metrics").text
        assert metric_sum(metrics, "seismo_drift_window_fill") == 10
        assert metric_sum(metrics, "seismo_drift_windows_total", outcome="drift") == 1
        assert metric_sum(metrics, "seismo_drift_detected") == 1
        assert metric_sum(metrics, "seismo_drift_feature_p_value", feature="0") == pytest.approx(data["feature_p_vals"][0])
        assert data["effect_floor"] == 0.05 and data["effect_size"] == pytest.approx(max(data["feature_distances"]))
        assert metric_sum(metrics, "seismo_drift_effect_size") == pytest.approx(data["effect_size"])


def test_the_effect_floor_setting_overrides_the_saved_detectors(detectors, tmp_path):
    """SEISMO_DRIFT_EFFECT_FLOOR: a significant shift whose effect is under the floor is reported, not alarmed."""
    settings = DriftSettings(detector_path=detectors / "drift", model="tab", window_size=100, state_path=tmp_path / "w.db", effect_floor=0.9)
    with ServedApp(drift_app(settings, CollectorRegistry())) as client:
        h, b = request_event(7, rng.normal(0.8, size=(100, 4)))
        answer = client.post("/", headers=h, content=b)
        data = orjson.loads(from_http(answer.headers, answer.content).data)
        assert data["p_val"] < data["threshold"] and data["effect_size"] < 0.9 and data["effect_floor"] == 0.9
        assert data["is_drift"] is False
        assert metric_sum(client.get("/metrics").text, "seismo_drift_effect_floor") == 0.9
    with pytest.raises(ValueError, match="effect_floor"):
        DriftSettings(detector_path=detectors / "drift", effect_floor=1.5)


def test_bad_settings_and_missing_detector_are_clear(tmp_path, detectors):
    with pytest.raises(ValueError, match="window_mode must be count, tumbling or sliding"):
        drift_app(DriftSettings(detector_path=detectors / "drift", window_mode="hourly", state_path=tmp_path / "w.db"), CollectorRegistry())
    with pytest.raises(ValueError, match="no detector at .*seismo fit outlier"):
        outlier_app(OutlierSettings(detector_path=tmp_path / "none"), CollectorRegistry())


EMB_VERSION = "tab/pen@1.0.0"
EMB_REF = np.random.default_rng(5).normal(size=(400, 8))


def response_event(i, vectors, version=EMB_VERSION, model="tab", binary=False):
    """A response event as Seismo's model server logs it: the client's outputs plus the embedding."""
    vectors = np.asarray(vectors, dtype=np.float64)
    headers = {"ce-specversion": "1.0", "ce-id": f"r{i}", "ce-source": "http://m/", "ce-type": "org.kubeflow.serving.inference.response",
               "ce-inferenceservicename": model, "ce-statuscode": "200", "content-type": "application/json"}
    if version is not None:
        headers.update({"ce-embeddingversion": version, "ce-embeddingoutput": "embedding"})
    outputs = [{"name": "probabilities", "datatype": "FP32", "shape": [len(vectors), 2], "data": [0.5] * (2 * len(vectors))}]
    if binary:  # the embedding as a binary tensor after the JSON header
        raw = vectors.astype("<f8").tobytes()
        outputs.append({"name": "embedding", "datatype": "FP64", "shape": list(vectors.shape), "parameters": {"binary_data_size": len(raw)}})
        headers["content-type"] = "application/octet-stream"
        return headers, orjson.dumps({"outputs": outputs}) + raw
    outputs.append({"name": "embedding", "datatype": "FP64", "shape": list(vectors.shape), "data": vectors.ravel().tolist()})
    return headers, orjson.dumps({"model_name": model, "outputs": outputs})


@pytest.fixture(scope="module")
def embedding_detector(tmp_path_factory):
    from seismo.detect import EmbeddingDrift

    return save_detector(EmbeddingDrift(version=EMB_VERSION, n_draws=200).fit(EMB_REF), tmp_path_factory.mktemp("emb") / "embedding")


def test_embedding_windows_guard_versions_and_alarm_on_a_shift(detectors, embedding_detector, tmp_path):
    settings = DriftSettings(detector_path=detectors / "drift", model="tab", state_path=tmp_path / "w.db",
                             embedding_detector_path=embedding_detector, embedding_window_size=40,
                             embedding_state_path=tmp_path / "e.db")
    with ServedApp(drift_app(settings, CollectorRegistry())) as client:
        def post(headers_body):
            return client.post("/", headers=headers_body[0], content=headers_body[1])

        shifted = np.random.default_rng(6).normal(size=(40, 8)) + 1.0
        assert post(response_event(1, shifted[:10])).status_code == 202
        assert post(response_event(2, shifted[10:20], version="tab/pen@1.0.7", binary=True)).status_code == 202  # a patch: scored, noted
        major = post(response_event(3, shifted[:5], version="tab/pen@2.0.0"))
        assert major.status_code == 400 and "another major version" in major.json()["error"]
        minor = post(response_event(4, shifted[:5], version="tab/pen@1.1.0"))
        assert minor.status_code == 400 and "allow_minor" in minor.json()["error"]
        wrong_dim = post(response_event(5, np.zeros((2, 7))))
        assert wrong_dim.status_code == 400 and "7 dimensions" in wrong_dim.json()["error"]
        unversioned = post(response_event(6, shifted[:5], version=None))  # no embedding named: an error response, say
        assert unversioned.status_code == 202
        r = post(response_event(7, shifted[20:40]))
        assert r.status_code == 200
        data = orjson.loads(from_http(r.headers, r.content).data)
        assert data["detector"] == "EmbeddingDrift" and data["window"] == 0 and data["size"] == 40
        assert data["is_drift"] is True and data["reference_version"] == EMB_VERSION
        assert data["version_note"].startswith("patch")
        assert data["euclidean_distance"] > data["distance_threshold"]
        # Input drift still works on the same service: a request event goes to the input windows.
        h, b = request_event(50, rng.normal(size=(3, 4)))
        assert client.post("/", headers=h, content=b).status_code == 202
        metrics = client.get("/metrics").text
        assert metric_sum(metrics, "seismo_drift_events_rejected_total", reason="embedding_version") == 2
        assert metric_sum(metrics, "seismo_drift_events_rejected_total", reason="bad_embedding") == 1
        assert metric_sum(metrics, "seismo_drift_events_rejected_total", reason="no_embedding") == 1
        assert metric_sum(metrics, "seismo_embedding_drift_distance", model="tab", embedding_version=EMB_VERSION) == pytest.approx(
            data["euclidean_distance"])
        assert metric_sum(metrics, "seismo_embedding_drift_detected", embedding_version=EMB_VERSION) == 1
        assert metric_sum(metrics, "seismo_embedding_drift_patch_events_total") == 1


def test_response_events_are_refused_without_an_embedding_detector(detectors, tmp_path):
    settings = DriftSettings(detector_path=detectors / "drift", model="tab", state_path=tmp_path / "w.db")
    with ServedApp(drift_app(settings, CollectorRegistry())) as client:
        h, b = response_event(1, EMB_REF[:3])
        r = client.post("/", headers=h, content=b)
        assert r.status_code == 400 and "not an inference request" in r.json()["error"]


def test_outlier_service_checks_responses_for_adversarial_inputs(detectors, tmp_path):
    """Three classes of 8-d embeddings; a vector far from every class mean is flagged, the reply is the
    record's `adversarial` annotation-to-be, and what cannot be checked is counted, never a 500."""
    from seismo.detect import ClassMahalanobisAdversarial

    labels = np.repeat([0, 1, 2], 200)
    vectors = np.random.default_rng(7).normal(size=(600, 8)) + labels[:, None] * 4.0
    save_detector(ClassMahalanobisAdversarial(version=EMB_VERSION).fit(vectors, labels), tmp_path / "adversarial")
    settings = OutlierSettings(detector_path=detectors / "outlier", model="tab", adversarial_detector_path=tmp_path / "adversarial")
    with ServedApp(outlier_app(settings, CollectorRegistry())) as client:
        post = lambda hb: client.post("/", headers=hb[0], content=hb[1])  # noqa: E731
        r = post(response_event(1, np.vstack([vectors[:2], vectors[400:401], np.full((1, 8), 30.0)])))
        assert r.status_code == 200, r.text
        reply = from_http(r.headers, r.content)
        assert reply.type == "io.seismo.inference.adversarial" and reply.id == "r1" and reply.extensions["inferenceservicename"] == "tab"
        data = orjson.loads(reply.data)
        assert data["is_adversarial"] == [0, 0, 0, 1] and data["nearest_class"][:3] == [0, 0, 2]
        assert data["embedding_version"] == EMB_VERSION and data["detector"] == "ClassMahalanobisAdversarial"
        assert post(response_event(2, np.full((2, 8), -40.0), binary=True)).status_code == 200  # binary tensors too
        assert post(response_event(3, vectors[:1], version=None)).status_code == 204  # no embedding: nothing to check
        refused = {
            "embedding_version": post(response_event(4, vectors[:1], version="tab/penultimate@1.0.1")),  # retrained: refit first
            "bad_embedding": post(response_event(5, np.ones((1, 5)))),
            "unknown_model": post(response_event(6, vectors[:1], model="other")),
        }
        for reason, answer in refused.items():
            assert answer.status_code == 400, (reason, answer.text)
        assert "refit" in refused["embedding_version"].json()["error"] and "5 dimensions" in refused["bad_embedding"].json()["error"]
        h, b = response_event(7, vectors[:1])
        assert post((h, b.replace(b'"data":[', b'"data":[NaN,', 1))).status_code == 400  # malformed: refused, not a 500
        metrics = client.get("/metrics").text
        assert metric_sum(metrics, "seismo_adversarial_instances_total", model="tab", outcome="adversarial") == 3
        assert metric_sum(metrics, "seismo_adversarial_instances_total", model="tab", outcome="clean") == 3
        assert metric_sum(metrics, "seismo_adversarial_events_skipped_total", model="tab", reason="no_embedding") == 1
        assert metric_sum(metrics, "seismo_outlier_events_rejected_total", reason="embedding_version") == 1
        assert metric_sum(metrics, "seismo_outlier_events_rejected_total", model="other", reason="unknown_model") == 1
        assert metric_sum(metrics, "seismo_adversarial_threshold", model="tab") > 0
        # request events still get outlier scores from the same service
        assert from_http(*(lambda r: (r.headers, r.content))(post(request_event(8, REF[:2])))).type == "org.kubeflow.serving.inference.outlier"


def test_adversarial_detector_needs_its_folder_and_the_right_kind(detectors, tmp_path):
    for path, message in ((tmp_path / "none", "no adversarial detector"), (detectors / "outlier", "holds a MahalanobisOutlier")):
        settings = OutlierSettings(detector_path=detectors / "outlier", model="tab", adversarial_detector_path=path)
        with pytest.raises(ValueError, match=message):
            outlier_app(settings, CollectorRegistry())


def test_drift_replicas_sharing_postgres_test_the_windows_one_replica_would(detectors, tmp_path, postgres_url):
    """The same traffic through one drift service on SQLite and through two replicas sharing PostgreSQL, each
    event delivered to one replica and redelivered to the other: the same windows with the same results,
    nothing dropped, nothing counted twice; a redelivery of the event that filled a window gets that window's
    result from either replica."""
    events = [request_event(i, rng.normal(0.0 if i < 12 else 1.0, size=(25, 4))) for i in range(24)]

    def results(answers: list) -> list[tuple]:
        out = []
        for r in answers:
            if r.status_code == 200:
                data = orjson.loads(from_http(r.headers, r.content).data)
                out.append((data["window"], data["size"], data["p_val"], data["is_drift"]))
        return out

    alone = DriftSettings(detector_path=detectors / "drift", model="tab", window_size=100, state_path=tmp_path / "alone.db")
    with ServedApp(drift_app(alone, CollectorRegistry())) as client:
        expected = results([client.post("/", headers=h, content=b) for h, b in events])
    assert [w for w, *_ in expected] == [0, 1, 2, 3, 4, 5]

    def replica(name: str) -> DriftSettings:
        return DriftSettings(detector_path=detectors / "drift", model="tab", window_size=100, state_path=tmp_path / f"{name}.db",
                             postgres_url=postgres_url)

    with ServedApp(drift_app(replica("a"), CollectorRegistry())) as a, ServedApp(drift_app(replica("b"), CollectorRegistry())) as b:
        answers, redelivered = [], []
        for i, (h, body) in enumerate(events):
            first, other = (a, b) if i % 2 == 0 else (b, a)
            answers.append(first.post("/", headers=h, content=body))
            redelivered.append(other.post("/", headers=h, content=body))  # the broker's retry lands on the other pod
        assert results(answers) == expected
        assert results(redelivered) == expected  # the same window results, not a second window of the same rows
        scraped = [client.get("/metrics").text for client in (a, b)]
        assert sum(metric_sum(text, "seismo_drift_instances_total") for text in scraped) == 24 * 25
        assert sum(metric_sum(text, "seismo_drift_events_duplicate_total") for text in scraped) == 24
        assert sum(metric_sum(text, "seismo_drift_windows_total") for text in scraped) == 6
