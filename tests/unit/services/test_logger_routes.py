"""The request logger with events exactly as KServe's logger and Seldon Core's executor send them."""

import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from helpers import ServedApp, metric_sum
from prometheus_client import CollectorRegistry

from seismo.services.logger import LoggerSettings, create_app

KSERVE = {
    "ce-specversion": "1.0", "ce-id": "kserve-1", "ce-time": "2026-11-22T10:00:00.5Z", "ce-source": "http://localhost:9081/",
    "ce-inferenceservicename": "sklearn-iris", "ce-namespace": "default", "ce-component": "predictor",
    "ce-endpoint": "default", "content-type": "application/json",
}
SELDON = {
    "ce-specversion": "1.0", "ce-source": "http://iris-model-default:8000/", "ce-modelid": "classifier",
    "ce-requestid": "puid-1", "ce-inferenceservicename": "iris-model", "ce-namespace": "seldon",
    "ce-endpoint": "default", "ce-protocol": "seldon", "content-type": "application/json",
}


@pytest.fixture
def client(tmp_path):
    with ServedApp(create_app(LoggerSettings(sqlite_path=tmp_path / "records.db", models="sklearn-iris,iris-model"), CollectorRegistry())) as c:
        yield c


def post(client, headers, body):
    return client.post("/", headers=headers, content=orjson.dumps(body))


def test_kserve_request_and_response_share_ce_id_and_make_one_record(client):
    post(client, {**KSERVE, "ce-type": "org.kubeflow.serving.inference.request"}, {"instances": [[6.8, 2.8, 4.8, 1.4]]})
    r = post(client, {**KSERVE, "ce-type": "org.kubeflow.serving.inference.response"}, {"predictions": [1]})
    assert r.status_code == 200 and r.json() == {"prediction_id": "kserve-1", "stored": True}
    record = client.get("/v1/records/kserve-1").json()
    assert record["model"] == "sklearn-iris" and record["status"] == 200
    assert record["request"] == {"instances": [[6.8, 2.8, 4.8, 1.4]]} and record["response"] == {"predictions": [1]}
    assert record["extensions"]["namespace"] == "default" and record["annotations"] == {}
    assert record["request_time"].startswith("2026-11-22T10:00:00.5")


def test_seldon_events_with_their_own_ce_ids_join_on_requestid(client):
    post(client, {**SELDON, "ce-id": "a", "ce-type": "io.seldon.serving.inference.request"}, {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}})
    post(client, {**SELDON, "ce-id": "b", "ce-type": "io.seldon.serving.inference.response"},
         {"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0.9, 0.05, 0.05]]}, "meta": {"puid": "puid-1"}})
    record = client.get("/v1/records/puid-1").json()
    assert record["model"] == "iris-model"
    assert record["request"]["data"]["ndarray"] == [[5.1, 3.5, 1.4, 0.2]]
    assert record["response"]["data"]["names"] == ["t:0", "t:1", "t:2"]
    assert record["extensions"]["modelid"] == "classifier" and record["extensions"]["protocol"] == "seldon"
    assert client.get("/v1/records/a").status_code == 404


def test_duplicate_delivery_changes_nothing_and_is_counted(client):
    h = {**KSERVE, "ce-id": "dup-1", "ce-type": "org.kubeflow.serving.inference.request"}
    assert post(client, h, {"instances": [[1]]}).json()["stored"] is True
    before = client.get("/v1/records/dup-1").json()
    assert post(client, h, {"instances": [[1]]}).json()["stored"] is False
    assert client.get("/v1/records/dup-1").json() == before
    assert metric_sum(client.get("/metrics").text, "seismo_logger_events_duplicate_total", model="sklearn-iris") == 1


def test_error_responses_keep_their_status(client):
    post(client, {**KSERVE, "ce-id": "err-1", "ce-type": "org.kubeflow.serving.inference.response", "ce-statuscode": "400"}, {"error": "bad shape"})
    assert client.get("/v1/records/err-1").json()["status"] == 400


def test_list_by_model_since_and_limit(client):
    for i in range(4):
        post(client, {**KSERVE, "ce-id": f"l{i}", "ce-type": "org.kubeflow.serving.inference.request", "ce-inferenceservicename": "lm"}, {"instances": [[i]]})
        time.sleep(0.005)
    records = client.get("/v1/records", params={"model": "lm"}).json()["records"]
    assert [r["prediction_id"] for r in records] == ["l0", "l1", "l2", "l3"]
    since = records[2]["created_at"]
    assert [r["prediction_id"] for r in client.get("/v1/records", params={"model": "lm", "since": since}).json()["records"]] == ["l2", "l3"]
    assert len(client.get("/v1/records", params={"model": "lm", "limit": 1}).json()["records"]) == 1
    assert client.get("/v1/records", params={"model": "nobody"}).json() == {"records": [], "truncated": False}


@pytest.mark.parametrize("params, message", [({"limit": "x"}, "'limit' must be an integer"), ({"limit": "0"}, "between 1 and 1000"),
                                             ({"since": "yesterday"}, "'since' must be epoch seconds or an ISO-8601 time")])
def test_bad_query_parameters_are_400(client, params, message):
    r = client.get("/v1/records", params=params)
    assert r.status_code == 400 and message in r.json()["error"]


def test_bad_events_are_400_and_counted(client):
    assert client.post("/", headers={"content-type": "application/json"}, content=b"{}").status_code == 400
    r = post(client, {**KSERVE, "ce-type": "com.example.unknown"}, {})
    assert r.status_code == 400 and "com.example.unknown" in r.json()["error"]
    assert client.get("/v1/records/unknown-id").status_code == 404
    assert metric_sum(client.get("/metrics").text, "seismo_logger_events_rejected_total", reason="invalid") == 2


def drift_result(window, is_drift):
    return {"is_drift": is_drift, "p_val": 0.01 if is_drift else 0.5, "distance": 0.2, "threshold": 0.05, "feature_p_vals": [0.5],
            "feature_distances": [0.1], "model": "sklearn-iris", "window": window, "size": 100,
            "start": "2026-11-22T10:00:00Z", "end": "2026-11-22T10:01:00Z", "detector": "KSDrift"}


def test_drift_replies_form_the_drift_log_oldest_first_without_duplicates(client):
    drift = {**KSERVE, "ce-type": "org.kubeflow.serving.inference.drift"}
    post(client, {**KSERVE, "ce-id": "w1", "ce-type": "org.kubeflow.serving.inference.request"}, {"instances": [[1]]})
    assert post(client, {**drift, "ce-id": "w1"}, drift_result(0, False)).status_code == 200
    assert post(client, {**drift, "ce-id": "w1"}, drift_result(0, False)).status_code == 200  # redelivered
    assert post(client, {**drift, "ce-id": "no-such-prediction"}, drift_result(1, True)).status_code == 200
    windows = client.get("/v1/drift", params={"model": "sklearn-iris"}).json()["windows"]
    assert [(w["window"], w["is_drift"]) for w in windows] == [(0, False), (1, True)]
    assert {"is_drift", "p_val", "distance", "threshold", "size", "start", "end"} <= set(windows[0])
    # The window's result annotates the prediction that completed it, and creates no record of its own.
    assert client.get("/v1/records/w1").json()["annotations"]["drift"]["window"] == 0
    assert client.get("/v1/records/no-such-prediction").status_code == 404
    assert client.get("/v1/drift", params={"model": "other"}).json() == {"windows": []}
    bad = post(client, {**drift, "ce-id": "w2"}, {"is_drift": True})
    assert bad.status_code == 400 and "'window' number" in bad.json()["error"]


def test_records_carry_the_embedding_and_its_version_own_and_foreign(tmp_path):
    config = tmp_path / "embeddings.yaml"
    config.write_text("models:\n  sklearn-iris:\n    output: penultimate\n    version: sklearn-iris/penultimate@2.1.0\n")
    settings = LoggerSettings(sqlite_path=tmp_path / "records.db", embeddings_config=config)
    with ServedApp(create_app(settings, CollectorRegistry())) as client:
        own = {**KSERVE, "ce-id": "own-1", "ce-type": "org.kubeflow.serving.inference.response", "ce-inferenceservicename": "image-classifier",
               "ce-embeddingversion": "image-classifier/penultimate@1.0.0", "ce-embeddingoutput": "embedding"}
        post(client, own, {"model_name": "image-classifier", "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [2, 2], "data": [0.1, 0.9, 0.8, 0.2]},
            {"name": "embedding", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]})
        record = client.get("/v1/records/own-1").json()
        assert record["embedding"] == [[1, 2, 3], [4, 5, 6]] and record["embedding_version"] == "image-classifier/penultimate@1.0.0"
        # A KServe model returning its own embedding output, named in the config: V1 key beside predictions.
        post(client, {**KSERVE, "ce-id": "foreign-1", "ce-type": "org.kubeflow.serving.inference.response"},
             {"predictions": [1], "penultimate": [[0.5, 0.25]]})
        foreign = client.get("/v1/records/foreign-1").json()
        assert foreign["embedding"] == [[0.5, 0.25]] and foreign["embedding_version"] == "sklearn-iris/penultimate@2.1.0"
        # A record without one says so; a response naming an output it lacks shows none, and reading works.
        post(client, {**KSERVE, "ce-id": "plain-1", "ce-type": "org.kubeflow.serving.inference.request"}, {"instances": [[1]]})
        assert client.get("/v1/records/plain-1").json()["embedding"] is None
        post(client, {**own, "ce-id": "broken-1"}, {"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1], "data": [1]}]})
        broken = client.get("/v1/records/broken-1").json()
        assert broken["embedding"] is None and broken["embedding_version"] == "image-classifier/penultimate@1.0.0"
        versions = client.get("/v1/embeddings/versions").json()["versions"]
        assert {v["version"]: v["count"] for v in versions} == {"image-classifier/penultimate@1.0.0": 2,
                                                                 "sklearn-iris/penultimate@2.1.0": 1}
        assert all(v["first"].endswith("Z") and v["first"] <= v["last"] for v in versions)
        only = client.get("/v1/embeddings/versions", params={"model": "sklearn-iris"}).json()["versions"]
        assert [v["version"] for v in only] == ["sklearn-iris/penultimate@2.1.0"]


def test_a_malformed_embeddings_config_stops_the_logger_with_its_reason(tmp_path):
    config = tmp_path / "embeddings.yaml"
    config.write_text("models:\n  m:\n    output: e\n    version: m-1.0\n")
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        create_app(LoggerSettings(sqlite_path=tmp_path / "records.db", embeddings_config=config), CollectorRegistry())


def test_embedding_clusters_name_a_cluster_the_reference_never_had(tmp_path):
    from seismo.detect import EmbeddingDrift, save_detector

    rng = np.random.default_rng(0)
    centres = np.array([[0.0] * 4, [8.0, 0, 0, 0], [0, 8.0, 0, 0]])
    reference = np.concatenate([c + rng.normal(scale=0.5, size=(100, 4)) for c in centres[:2]])
    folder = save_detector(EmbeddingDrift(version="m/e@1.0.0", n_draws=50).fit(reference), tmp_path / "emb")
    settings = LoggerSettings(sqlite_path=tmp_path / "records.db", embedding_reference_path=folder)
    with ServedApp(create_app(settings, CollectorRegistry())) as client:
        assert client.get("/v1/embeddings/clusters").status_code == 400
        for i in range(60):  # 30 like the reference's first cluster, 30 somewhere new; the new ones all wrong
            new = i % 2 == 1
            vector = (centres[2] if new else centres[0]) + rng.normal(scale=0.5, size=4)
            headers = {**KSERVE, "ce-id": f"c{i}", "ce-type": "org.kubeflow.serving.inference.response", "ce-inferenceservicename": "m",
                       "ce-embeddingversion": "m/e@1.0.0", "ce-embeddingoutput": "embedding"}
            post(client, headers, {"predictions": [[0.9, 0.1]], "embedding": [vector.tolist()]})
            post(client, {**KSERVE, "ce-id": f"f{i}", "ce-type": "io.seldon.serving.feedback", "ce-requestid": f"c{i}",
                          "ce-inferenceservicename": "m"}, {"truth": {"data": {"ndarray": [1 if new else 0]}}})
        answer = client.get("/v1/embeddings/clusters", params={"model": "m"}).json()
        assert answer["production_points"] == 60 and answer["reference_points"] == 200
        first = answer["clusters"][0]
        assert first["status"] == "new" and first["production"] == 30 and first["reference"] == 0
        assert first["accuracy"] == 0.0 and first["with_truth"] == 30
        assert len(first["top_ids"]) == 5 and all(int(pid[1:]) % 2 == 1 for pid in first["top_ids"])
        known = [c for c in answer["clusters"] if c["status"] != "new"]
        assert any(c["production"] == 30 and c["accuracy"] == 1.0 for c in known)
        assert client.get("/v1/embeddings/clusters", params={"model": "m", "since": "soon"}).status_code == 400
    with ServedApp(create_app(LoggerSettings(sqlite_path=tmp_path / "r2.db"), CollectorRegistry())) as bare:
        missing = bare.get("/v1/embeddings/clusters", params={"model": "m"})
        assert missing.status_code == 404 and "SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH" in missing.json()["error"]


def test_lineage_walks_parent_ids_upstream_and_stops_at_unknown_parents_and_cycles(client):
    def predict(pid, model, parent=None):
        headers = {**KSERVE, "ce-id": pid, "ce-inferenceservicename": model, "ce-modelversion": "7",
                   "ce-type": "org.kubeflow.serving.inference.response"}
        if parent:
            headers["ce-parentid"] = parent
        assert post(client, headers, {"predictions": [1]}).status_code == 200

    predict("asr-1", "sklearn-iris")
    predict("intent-1", "iris-model", parent="asr-1")
    predict("reply-1", "iris-model", parent="intent-1")
    doc = client.get("/v1/records/reply-1/lineage").json()
    assert [link["prediction_id"] for link in doc["chain"]] == ["reply-1", "intent-1", "asr-1"] and doc["complete"] is True
    assert doc["chain"][1] == {"prediction_id": "intent-1", "model": "iris-model", "model_version": "7", "created_at": doc["chain"][1]["created_at"],
                               "status": 200, "parent_id": "asr-1"}
    predict("orphan-1", "iris-model", parent="not-stored-yet")
    orphan = client.get("/v1/records/orphan-1/lineage").json()
    assert [link["prediction_id"] for link in orphan["chain"]] == ["orphan-1"] and orphan["complete"] is False
    predict("loop-a", "iris-model", parent="loop-b")
    predict("loop-b", "iris-model", parent="loop-a")
    loop = client.get("/v1/records/loop-a/lineage").json()
    assert [link["prediction_id"] for link in loop["chain"]] == ["loop-a", "loop-b"] and loop["complete"] is False
    missing = client.get("/v1/records/nope/lineage")
    assert missing.status_code == 404 and "no record for prediction id 'nope'" in missing.json()["error"]


GRAPHS = Path(__file__).resolve().parents[2] / "data" / "seldon-graphs.yaml"  # audio-prep -> asr -> intent


def test_seldon_graph_nodes_get_their_own_records_and_lineage_when_the_graph_is_given(tmp_path):
    """Seldon Core's executor logs each node of a graph under the puid, naming the node in ce-modelid; a node
    logs the request it was given and, once its children answered, the subtree's response."""
    node = {**SELDON, "ce-inferenceservicename": "assistant", "ce-namespace": "voice", "ce-requestid": "puid-7"}
    sent = [  # as the executor's asynchronous log workers may deliver them: out of order, one twice
        ("intent", "response", {"data": {"ndarray": [[0.1, 0.9]]}}),
        ("audio-prep", "request", {"data": {"ndarray": [[0.5, 0.25, 0.125]]}}),
        ("asr", "request", {"data": {"ndarray": [[5.0, 2.5, 1.25]]}}),
        ("intent", "request", {"data": {"ndarray": [[3, 1]]}}),
        ("asr", "response", {"data": {"ndarray": [[0.1, 0.9]]}}),
        ("audio-prep", "response", {"data": {"ndarray": [[0.1, 0.9]]}}),
        ("intent", "response", {"data": {"ndarray": [[0.1, 0.9]]}}),
    ]
    with ServedApp(create_app(LoggerSettings(sqlite_path=tmp_path / "r.db", seldon_graphs=GRAPHS), CollectorRegistry())) as c:
        answers = [post(c, {**node, "ce-id": f"e{i}", "ce-modelid": name, "ce-type": f"io.seldon.serving.inference.{kind}"}, body).json()
                   for i, (name, kind, body) in enumerate(sent)]
        assert [a["prediction_id"] for a in answers] == ["puid-7:intent", "puid-7", "puid-7:asr", "puid-7:intent", "puid-7:asr", "puid-7",
                                                         "puid-7:intent"]
        assert [a["stored"] for a in answers] == [True] * 6 + [False]  # the redelivery changed nothing
        root, asr, intent = (c.get(f"/v1/records/{pid}").json() for pid in ("puid-7", "puid-7:asr", "puid-7:intent"))
        assert (root["model"], asr["model"], intent["model"]) == ("assistant", "assistant.asr", "assistant.intent")
        assert root["request"]["data"]["ndarray"] == [[0.5, 0.25, 0.125]] and asr["request"]["data"]["ndarray"] == [[5.0, 2.5, 1.25]]
        assert intent["request"]["data"]["ndarray"] == [[3, 1]] and "parentid" not in root["extensions"]
        assert (asr["extensions"]["parentid"], intent["extensions"]["parentid"]) == ("puid-7", "puid-7:asr")
        chain = c.get("/v1/records/puid-7:intent/lineage").json()
        assert [link["prediction_id"] for link in chain["chain"]] == ["puid-7:intent", "puid-7:asr", "puid-7"] and chain["complete"] is True
        assert [link["model"] for link in chain["chain"]] == ["assistant.intent", "assistant.asr", "assistant"]
        # A detector's reply copies the node's extensions and names the puid: it annotates the node's record
        reply = {**KSERVE, "ce-id": "o1", "ce-type": "org.kubeflow.serving.inference.outlier", "ce-requestid": "puid-7",
                 "ce-inferenceservicename": "assistant", "ce-modelid": "asr", "ce-endpoint": "default", "ce-namespace": "voice"}
        assert post(c, reply, {"data": {"is_outlier": [1]}}).json() == {"prediction_id": "puid-7:asr", "stored": True}
        assert c.get("/v1/records/puid-7:asr").json()["annotations"]["outlier"] == {"data": {"is_outlier": [1]}}
        # Seldon's feedback goes to every node: each node's record keeps its copy
        for name in ("audio-prep", "intent"):
            assert post(c, {**node, "ce-id": f"f-{name}", "ce-modelid": name, "ce-type": "io.seldon.serving.feedback"},
                        {"truth": {"data": {"ndarray": [[0, 1]]}}}).json()["stored"] is True
        assert "feedback" in c.get("/v1/records/puid-7").json()["annotations"]
        assert "feedback" in c.get("/v1/records/puid-7:intent").json()["annotations"]
        # A hostile node name or a puid too long to name a node's record: 400 naming it, counted
        bad = post(c, {**node, "ce-id": "x1", "ce-modelid": "Bad_Node", "ce-type": "io.seldon.serving.inference.request"}, {"data": {}})
        assert bad.status_code == 400 and "DNS-1123" in bad.json()["error"]
        long = post(c, {**node, "ce-id": "x2", "ce-requestid": "p" * 250, "ce-modelid": "intent",
                        "ce-type": "io.seldon.serving.inference.request"}, {"data": {}})
        assert long.status_code == 400 and "too long for graph node 'intent'" in long.json()["error"]
        assert metric_sum(c.get("/metrics").text, "seismo_logger_events_rejected_total", reason="invalid") == 2
        assert c.get("/v1/records", params={"model": "assistant.intent"}).json()["records"][0]["prediction_id"] == "puid-7:intent"
    # Without the graph the nodes fold into the puid's record: the first node's events win, the others are duplicates
    with ServedApp(create_app(LoggerSettings(sqlite_path=tmp_path / "bare.db"), CollectorRegistry())) as bare:
        stored = [post(bare, {**node, "ce-id": f"e{i}", "ce-modelid": name, "ce-type": f"io.seldon.serving.inference.{kind}"}, body).json()
                  for i, (name, kind, body) in enumerate(sent)]
        assert {a["prediction_id"] for a in stored} == {"puid-7"} and sum(a["stored"] for a in stored) == 2


def test_retention_is_on_by_default_and_removes_what_is_older(tmp_path):
    """A store must not grow without bound by default: records older than SEISMO_LOGGER_RETENTION_SECONDS
    (30 days unless set) are removed in the background and counted."""
    from helpers import wait_until

    assert LoggerSettings(sqlite_path=tmp_path / "unused.db").retention_seconds == 30 * 86400
    settings = LoggerSettings(sqlite_path=tmp_path / "records.db", retention_seconds=0.5, retention_interval_seconds=0.1)
    with ServedApp(create_app(settings, CollectorRegistry())) as c:
        post(c, {**KSERVE, "ce-id": "old-1", "ce-type": "org.kubeflow.serving.inference.request"}, {"instances": [[1.0, 2.0]]})
        assert c.get("/v1/records/old-1").status_code == 200
        wait_until(lambda: c.get("/v1/records/old-1").status_code == 404, 10, message="the old record removed")
        # counted once the removal returned: a read may come between the delete and the count (CI saw 0 here)
        wait_until(lambda: metric_sum(c.get("/metrics").text, "seismo_logger_retention_removed_total", what="records") == 1, 10,
                   message="the removal counted")
        post(c, {**KSERVE, "ce-id": "new-1", "ce-type": "org.kubeflow.serving.inference.request"}, {"instances": [[1.0, 2.0]]})
        assert c.get("/v1/records/new-1").status_code == 200  # younger than the retention: kept


def test_a_logger_whose_store_refuses_every_write_is_not_ready(tmp_path, monkeypatch):
    """A pipeline that stores nothing reported healthy; now /readyz says why (the broker keeps the events)."""
    import seismo.services.logger.core as logger_module
    from seismo.store import SQLiteRecordStore

    class FullDisk(SQLiteRecordStore):
        failing = True

        def apply(self, updates):
            if self.failing:
                raise OSError("database or disk is full")
            return super().apply(updates)

    monkeypatch.setattr(logger_module, "STORE_FAILING_SECONDS", 0.3)
    store = FullDisk(tmp_path / "r.db")
    with ServedApp(create_app(LoggerSettings(sqlite_path=tmp_path / "r.db"), CollectorRegistry(), store)) as client:
        assert client.get("/readyz").status_code == 200
        assert post(client, {**KSERVE, "ce-id": "full-1", "ce-type": "org.kubeflow.serving.inference.request"}, {"instances": [[1]]}).status_code == 503
        assert client.get("/readyz").status_code == 200  # one failure is not a stopped pipeline
        time.sleep(0.4)
        assert post(client, {**KSERVE, "ce-id": "full-2", "ce-type": "org.kubeflow.serving.inference.request"}, {"instances": [[1]]}).status_code == 503
        answer = client.get("/readyz")
        assert answer.status_code == 503 and "refused every write" in answer.json()["error"] and "disk is full" in answer.json()["error"]
        store.failing = False
        assert post(client, {**KSERVE, "ce-id": "full-3", "ce-type": "org.kubeflow.serving.inference.request"}, {"instances": [[1]]}).status_code == 200
        assert client.get("/readyz").status_code == 200
