"""CloudEvents' batched mode between Seismo's model server and its broker: per-event outcomes, limits,
and the fallback to single events when a sink does not take batches."""

import asyncio

import orjson
from helpers import RecordingSink, ServedApp, ThreadServer, metric_sum, wait_until
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from test_broker import REQUEST_TYPE, broker_app, trigger

from seismo.protocol.cloudevents import BATCH_CONTENT_TYPE, CloudEvent, from_http, to_batch
from seismo.serving.event_sender import EventSender, EventSenderConfig
from seismo.transport.poster import EventPoster

BATCH = {"content-type": BATCH_CONTENT_TYPE}


def event(i: int) -> CloudEvent:
    return CloudEvent(f"e{i}", "http://m/", REQUEST_TYPE, b'{"instances": [[%d]]}' % i, "application/json",
                      extensions={"inferenceservicename": "m", "requestid": f"e{i}"})


def structured(i: int) -> dict:
    return orjson.loads(to_batch([event(i)]))[0]


def test_a_batch_is_journaled_event_by_event_and_bad_events_fail_alone(tmp_path):
    sink = RecordingSink()
    with ThreadServer(sink.app()) as sub, ServedApp(broker_app(tmp_path, [trigger("t", sub.url)], max_batch_events=10)) as broker:
        no_id = {k: v for k, v in structured(2).items() if k != "id"}
        bad_extension = {**structured(4), "bad_name": "x"}
        items = [structured(1), no_id, structured(3), bad_extension, structured(5)]
        r = broker.post("/", headers=BATCH, content=orjson.dumps(items))
        assert r.status_code == 200
        results = r.json()["results"]
        assert [x["status"] for x in results] == [202, 400, 202, 400, 202]
        assert "'id'" in results[1]["error"] and "bad_name" in results[3]["error"]
        wait_until(lambda: len(sink.received) == 3, message="the three good events delivered")
        delivered = {r.headers["ce-id"]: r for r in sink.received}
        assert sorted(delivered) == ["e1", "e3", "e5"]
        assert delivered["e3"].body == b'{"instances": [[3]]}'  # data_base64 comes out byte for byte, in binary mode
        assert delivered["e3"].headers["ce-inferenceservicename"] == "m"
        assert metric_sum(broker.get("/metrics").text, "seismo_broker_events_rejected_total", reason="invalid") == 2
        empty = broker.post("/", headers=BATCH, content=b"[]")
        assert empty.status_code == 400 and "at least one event" in empty.json()["error"]
        many = broker.post("/", headers=BATCH, content=orjson.dumps([structured(i) for i in range(11)]))
        assert many.status_code == 400 and "at most 10 events" in many.json()["error"]
        assert broker.post("/", headers=BATCH, content=b'{"not": "an array"}').status_code == 400


def run_logger(sink_url: str, events: int, until, batch_size: int = 16) -> str:
    registry = CollectorRegistry()

    async def main():
        async with EventPoster() as client:
            logger = EventSender(EventSenderConfig(sink_url, concurrency=1, initial_backoff=0.01, batch_size=batch_size), client, registry)
            logger.start()
            for i in range(events):
                logger.log(event(i))
            deadline = asyncio.get_running_loop().time() + 20
            while not until() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            await logger.stop(drain_timeout=1.0)

    asyncio.run(main())
    return generate_latest(registry).decode()


def test_the_model_servers_logger_sends_batches_to_the_broker(tmp_path):
    sink = RecordingSink()
    with ThreadServer(sink.app()) as sub, ThreadServer(broker_app(tmp_path, [trigger("t", sub.url)])) as broker:
        metrics = run_logger(broker.url + "/", 40, lambda: len(sink.received) >= 40)
        wait_until(lambda: len(sink.received) == 40, message="40 events through the broker")
        assert sorted(r.headers["ce-id"] for r in sink.received) == sorted(f"e{i}" for i in range(40))
    assert metric_sum(metrics, "seismo_model_events_sent_total") == 40
    assert metric_sum(metrics, "seismo_model_events_dropped_total") == 0


def test_batches_are_fewer_requests_than_events():
    sink = RecordingSink()  # answers 202 with no per-event results: every event counts as taken
    with ThreadServer(sink.app()) as server:
        metrics = run_logger(server.url + "/", 40, lambda: sum(len(orjson.loads(r.body)) for r in sink.received) >= 40)
    assert all(r.headers["content-type"] == BATCH_CONTENT_TYPE for r in sink.received)
    ids = [e["id"] for r in sink.received for e in orjson.loads(r.body)]
    assert sorted(ids) == sorted(f"e{i}" for i in range(40)) and len(sink.received) < 40
    assert max(len(orjson.loads(r.body)) for r in sink.received) <= 16
    assert metric_sum(metrics, "seismo_model_events_sent_total") == 40


def test_a_predictions_two_events_go_out_in_one_request_even_with_every_sender_idle():
    """At one client every sender is idle when a prediction logs its request and response events: two
    senders are woken, and the first takes both along (one request, not two); the second finds nothing."""
    sink = RecordingSink()
    registry = CollectorRegistry()

    async def main():
        async with EventPoster() as client:
            logger = EventSender(EventSenderConfig(server.url + "/", concurrency=16, batch_size=64), client, registry)
            logger.start()
            for pair in range(10):
                logger.log(event(2 * pair))
                logger.log(event(2 * pair + 1))
                assert await logger.drain(10.0)
            await logger.stop(drain_timeout=1.0)

    with ThreadServer(sink.app()) as server:
        asyncio.run(main())
    assert [sorted(e["id"] for e in orjson.loads(r.body)) for r in sink.received] == [[f"e{2 * p}", f"e{2 * p + 1}"] for p in range(10)]
    metrics = generate_latest(registry).decode()
    assert metric_sum(metrics, "seismo_model_events_sent_total") == 20
    assert metric_sum(metrics, "seismo_model_events_dropped_total") == 0


def _log_spaced(server_url: str, linger: float, count: int, spacing: float) -> list[int]:
    """Log `count` events `spacing` s apart (one client's predictions); the queue depth seen after each log."""
    registry = CollectorRegistry()
    depths = []

    async def main():
        async with EventPoster() as client:
            logger = EventSender(EventSenderConfig(server_url, concurrency=16, batch_size=64, linger=linger), client, registry)
            logger.start()
            for i in range(count):
                logger.log(event(i))
                await asyncio.sleep(0)
                depths.append(logger.held)
                await asyncio.sleep(spacing)
            await logger.stop(drain_timeout=5.0)

    asyncio.run(main())
    metrics = generate_latest(registry).decode()
    assert metric_sum(metrics, "seismo_model_events_sent_total") == count
    assert metric_sum(metrics, "seismo_model_events_dropped_total") == 0
    return depths


def test_a_lingering_sender_gathers_a_slow_clients_events_into_one_request():
    sink = RecordingSink()
    with ThreadServer(sink.app()) as server:
        depths = _log_spaced(server.url + "/", 0.5, 8, 0.01)
    requests = [[e["id"] for e in orjson.loads(r.body)] for r in sink.received]
    assert requests == [[f"e{i}" for i in range(8)]]  # one request, in order, nothing twice
    assert depths == list(range(1, 9))  # the event a sender holds while it lingers still counts as held


def test_without_linger_each_of_a_slow_clients_events_goes_alone():
    sink = RecordingSink()
    with ThreadServer(sink.app()) as server:
        _log_spaced(server.url + "/", 0.0, 8, 0.05)
    assert len(sink.received) == 8


def test_a_full_batch_ends_the_linger_and_the_rest_is_still_sent():
    """150 events at once with a 1 s linger: batches of 64 go at once (no wait), and the 22 left over
    go after one linger, each event exactly once."""
    sink = RecordingSink()
    registry = CollectorRegistry()

    async def main():
        async with EventPoster() as client:
            logger = EventSender(EventSenderConfig(server.url + "/", concurrency=4, batch_size=64, linger=1.0), client, registry)
            logger.start()
            started = asyncio.get_running_loop().time()
            for i in range(150):
                logger.log(event(i))
            assert await logger.drain(10.0)
            await logger.stop(drain_timeout=1.0)
            return asyncio.get_running_loop().time() - started

    with ThreadServer(sink.app()) as server:
        seconds = asyncio.run(main())
    ids = [e["id"] for r in sink.received for e in orjson.loads(r.body)]
    assert sorted(ids) == sorted(f"e{i}" for i in range(150))
    assert sorted(len(orjson.loads(r.body)) for r in sink.received)[-2:] == [64, 64]
    assert seconds < 3.0  # one linger at most, never one per batch


def test_events_left_over_after_a_linger_are_still_sent():
    """A burst arrives while a sender lingers: the other senders stand aside (they may spend the
    burst's permits), the lingering one takes a full batch, and what it leaves is still sent."""
    sink = RecordingSink()
    registry = CollectorRegistry()

    async def main():
        async with EventPoster() as client:
            logger = EventSender(EventSenderConfig(server.url + "/", concurrency=4, batch_size=64, linger=0.3), client, registry)
            logger.start()
            logger.log(event(0))
            await asyncio.sleep(0.05)  # a sender now lingers with e0
            for i in range(1, 101):
                logger.log(event(i))
            delivered = await logger.drain(5.0)
            await logger.stop(drain_timeout=1.0)
            return delivered

    with ThreadServer(sink.app()) as server:
        assert asyncio.run(main())
    ids = [e["id"] for r in sink.received for e in orjson.loads(r.body)]
    assert sorted(ids) == sorted(f"e{i}" for i in range(101))
    assert metric_sum(generate_latest(registry).decode(), "seismo_model_events_sent_total") == 101


def test_a_sink_that_refuses_batches_gets_single_events():
    singles: list[CloudEvent] = []
    refused: list[int] = []

    async def handle(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-type") == BATCH_CONTENT_TYPE:  # as Knative's broker ingress answers
            refused.append(1)
            return JSONResponse({"error": "batched content mode is not taken here"}, status_code=400)
        singles.append(from_http(request.headers, body))
        return Response(status_code=202)

    app = Starlette(routes=[Route("/", handle, methods=["POST"])])
    with ThreadServer(app) as server:
        metrics = run_logger(server.url + "/", 30, lambda: len(singles) >= 30)
    assert sorted(e.id for e in singles) == sorted(f"e{i}" for i in range(30))
    assert len(refused) == 1  # refused once, then single events only
    assert metric_sum(metrics, "seismo_model_events_sent_total") == 30
    assert metric_sum(metrics, "seismo_model_events_dropped_total") == 0


def test_the_broker_delivers_batches_to_the_logger_and_a_bad_event_is_dead_lettered_alone(tmp_path):
    from dataclasses import replace

    from seismo.services.logger import LoggerSettings
    from seismo.services.logger import create_app as logger_app

    dead = RecordingSink()
    logger = logger_app(LoggerSettings(sqlite_path=tmp_path / "records.db"), CollectorRegistry())
    with ThreadServer(logger) as log_server, ThreadServer(dead.app()) as dls:
        batched = replace(trigger("to-logger", log_server.url, retry=1, dead_letter=dls.url + "/", type_=None), batch=16)
        with ServedApp(broker_app(tmp_path, [batched])) as broker:
            good = [structured(i) for i in range(30)]
            unknown_type = {**structured(99), "type": "com.example.other"}  # the broker routes it; the logger refuses it (400)
            assert broker.post("/", headers=BATCH, content=orjson.dumps([*good[:15], unknown_type, *good[15:]])).status_code == 200
            wait_until(lambda: len(dead.received) == 1, message="the bad event dead-lettered")
            assert dead.received[0].headers["ce-id"] == "e99" and dead.received[0].headers["ce-knativeerrorcode"] == "400"
            with httpx_client(log_server.url) as c:
                wait_until(lambda: len(c.get("/v1/records", params={"limit": 100}).json()["records"]) == 30, message="30 records")
                metrics = c.get("/metrics").text
            assert metric_sum(metrics, "seismo_logger_events_stored_total") == 30
            assert metric_sum(metrics, "seismo_logger_events_rejected_total", reason="invalid") == 1
            broker_metrics = broker.get("/metrics").text
            assert metric_sum(broker_metrics, "seismo_broker_deliveries_total", trigger="to-logger", outcome="delivered") == 30
            batches = metric_sum(broker_metrics, "seismo_broker_batch_events_count", trigger="to-logger")
            assert 2 <= batches < 31 and metric_sum(broker_metrics, "seismo_broker_batch_events_sum", trigger="to-logger") >= 31


def test_a_subscriber_that_takes_single_events_only_gets_them_one_by_one(tmp_path):
    singles: list[str] = []
    refused: list[int] = []

    async def handle(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-type") == BATCH_CONTENT_TYPE:
            refused.append(1)
            return JSONResponse({"error": "batched content mode is not taken here"}, status_code=400)
        singles.append(from_http(request.headers, body).id)
        return Response(status_code=202)

    from dataclasses import replace

    app = Starlette(routes=[Route("/", handle, methods=["POST"])])
    with ThreadServer(app) as sub, ServedApp(broker_app(tmp_path, [replace(trigger("t", sub.url, retry=0), batch=8)])) as broker:
        assert broker.post("/", headers=BATCH, content=orjson.dumps([structured(i) for i in range(20)])).status_code == 200
        wait_until(lambda: len(singles) == 20, message="20 single deliveries")
        assert sorted(singles) == sorted(f"e{i}" for i in range(20))
        assert len(refused) >= 1  # refused (once per batch already in flight), then single events only
        assert metric_sum(broker.get("/metrics").text, "seismo_broker_dead_letters_total") == 0


def httpx_client(url: str):
    import httpx

    return httpx.Client(base_url=url, timeout=10)


def test_a_broker_restart_between_batches_loses_and_repeats_nothing(tmp_path):
    """Batch 1 is journaled while the logger's trigger fails; the broker restarts on the same journal
    (now reaching the logger) and batch 2 arrives: exactly 40 records, each stored once."""
    from dataclasses import replace

    from seismo.services.logger import LoggerSettings
    from seismo.services.logger import create_app as logger_app

    failing = RecordingSink(always_status=503)
    logger = logger_app(LoggerSettings(sqlite_path=tmp_path / "records.db"), CollectorRegistry())
    with ThreadServer(logger) as log_server, ThreadServer(failing.app()) as down:
        before = replace(trigger("to-logger", down.url, retry=1000, delay=0.05, type_=None), batch=16)
        with ServedApp(broker_app(tmp_path, [before])) as broker:
            r = broker.post("/", headers=BATCH, content=orjson.dumps([structured(i) for i in range(20)]))
            assert [x["status"] for x in r.json()["results"]] == [202] * 20
            wait_until(lambda: failing.attempts >= 2, message="deliveries failing before the restart")
        after = replace(trigger("to-logger", log_server.url, retry=5, type_=None), batch=16)
        with ServedApp(broker_app(tmp_path, [after])) as broker:
            r = broker.post("/", headers=BATCH, content=orjson.dumps([structured(i) for i in range(20, 40)]))
            assert [x["status"] for x in r.json()["results"]] == [202] * 20
            with httpx_client(log_server.url) as c:
                wait_until(lambda: len(c.get("/v1/records", params={"limit": 100}).json()["records"]) == 40, message="40 records")
                ids = sorted(rec["prediction_id"] for rec in c.get("/v1/records", params={"limit": 100}).json()["records"])
                metrics = c.get("/metrics").text
            broker_metrics = broker.get("/metrics").text
        assert ids == sorted(f"e{i}" for i in range(40))
        assert metric_sum(metrics, "seismo_logger_events_stored_total") == 40
        assert metric_sum(broker_metrics, "seismo_broker_deliveries_total", trigger="to-logger", outcome="delivered") == 40
        assert metric_sum(broker_metrics, "seismo_broker_dead_letters_total") == 0
