"""The model server's event logger against a real HTTP sink on a loopback port."""

import asyncio

from helpers import RecordingSink, ThreadServer, free_port, metric_sum, wait_until
from prometheus_client import CollectorRegistry, generate_latest

from seismo.protocol.cloudevents import CloudEvent
from seismo.serving.event_sender import EventSender, EventSenderConfig
from seismo.transport.poster import EventPoster


def event(i: int) -> CloudEvent:
    return CloudEvent(f"id-{i}", "http://m/", "org.kubeflow.serving.inference.request", b'{"instances": [[%d]]}' % i,
                      "application/json", extensions={"inferenceservicename": "m", "requestid": f"id-{i}"})


def run(config: EventSenderConfig, events: int, until, timeout: float = 20.0, between=None):
    """Log `events` events, run `between(registry)` in a thread, then wait for `until(logger)`; returns the metrics text."""
    registry = CollectorRegistry()

    async def main():
        async with EventPoster() as client:
            logger = EventSender(config, client, registry)
            logger.start()
            for i in range(events):
                logger.log(event(i))
            if between:
                await asyncio.get_running_loop().run_in_executor(None, between, registry)
            deadline = asyncio.get_running_loop().time() + timeout
            while not until(logger) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            await logger.stop(drain_timeout=0.1)

    asyncio.run(main())
    return generate_latest(registry).decode()


def test_events_go_out_in_binary_mode_and_5xx_is_retried_until_accepted():
    sink = RecordingSink(fail_first=3, fail_status=503)
    with ThreadServer(sink.app()) as server:
        metrics = run(EventSenderConfig(server.url + "/", initial_backoff=0.01, concurrency=1), 4, lambda lg: len(sink.received) == 4)
    assert sorted(r.headers["ce-id"] for r in sink.received) == ["id-0", "id-1", "id-2", "id-3"]
    first = next(r for r in sink.received if r.headers["ce-id"] == "id-0")
    assert first.headers["ce-type"] == "org.kubeflow.serving.inference.request"
    assert first.headers["ce-inferenceservicename"] == "m" and first.headers["content-type"] == "application/json"
    assert first.body == b'{"instances": [[0]]}'
    assert metric_sum(metrics, "seismo_model_events_sent_total") == 4
    assert metric_sum(metrics, "seismo_model_events_retried_total", reason="http_5xx") == 3
    assert metric_sum(metrics, "seismo_model_events_dropped_total") == 0


def test_sink_down_holds_capacity_counts_the_excess_and_delivers_once_back():
    port = free_port()
    sink = RecordingSink()
    server = ThreadServer(sink.app(), port=port)
    config = EventSenderConfig(f"http://127.0.0.1:{port}/", capacity=5, initial_backoff=0.01, max_backoff=0.05, concurrency=2)
    try:
        # 8 events while nothing listens: 5 held (retrying), 3 dropped as queue_full; then the sink starts.
        metrics = run(config, 8, lambda lg: len(sink.received) == 5, between=lambda registry: (
            wait_until(lambda: metric_sum(generate_latest(registry).decode(), "seismo_model_events_retried_total", reason="network") >= 2,
                       message="retries while the sink is down"), server.start()))
    finally:
        server.stop()
    assert sorted(r.headers["ce-id"] for r in sink.received) == [f"id-{i}" for i in range(5)]
    assert metric_sum(metrics, "seismo_model_events_dropped_total", reason="queue_full") == 3
    assert metric_sum(metrics, "seismo_model_events_retried_total", reason="network") >= 2
    assert metric_sum(metrics, "seismo_model_events_sent_total") == 5


def test_drop_oldest_keeps_the_freshest_events():
    port = free_port()
    sink = RecordingSink()
    server = ThreadServer(sink.app(), port=port)
    config = EventSenderConfig(f"http://127.0.0.1:{port}/", capacity=3, overflow="drop_oldest", initial_backoff=0.01, max_backoff=0.02, concurrency=1)
    try:
        metrics = run(config, 6, lambda lg: len(sink.received) == 3, between=lambda registry: server.start())
    finally:
        server.stop()
    received = sorted(r.headers["ce-id"] for r in sink.received)
    # One event was already being sent (it holds its place); the oldest queued ones made room.
    assert "id-5" in received and "id-4" in received
    assert metric_sum(metrics, "seismo_model_events_dropped_total", reason="queue_full") == 3


def test_a_4xx_is_dropped_and_counted_or_retried_by_policy():
    sink = RecordingSink(always_status=400)
    with ThreadServer(sink.app()) as server:
        metrics = run(EventSenderConfig(server.url + "/"), 2, lambda lg: lg.held == 0)
        assert metric_sum(metrics, "seismo_model_events_dropped_total", reason="rejected") == 2
        sink.attempts = 0
        metrics = run(EventSenderConfig(server.url + "/", on_client_error="retry", initial_backoff=0.01, max_backoff=0.01), 1,
                      lambda lg: sink.attempts >= 3, timeout=5)
    assert metric_sum(metrics, "seismo_model_events_retried_total", reason="http_4xx") >= 2
    # Still held when the server stopped: counted, not lost silently.
    assert metric_sum(metrics, "seismo_model_events_dropped_total", reason="shutdown") == 1


def test_429_is_always_retried():
    sink = RecordingSink(fail_first=2, fail_status=429)
    with ThreadServer(sink.app()) as server:
        metrics = run(EventSenderConfig(server.url + "/", initial_backoff=0.01), 1, lambda lg: len(sink.received) == 1)
    assert metric_sum(metrics, "seismo_model_events_retried_total", reason="throttled") == 2
    assert metric_sum(metrics, "seismo_model_events_sent_total") == 1


def test_an_event_http_cannot_carry_is_dropped_and_the_senders_carry_on():
    sink = RecordingSink()
    bad = CloudEvent("bad\nid", "http://m/", "org.kubeflow.serving.inference.request", b"{}", "application/json\r\nx-injected: 1",
                     extensions={"inferenceservicename": "m"})
    registry = CollectorRegistry()

    async def main():
        async with EventPoster() as client:
            logger = EventSender(EventSenderConfig(sink_url, concurrency=2), client, registry)
            logger.start()
            for _ in range(10):
                logger.log(bad)
            for i in range(5):
                logger.log(event(i))
            deadline = asyncio.get_running_loop().time() + 20
            while len(sink.received) < 5 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            assert logger.stopped() == []  # no sender died
            await logger.stop(drain_timeout=0.1)

    with ThreadServer(sink.app()) as server:
        sink_url = server.url + "/"
        asyncio.run(main())
    metrics = generate_latest(registry).decode()
    assert len(sink.received) == 5
    assert metric_sum(metrics, "seismo_model_events_dropped_total", reason="unsendable") == 10
