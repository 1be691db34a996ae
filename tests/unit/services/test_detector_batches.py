"""Batched deliveries to the outlier and drift services, and through the broker: every event answered
as if it had come alone (status, reply, counters), one bad event failing alone, the replies journaled."""

from dataclasses import replace

import httpx
import jsonschema
import numpy as np
import orjson
import pytest
from helpers import RecordingSink, ServedApp, ThreadServer, metric_sum, operation_for, wait_until
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from test_broker import broker_app, trigger
from test_detector_services import EMB_VERSION, REF, request_event, response_event

from seismo.detect import ClassMahalanobisAdversarial, KSDrift, MahalanobisOutlier, save_detector
from seismo.protocol.cloudevents import BATCH_CONTENT_TYPE, CloudEvent, from_http, from_structured_doc, to_batch
from seismo.services.detector_events import reply
from seismo.services.drift import DriftSettings
from seismo.services.drift import create_app as drift_app
from seismo.services.event_http import respond
from seismo.services.outlier import OutlierSettings
from seismo.services.outlier import create_app as outlier_app

BATCH = {"content-type": BATCH_CONTENT_TYPE}
OUTLIER_TYPE = "org.kubeflow.serving.inference.outlier"


def as_event(headers_body) -> CloudEvent:
    return from_http(*headers_body)


def batch_of(*events) -> bytes:
    return to_batch([e if isinstance(e, CloudEvent) else as_event(e) for e in events])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch-detectors")
    save_detector(MahalanobisOutlier().fit(REF), folder / "outlier")
    save_detector(KSDrift().fit(REF), folder / "drift")
    labels = np.repeat([0, 1, 2], 200)
    vectors = np.random.default_rng(7).normal(size=(600, 8)) + labels[:, None] * 4.0
    save_detector(ClassMahalanobisAdversarial(version=EMB_VERSION).fit(vectors, labels), folder / "adversarial")
    return folder


def outlier_settings(folder, **extra) -> OutlierSettings:
    return OutlierSettings(detector_path=folder / "outlier", model="tab", adversarial_detector_path=folder / "adversarial", **extra)


def test_an_outlier_batch_answers_each_event_as_a_single_delivery_would(folder):
    far = np.vstack([REF[:2], REF[:1] + 10])
    with ServedApp(outlier_app(outlier_settings(folder, max_batch_events=10), CollectorRegistry())) as client:
        single = client.post("/", headers=request_event(1, far)[0], content=request_event(1, far)[1])
        single_data = orjson.loads(from_http(single.headers, single.content).data)
        no_id = {k: v for k, v in orjson.loads(batch_of(request_event(9, REF[:1])))[0].items() if k != "id"}
        nan = as_event(request_event(6, REF[:1]))
        items = [
            orjson.loads(batch_of(request_event(1, far)))[0],                      # 200: the same scores as alone
            orjson.loads(batch_of(response_event(2, np.full((1, 8), 30.0))))[0],  # 200: an adversarial reply
            orjson.loads(batch_of(response_event(3, REF[:1], version=None)))[0],  # 204: no embedding, no reply
            orjson.loads(batch_of(request_event(4, np.ones((2, 5)))))[0],         # 400 wrong_shape
            no_id,                                                                # 400 invalid_event
            orjson.loads(batch_of(request_event(5, REF[:1], model="other")))[0],  # 400 unknown_model
            orjson.loads(batch_of(CloudEvent(nan.id, nan.source, nan.type, b'{"instances": [[1, NaN, 0, 0]]}', "application/json",
                                             extensions=nan.extensions)))[0],   # 400 bad_payload
            orjson.loads(batch_of(request_event(7, REF[3:5])))[0],                # 200
        ]
        r = client.post("/", headers=BATCH, content=orjson.dumps(items))
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["status"] for x in results] == [200, 200, 204, 400, 400, 400, 400, 200]
        assert [x.get("id") for x in results] == ["p1", "r2", "r3", "p4", None, "p5", "p6", "p7"]
        assert "shape [5]" in results[3]["error"] and "'id'" in results[4]["error"] and "no detector for model 'other'" in results[5]["error"]
        assert "not valid JSON" in results[6]["error"]
        assert [("reply" in x) for x in results] == [True, True, False, False, False, False, False, True]
        first = from_structured_doc(results[0]["reply"])
        assert first.type == OUTLIER_TYPE and first.id == "p1" and first.extensions["inferenceservicename"] == "tab"
        assert orjson.loads(first.data)["is_outlier"] == single_data["is_outlier"] == [0, 0, 1]
        assert orjson.loads(first.data)["instance_score"] == pytest.approx(single_data["instance_score"])
        assert isinstance(results[0]["reply"]["data"], dict)  # reply data inline as JSON, readable in the answer
        adversarial = from_structured_doc(results[1]["reply"])
        assert adversarial.type == "io.seismo.inference.adversarial" and orjson.loads(adversarial.data)["is_adversarial"] == [1]
        # The answers are what the service's OpenAPI document says: a batch's results, a reply's data.
        doc = client.get("/openapi.json").json()
        schema = {**operation_for(doc, "POST", "/")["responses"]["200"]["content"]["application/json"]["schema"],
                  "components": doc["components"]}
        for answer in (r.json(), single.json(), results[1]["reply"]["data"]):
            errors = list(jsonschema.Draft202012Validator(schema).iter_errors(answer))
            assert not errors, f"{errors[0].json_path}: {errors[0].message}"
        assert list(jsonschema.Draft202012Validator(schema).iter_errors({"results": [{"status": "ok"}]}))  # the check can fail
        metrics = client.get("/metrics").text
        for reason in ("wrong_shape", "invalid_event", "unknown_model", "bad_payload"):
            assert metric_sum(metrics, "seismo_outlier_events_rejected_total", reason=reason) == 1, reason
        assert metric_sum(metrics, "seismo_outlier_instances_total") == 3 + 3 + 2  # the single delivery, p1 and p7
        assert metric_sum(metrics, "seismo_adversarial_events_skipped_total", reason="no_embedding") == 1

        # The batch as a whole: too many events, not an array, empty, too large: one 4xx, nothing scored.
        assert "at most 10 events" in client.post("/", headers=BATCH, content=orjson.dumps(items * 2)).json()["error"]
        for body in (b'{"not": "an array"}', b"[]", b"[" * 300 + b"]" * 300):
            assert client.post("/", headers=BATCH, content=body).status_code == 400
        assert metric_sum(client.get("/metrics").text, "seismo_outlier_instances_total") == 8
    with ServedApp(outlier_app(outlier_settings(folder, max_event_bytes=1000), CollectorRegistry())) as client:
        assert client.post("/", headers=BATCH, content=orjson.dumps(items)).status_code == 413


def test_a_drift_batch_fills_windows_in_order_and_a_redelivered_batch_adds_nothing(folder, tmp_path):
    settings = DriftSettings(detector_path=folder / "drift", model="tab", window_size=10, state_path=tmp_path / "w.db")
    rows = np.random.default_rng(3).normal(size=(12, 4))
    body = batch_of(*(request_event(i, rows[3 * i:3 * i + 3]) for i in range(4)), request_event(9, np.ones((1, 3))))
    with ServedApp(drift_app(settings, CollectorRegistry())) as client:
        results = client.post("/", headers=BATCH, content=body).json()["results"]
        assert [x["status"] for x in results] == [202, 202, 202, 200, 400]  # the 4th event filled the window of 10
        window = from_structured_doc(results[3]["reply"])
        assert window.type == "org.kubeflow.serving.inference.drift" and window.id == "p3"
        assert orjson.loads(window.data)["size"] == 10 and orjson.loads(window.data)["window"] == 0
        again = client.post("/", headers=BATCH, content=body).json()["results"]  # the broker redelivers the batch
        assert [x["status"] for x in again] == [202, 202, 202, 200, 400]
        assert orjson.loads(from_structured_doc(again[3]["reply"]).data) == orjson.loads(window.data)  # the first answer, not a new window
        metrics = client.get("/metrics").text
        assert metric_sum(metrics, "seismo_drift_instances_total") == 12
        assert metric_sum(metrics, "seismo_drift_events_duplicate_total") == 4
        assert metric_sum(metrics, "seismo_drift_window_fill") == 2
        assert metric_sum(metrics, "seismo_drift_windows_total") == 1
        assert metric_sum(metrics, "seismo_drift_events_rejected_total", reason="wrong_shape") == 2


def test_the_broker_journals_the_replies_of_a_batched_detector_and_dead_letters_a_bad_event_alone(folder, tmp_path):
    replies, dead = RecordingSink(), RecordingSink()
    settings = OutlierSettings(detector_path=folder / "outlier", model="tab", adversarial=False)
    with ThreadServer(outlier_app(settings, CollectorRegistry())) as detector, ThreadServer(replies.app()) as sink, \
            ThreadServer(dead.app()) as dls:
        to_detector = replace(trigger("to-outlier", detector.url, retry=1, dead_letter=dls.url + "/"), batch=16)
        with ServedApp(broker_app(tmp_path, [to_detector, trigger("replies", sink.url, type_=OUTLIER_TYPE)])) as broker:
            events = [request_event(i, np.full((1, 4), 10.0 if i % 5 == 0 else 0.01 * i)) for i in range(40)]
            events[17] = request_event(17, np.ones((1, 5)))  # wrong shape: the detector refuses it (400), final
            assert broker.post("/", headers=BATCH, content=batch_of(*events)).status_code == 200
            wait_until(lambda: len(replies.received) == 39 and len(dead.received) == 1, message="39 replies and 1 dead letter")
            got = {r.headers["ce-id"]: orjson.loads(r.body) for r in replies.received}
            assert sorted(got) == sorted(f"p{i}" for i in range(40) if i != 17)
            assert all(got[f"p{i}"]["is_outlier"] == [1 if i % 5 == 0 else 0] for i in range(40) if i != 17)
            assert dead.received[0].headers["ce-id"] == "p17" and dead.received[0].headers["ce-knativeerrorcode"] == "400"
            metrics = broker.get("/metrics").text
            assert metric_sum(metrics, "seismo_broker_deliveries_total", trigger="to-outlier", outcome="delivered") == 39
            assert metric_sum(metrics, "seismo_broker_replies_total") == 39
            assert 3 <= metric_sum(metrics, "seismo_broker_batch_events_count", trigger="to-outlier") < 40  # batches, not singles
        assert metric_sum(httpx.get(detector.url + "/metrics").text, "seismo_outlier_events_rejected_total", reason="wrong_shape") == 1


def test_a_subscriber_that_takes_single_events_only_still_has_its_replies_journaled(tmp_path):
    """A batch refused as such (400, as an older detector or Knative answers) goes one event at a time,
    and each single delivery's reply is journaled, as on a trigger that never batched."""
    refused: list[int] = []

    async def handle(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-type") == BATCH_CONTENT_TYPE:
            refused.append(1)
            return JSONResponse({"error": "batched content mode is not taken here"}, status_code=400)
        return respond(reply(from_http(request.headers, body), OUTLIER_TYPE, "http://single/", {"seen": True}))

    replies = RecordingSink()
    app = Starlette(routes=[Route("/", handle, methods=["POST"])])
    with ThreadServer(app) as sub, ThreadServer(replies.app()) as sink:
        triggers = [replace(trigger("t", sub.url, retry=0), batch=8), trigger("replies", sink.url, type_=OUTLIER_TYPE)]
        with ServedApp(broker_app(tmp_path, triggers)) as broker:
            assert broker.post("/", headers=BATCH, content=batch_of(*(request_event(i, REF[:1]) for i in range(20)))).status_code == 200
            wait_until(lambda: len(replies.received) == 20, message="20 replies")
            assert sorted(r.headers["ce-id"] for r in replies.received) == sorted(f"p{i}" for i in range(20))
            assert len(refused) >= 1
            assert metric_sum(broker.get("/metrics").text, "seismo_broker_dead_letters_total") == 0


def test_a_broker_restart_between_batches_to_a_detector_loses_and_repeats_no_reply(folder, tmp_path):
    """Batch 1 is journaled while the detector's trigger fails; the broker restarts on the same journal
    (now reaching the detector) and batch 2 arrives: exactly one reply per event."""
    failing, replies = RecordingSink(always_status=503), RecordingSink()
    settings = OutlierSettings(detector_path=folder / "outlier", model="tab", adversarial=False)
    with ThreadServer(outlier_app(settings, CollectorRegistry())) as detector, ThreadServer(failing.app()) as down, \
            ThreadServer(replies.app()) as sink:
        reply_trigger = trigger("replies", sink.url, type_=OUTLIER_TYPE)
        before = replace(trigger("to-outlier", down.url, retry=1000, delay=0.05), batch=16)
        with ServedApp(broker_app(tmp_path, [before, reply_trigger])) as broker:
            assert broker.post("/", headers=BATCH, content=batch_of(*(request_event(i, REF[i:i + 1]) for i in range(20)))).status_code == 200
            wait_until(lambda: failing.attempts >= 2, message="deliveries failing before the restart")
        after = replace(trigger("to-outlier", detector.url, retry=5), batch=16)
        with ServedApp(broker_app(tmp_path, [after, reply_trigger])) as broker:
            assert broker.post("/", headers=BATCH, content=batch_of(*(request_event(i, REF[i:i + 1]) for i in range(20, 40)))).status_code == 200
            wait_until(lambda: len(replies.received) >= 40, message="40 replies")
            metrics = broker.get("/metrics").text
        assert sorted(r.headers["ce-id"] for r in replies.received) == sorted(f"p{i}" for i in range(40))
        assert metric_sum(metrics, "seismo_broker_deliveries_total", trigger="to-outlier", outcome="delivered") == 40
        assert metric_sum(metrics, "seismo_broker_dead_letters_total") == 0
