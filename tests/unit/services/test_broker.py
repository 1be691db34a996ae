"""The broker against real subscribers on loopback ports and a real SQLite journal."""



import orjson
import pytest
from helpers import RecordingSink, ServedApp, ThreadServer, free_port, metric_sum, wait_until
from prometheus_client import CollectorRegistry

from seismo.broker.triggers import Delivery, Trigger
from seismo.services.broker import BrokerSettings, create_app

REQUEST_TYPE = "org.kubeflow.serving.inference.request"


def headers(i, type_=REQUEST_TYPE, **ext):
    h = {"ce-specversion": "1.0", "ce-id": f"e{i}", "ce-source": "http://m/", "ce-type": type_,
         "ce-inferenceservicename": "m", "content-type": "application/json"}
    h.update({f"ce-{k}": v for k, v in ext.items()})
    return h


def trigger(name, url, retry=2, delay=0.01, type_=REQUEST_TYPE, dead_letter=None, timeout=5.0):
    return Trigger(name, url + "/", {"type": type_} if type_ else {},
                   Delivery(retry=retry, backoff_policy="linear", backoff_delay=delay, timeout=timeout, dead_letter_uri=dead_letter))


def broker_app(tmp_path, triggers, **settings):
    return create_app(BrokerSettings(journal_path=tmp_path / "broker.db", poll_interval_seconds=0.02, **settings), CollectorRegistry(), triggers)


def test_ingress_contract_202_400_413(tmp_path):
    sink = RecordingSink()
    with ThreadServer(sink.app()) as sub, ServedApp(broker_app(tmp_path, [trigger("t", sub.url)], max_event_bytes=1000)) as broker:
        assert broker.post("/", headers=headers(1), content=b"{}").status_code == 202
        assert broker.post("/default/default", headers=headers(2), content=b"{}").status_code == 202
        structured = {"specversion": "1.0", "id": "s1", "source": "/x", "type": REQUEST_TYPE, "data": {"a": 1}}
        assert broker.post("/", headers={"content-type": "application/cloudevents+json"}, content=orjson.dumps(structured)).status_code == 202
        bad = broker.post("/", headers={k: v for k, v in headers(3).items() if k != "ce-source"}, content=b"{}")
        assert bad.status_code == 400 and "'source'" in bad.json()["error"]
        assert broker.post("/", headers={"content-type": "application/json"}, content=b"{}").status_code == 400
        big = broker.post("/", headers=headers(4), content=b"x" * 2000)
        assert big.status_code == 413 and "1000 bytes" in big.json()["error"]
        wait_until(lambda: len(sink.received) == 3, message="3 deliveries")
        # Delivered in binary mode, whatever mode it came in.
        s1 = next(r for r in sink.received if r.headers["ce-id"] == "s1")
        assert orjson.loads(s1.body) == {"a": 1} and s1.headers["content-type"] == "application/json"
        metrics = broker.get("/metrics").text
        assert metric_sum(metrics, "seismo_broker_events_rejected_total", reason="invalid") == 2
        assert metric_sum(metrics, "seismo_broker_events_rejected_total", reason="too_large") == 1


def test_filters_route_each_event_to_every_matching_trigger(tmp_path):
    requests, responses, everything = RecordingSink(), RecordingSink(), RecordingSink()
    with ThreadServer(requests.app()) as a, ThreadServer(responses.app()) as b, ThreadServer(everything.app()) as c:
        triggers = [trigger("req", a.url), trigger("resp", b.url, type_="org.kubeflow.serving.inference.response"),
                    trigger("all", c.url, type_=None)]
        with ServedApp(broker_app(tmp_path, triggers)) as broker:
            broker.post("/", headers=headers(1), content=b"{}")
            broker.post("/", headers=headers(2, "org.kubeflow.serving.inference.response"), content=b"{}")
            broker.post("/", headers=headers(3, "other.type"), content=b"{}")
            wait_until(lambda: len(everything.received) == 3)
            wait_until(lambda: len(requests.received) == 1 and len(responses.received) == 1)
            # every delivery the broker made is done (a misrouted one would be counted here too)
            wait_until(lambda: metric_sum(broker.get("/metrics").text, "seismo_broker_deliveries_total") >= 5
                       and metric_sum(broker.get("/metrics").text, "seismo_broker_backlog") == 0, message="the broker's deliveries")
            assert [r.headers["ce-id"] for r in requests.received] == ["e1"]
            assert [r.headers["ce-id"] for r in responses.received] == ["e2"]


def test_retries_then_dead_letter_sink_gets_knative_error_extensions(tmp_path):
    failing = RecordingSink(always_status=500)
    dead = RecordingSink()
    with ThreadServer(failing.app()) as sub, ThreadServer(dead.app()) as dls:
        with ServedApp(broker_app(tmp_path, [trigger("t", sub.url, retry=2, dead_letter=dls.url + "/")])) as broker:
            broker.post("/", headers=headers(1), content=b'{"x": 1}')
            wait_until(lambda: len(dead.received) == 1, message="dead letter")
            letter = dead.received[0]
            assert failing.attempts == 3  # the first attempt and two retries
            assert letter.headers["ce-knativeerrordest"] == sub.url + "/"
            assert letter.headers["ce-knativeerrorcode"] == "500"
            import base64

            assert base64.b64decode(letter.headers["ce-knativeerrordata"]).startswith(b"HTTP 500")
            assert letter.body == b'{"x": 1}' and letter.headers["ce-id"] == "e1"
            wait_until(lambda: metric_sum(broker.get("/metrics").text, "seismo_broker_backlog", trigger="t") == 0
                       and metric_sum(broker.get("/metrics").text, "seismo_broker_dead_letters_total", trigger="t", destination="sink") == 1,
                       message="the gauges refreshed (every second)")
            metrics = broker.get("/metrics").text
            assert metric_sum(metrics, "seismo_broker_retries_total", trigger="t") == 2
            assert metric_sum(metrics, "seismo_broker_dead_letters_total", trigger="t", destination="sink") == 1
            assert metric_sum(metrics, "seismo_broker_backlog", trigger="t") == 0


def test_a_4xx_is_final_and_without_a_sink_the_event_stays_in_the_dead_letter_table(tmp_path):
    refusing = RecordingSink(always_status=400)
    with ThreadServer(refusing.app()) as sub:
        with ServedApp(broker_app(tmp_path, [trigger("t", sub.url, retry=5)])) as broker:
            broker.post("/", headers=headers(1), content=b"{}")
            wait_until(lambda: metric_sum(broker.get("/metrics").text, "seismo_broker_dead_letter_table", trigger="t") == 1, 5)
            assert refusing.attempts == 1  # 400 is not retried
            assert metric_sum(broker.get("/metrics").text, "seismo_broker_dead_letters_total", destination="table") == 1


def test_a_dead_subscriber_does_not_hold_back_another_trigger(tmp_path):
    healthy = RecordingSink()
    with ThreadServer(healthy.app()) as ok:
        triggers = [trigger("dead", f"http://127.0.0.1:{free_port()}", retry=50, delay=0.05), trigger("ok", ok.url)]
        with ServedApp(broker_app(tmp_path, triggers)) as broker:
            for i in range(50):
                assert broker.post("/", headers=headers(i), content=b"{}").status_code == 202
            wait_until(lambda: len(healthy.received) == 50, 10, message="healthy trigger got everything")
            wait_until(lambda: metric_sum(broker.get("/metrics").text, "seismo_broker_backlog", trigger="dead") == 50, 5)


def test_pending_deliveries_survive_a_broker_restart(tmp_path):
    port = free_port()
    late = RecordingSink()
    triggers = [trigger("t", f"http://127.0.0.1:{port}", retry=100, delay=0.05)]
    with ServedApp(broker_app(tmp_path, triggers)) as broker:
        for i in range(20):
            broker.post("/", headers=headers(i), content=b"{}")
    # The subscriber was down the whole time; the broker is stopped. A new one on the same journal delivers.
    with ThreadServer(late.app(), port=port), ServedApp(broker_app(tmp_path, triggers)):
        wait_until(lambda: len({r.headers["ce-id"] for r in late.received}) == 20, 15, message="20 events after restart")


def test_a_subscriber_reply_is_published_as_a_new_event(tmp_path):
    """Knative's reply contract: a CloudEvent in a 2xx answer goes back into the broker."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def detector(request):
        return Response(b'{"is_outlier": [0]}', 200, headers={
            "ce-specversion": "1.0", "ce-id": request.headers["ce-id"], "ce-source": "http://outlier/",
            "ce-type": "org.kubeflow.serving.inference.outlier", "ce-inferenceservicename": "m", "content-type": "application/json"})

    replies = RecordingSink()
    with ThreadServer(Starlette(routes=[Route("/", detector, methods=["POST"])])) as det, ThreadServer(replies.app()) as rep:
        triggers = [trigger("detector", det.url), trigger("replies", rep.url, type_="org.kubeflow.serving.inference.outlier")]
        with ServedApp(broker_app(tmp_path, triggers)) as broker:
            broker.post("/", headers=headers(7), content=b"{}")
            wait_until(lambda: len(replies.received) == 1, message="reply delivered")
            assert replies.received[0].headers["ce-id"] == "e7" and replies.received[0].body == b'{"is_outlier": [0]}'


@pytest.mark.integration  # a fresh interpreter: what a service process imports
def test_broker_and_logger_import_no_tensorflow():
    import subprocess
    import sys

    code = "import sys, seismo.cli, seismo.services.broker, seismo.services.logger; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("content", [b"triggers: [{name: x}]"])
def test_bad_trigger_file_fails_at_startup_with_the_reason(tmp_path, content):
    from seismo.broker.triggers import TriggerConfigError

    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    with pytest.raises(TriggerConfigError, match="subscriber.uri"):
        create_app(BrokerSettings(journal_path=tmp_path / "b.db", triggers_file=path), CollectorRegistry())


def test_a_journal_full_of_pending_deliveries_refuses_events_and_says_so_on_readyz(tmp_path):
    """Nothing to shed (the events are still to be delivered, to a subscriber that is down): the ingress
    answers 503 with Retry-After and /readyz says why, until the backlog drains."""
    down = f"http://127.0.0.1:{free_port()}"
    with ServedApp(broker_app(tmp_path, [trigger("down", down, retry=1000, delay=5.0)], max_journal_bytes=400_000)) as broker:
        assert broker.get("/readyz").status_code == 200
        body = b'{"instances": [[' + b"0.5," * 25_000 + b'0.5]]}'  # 100 kB each
        statuses = [broker.post("/", headers=headers(i), content=body).status_code for i in range(4)]
        assert statuses == [202] * 4

        def refused() -> bool:
            return broker.post("/", headers=headers(99), content=body).status_code == 503

        wait_until(refused, 10, message="the full journal refusing events")
        answer = broker.post("/", headers=headers(100), content=b"{}")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5" and "journal is full" in answer.json()["error"]
        ready = broker.get("/readyz")
        assert ready.status_code == 503 and "journal is full" in ready.json()["error"]
        assert broker.get("/healthz").status_code == 200  # alive: a restart would not help
        assert metric_sum(broker.get("/metrics").text, "seismo_broker_retention_removed_total", what="dead_letters_shed") == 0
