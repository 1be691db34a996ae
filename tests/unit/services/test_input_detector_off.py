"""The detectors with their input detector off (SEISMO_{DRIFT,OUTLIER}_INPUT_DETECTOR=false): what `seismo up`
and the chart run while the broker sends them no requests. Response events are checked as before, request
events are a counted 400, nothing loads the input detector (so no TensorFlow), and `seismo up` sets it so."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import orjson
import pytest
from helpers import ServedApp, metric_sum
from prometheus_client import CollectorRegistry
from test_detector_services import EMB_REF, EMB_VERSION, REF, request_event, response_event

from seismo.detect import ClassMahalanobisAdversarial, EmbeddingDrift, save_detector
from seismo.local import LocalStack
from seismo.protocol.cloudevents import from_http
from seismo.services.drift import DriftSettings
from seismo.services.drift import create_app as drift_app
from seismo.services.outlier import OutlierSettings
from seismo.services.outlier import create_app as outlier_app


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("input-off")
    labels = np.repeat([0, 1], 200)
    vectors = np.random.default_rng(3).normal(size=(400, 8)) + labels[:, None] * 4.0
    save_detector(ClassMahalanobisAdversarial(version=EMB_VERSION).fit(vectors, labels), root / "adversarial")
    save_detector(EmbeddingDrift(version=EMB_VERSION, n_draws=200).fit(EMB_REF), root / "embedding")
    return root


def test_drift_without_its_input_detector_tests_embeddings_and_refuses_requests(folders, tmp_path):
    # detector_path names nothing: with the input detector off it is never read
    settings = DriftSettings(detector_path=tmp_path / "absent", input_detector=False, model="tab", state_path=tmp_path / "w.db",
                             embedding_detector_path=folders / "embedding", embedding_window_size=20, embedding_state_path=tmp_path / "e.db")
    with ServedApp(drift_app(settings, CollectorRegistry())) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/", headers=(hb := response_event(1, EMB_REF[:10]))[0], content=hb[1]).status_code == 202
        r = client.post("/", headers=(hb := response_event(2, EMB_REF[10:20] + 3.0))[0], content=hb[1])
        assert r.status_code == 200 and orjson.loads(from_http(r.headers, r.content).data)["detector"] == "EmbeddingDrift"
        refused = client.post("/", headers=(hb := request_event(3, REF[:2]))[0], content=hb[1])
        assert refused.status_code == 400 and "SEISMO_DRIFT_INPUT_DETECTOR" in refused.json()["error"]
        metrics = client.get("/metrics").text
        assert metric_sum(metrics, "seismo_drift_events_rejected_total", model="tab", reason="input_detector_off") == 1
        assert client.get("/healthz").status_code == 200
    assert not (tmp_path / "w.db").exists()  # no input windows kept


def test_outlier_without_its_input_detector_checks_responses_and_refuses_requests(folders, tmp_path):
    settings = OutlierSettings(detector_path=tmp_path / "absent", input_detector=False, model="tab",
                               adversarial_detector_path=folders / "adversarial")
    with ServedApp(outlier_app(settings, CollectorRegistry())) as client:
        assert client.get("/readyz").status_code == 200
        r = client.post("/", headers=(hb := response_event(1, np.full((1, 8), 30.0)))[0], content=hb[1])
        assert r.status_code == 200 and orjson.loads(from_http(r.headers, r.content).data)["is_adversarial"] == [1]
        refused = client.post("/", headers=(hb := request_event(2, REF[:2]))[0], content=hb[1])
        assert refused.status_code == 400 and "SEISMO_OUTLIER_INPUT_DETECTOR" in refused.json()["error"]
        metrics = client.get("/metrics").text
        assert metric_sum(metrics, "seismo_outlier_events_rejected_total", model="tab", reason="input_detector_off") == 1
        assert metric_sum(metrics, "seismo_adversarial_instances_total", model="tab", outcome="adversarial") == 1


def test_a_detector_left_with_nothing_to_do_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH leaves this service nothing"):
        drift_app(DriftSettings(input_detector=False, state_path=tmp_path / "w.db"), CollectorRegistry())
    with pytest.raises(ValueError, match="SEISMO_OUTLIER_ADVERSARIAL=false leave this service nothing"):
        outlier_app(OutlierSettings(input_detector=False, adversarial=False), CollectorRegistry())


def test_the_drift_clock_expires_embedding_event_ids_too(folders, tmp_path):
    """Before, the embedding windows kept every response event's id for good (the store grew without end)."""
    settings = DriftSettings(input_detector=False, model="tab", state_path=tmp_path / "w.db", dedup_seconds=0.05,
                             embedding_detector_path=folders / "embedding", embedding_window_size=20, embedding_state_path=tmp_path / "e.db")
    app = drift_app(settings, CollectorRegistry())
    with ServedApp(app) as client:
        assert client.post("/", headers=(hb := response_event(1, EMB_REF[:3]))[0], content=hb[1]).status_code == 202
        service = app.state.drift
        seen = lambda: service.embeddings.store.sql.execute("SELECT COUNT(*) FROM seen").fetchone()[0]  # noqa: E731
        assert seen() == 1
        time.sleep(0.1)
        service._forget_seen()
        assert seen() == 0


def test_the_example_services_load_no_tensorflow_with_their_input_detectors_off(example_model, tmp_path):
    """The point of the setting: the example's drift and outlier services (their input detectors are Keras
    networks) start without importing TensorFlow, in their own interpreter."""
    env = LocalStack(tmp_path).child_env()  # what `seismo up` gives them by default
    assert env["SEISMO_DRIFT_INPUT_DETECTOR"] == env["SEISMO_OUTLIER_INPUT_DETECTOR"] == "false"
    code = textwrap.dedent("""
        import asyncio, sys
        from prometheus_client import CollectorRegistry
        from seismo.services.drift import DriftService, DriftSettings
        from seismo.services.outlier import OutlierService, OutlierSettings
        async def main(state):
            drift = DriftService(DriftSettings(state_path=state + "/w.db", embedding_state_path=state + "/e.db"), CollectorRegistry())
            outlier = OutlierService(OutlierSettings(), CollectorRegistry())
            await drift.start(); await outlier.start()
            assert drift.ready and outlier.ready and drift.embeddings is not None and outlier.adversarial is not None
            await drift.stop(); await outlier.stop()
        asyncio.run(main(sys.argv[1]))
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        assert not loaded, loaded[:5]
    """)
    child = {k: v for k, v in env.items() if k.startswith(("SEISMO_DRIFT_", "SEISMO_OUTLIER_"))} | {"PATH": os.environ["PATH"]}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=child, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_seismo_up_keeps_the_input_detectors_when_the_broker_sends_requests(tmp_path, monkeypatch):
    on = LocalStack(tmp_path, env={"SEISMO_BROKER_INPUT_DETECTORS": "true"}).child_env()
    assert "SEISMO_DRIFT_INPUT_DETECTOR" not in on and "SEISMO_OUTLIER_INPUT_DETECTOR" not in on
    # a drift service with no embedding to watch keeps its input detector (else it would have nothing to test)
    monkeypatch.setenv("SEISMO_DRIFT_MODEL", "someone-else")  # as a user of `seismo up` sets it
    other = LocalStack(tmp_path).child_env()
    assert "SEISMO_DRIFT_INPUT_DETECTOR" not in other and other["SEISMO_OUTLIER_INPUT_DETECTOR"] == "false"
    assert "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH" not in other  # the example's embedding belongs to the example model
    monkeypatch.delenv("SEISMO_DRIFT_MODEL")
    # the same named in the stack's own settings (a library caller's LocalStack(env=...)): before, only the
    # caller's environment was read, and the other model's drift service got the example's embedding detector
    passed = LocalStack(tmp_path, env={"SEISMO_DRIFT_MODEL": "someone-else"}).child_env()
    assert "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH" not in passed and "SEISMO_DRIFT_INPUT_DETECTOR" not in passed


def test_two_replicas_without_input_detectors_share_one_sequence_of_embedding_windows(folders, tmp_path, postgres_url):
    """The default deployment's shape scaled out: drift replicas with the input detector off, on PostgreSQL.
    Each response event goes to one replica and is redelivered to the other: the windows and results one
    replica alone gives, none twice."""
    rng = np.random.default_rng(9)
    events = [response_event(i, rng.normal(0.0 if i < 8 else 2.0, size=(5, 8))) for i in range(16)]

    def results(answers: list) -> list[tuple]:
        return [(d["window"], d["size"], d["is_drift"]) for d in
                (orjson.loads(from_http(r.headers, r.content).data) for r in answers if r.status_code == 200)]

    def settings(name: str, postgres: str | None) -> DriftSettings:
        return DriftSettings(input_detector=False, model="tab", state_path=tmp_path / f"{name}.db", postgres_url=postgres,
                             embedding_detector_path=folders / "embedding", embedding_window_size=20,
                             embedding_state_path=tmp_path / f"{name}-e.db")

    with ServedApp(drift_app(settings("alone", None), CollectorRegistry())) as alone:
        expected = results([alone.post("/", headers=h, content=b) for h, b in events])
    assert [w for w, *_ in expected] == [0, 1, 2, 3] and expected[0][2] is False and expected[-1][2] is True
    with ServedApp(drift_app(settings("a", postgres_url), CollectorRegistry())) as a, \
            ServedApp(drift_app(settings("b", postgres_url), CollectorRegistry())) as b:
        answers, redelivered = [], []
        for i, (h, body) in enumerate(events):
            first, other = (a, b) if i % 2 == 0 else (b, a)
            answers.append(first.post("/", headers=h, content=body))
            redelivered.append(other.post("/", headers=h, content=body))
        assert results(answers) == expected and results(redelivered) == expected
        assert all(r.status_code in (200, 202) for r in answers + redelivered)
