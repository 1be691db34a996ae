"""One trace per prediction across model -> broker -> logger, outlier and drift (and the replies they send
back), with the OpenTelemetry SDK's in-memory exporter. The services run in this process (each on its
own loopback port, with the default trigger list) so one exporter sees every span."""

from __future__ import annotations

import pytest
from helpers import ThreadServer, free_port, wait_until
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from seismo import tracing
from seismo.broker.triggers import load_triggers
from seismo.services import broker, drift, logger, model, outlier
from seismo.topology import CONFIG_DIR, EXAMPLE_DETECTORS

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRIGGERS = CONFIG_DIR / "triggers.yaml"


@pytest.fixture(scope="module")
def traced(tmp_path_factory, example_model):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = tracing.use_provider(provider)
    tmp = tmp_path_factory.mktemp("tracing")
    servers = []
    try:
        def serve(app):
            servers.append(ThreadServer(app).start())
            return servers[-1].url

        urls = {
            "logger": serve(logger.create_app(logger.LoggerSettings(sqlite_path=tmp / "records.db"), CollectorRegistry())),
            "outlier": serve(outlier.create_app(outlier.OutlierSettings(), CollectorRegistry())),
        }
        broker_port = free_port()  # known before the drift service starts: its replies go to the broker
        urls["drift"] = serve(drift.create_app(drift.DriftSettings(window_size=2, state_path=tmp / "drift.db",
                                                                   embedding_detector_path=EXAMPLE_DETECTORS / "embedding",
                                                                   embedding_state_path=tmp / "embedding.db",
                                                                   sink_url=f"http://127.0.0.1:{broker_port}/"), CollectorRegistry()))
        env = {"SEISMO_LOGGER_URL": urls["logger"], "SEISMO_OUTLIER_URL": urls["outlier"], "SEISMO_DRIFT_URL": urls["drift"],
               "SEISMO_METRICS_URL": "http://127.0.0.1:9"}
        triggers = load_triggers(TRIGGERS, env) + load_triggers(CONFIG_DIR / "triggers-inputs.yaml", env)  # the input detectors too
        servers.append(ThreadServer(broker.create_app(broker.BrokerSettings(journal_path=tmp / "broker.db", poll_interval_seconds=0.02),
                                                      CollectorRegistry(), triggers), broker_port).start())
        urls["model"] = serve(model.create_app(model.ModelSettings(path=example_model, sink_url=f"http://127.0.0.1:{broker_port}/",
                                                                   log_batch_size=64), CollectorRegistry()))
        yield urls, exporter
    finally:
        for server in reversed(servers):
            server.stop()
        tracing.use_provider(previous)


def hex_trace(span) -> str:
    return format(span.context.trace_id, "032x")


def test_one_trace_from_prediction_to_every_piece_of_monitoring(traced, example_images):
    import httpx

    urls, exporter = traced
    body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": example_images[0].ravel().tolist()}]}
    traced_reply = httpx.post(f"{urls['model']}/v2/models/image-classifier/infer", json={**body, "id": "traced-1"},
                              headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "tracestate": "vendor=x"}, timeout=60)
    assert traced_reply.status_code == 200
    # A second prediction without a traceparent starts its own trace, and fills the drift window of 2.
    untraced_reply = httpx.post(f"{urls['model']}/v2/models/image-classifier/infer", json={**body, "id": "new-trace-1"}, timeout=60)
    assert untraced_reply.status_code == 200

    def spans_named(prefix: str, trace: str | None = None):
        return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix) and (trace is None or hex_trace(s) == trace)]

    wait_until(lambda: len(spans_named("store org.kubeflow.serving.inference.outlier")) >= 2
               and spans_named("store org.kubeflow.serving.inference.drift"), 60, message="the replies' store spans")

    predict = spans_named("predict image-classifier", CLIENT_TRACE)
    assert len(predict) == 1
    root = predict[0]
    assert format(root.parent.span_id, "016x") == CLIENT_SPAN and root.attributes["seismo.prediction_id"] == "traced-1"
    in_trace = [s for s in exporter.get_finished_spans() if hex_trace(s) == CLIENT_TRACE]
    by_id = {s.context.span_id: s for s in in_trace}
    names = {s.name for s in in_trace}
    for expected in ("deliver logger-kserve-request", "deliver logger-kserve-response", "deliver outlier-kserve-request",
                     "deliver drift-kserve-request", "store org.kubeflow.serving.inference.request",
                     "store org.kubeflow.serving.inference.response", "outlier score", "drift window",
                     "deliver logger-outlier", "store org.kubeflow.serving.inference.outlier"):
        assert expected in names, f"{expected!r} missing from the prediction's trace: {sorted(names)}"
    # Every span of the trace leads back to the prediction's span, and each service's span has the right parent.
    for span in in_trace:
        walk = span
        while walk.context.span_id != root.context.span_id:
            assert walk.parent is not None and walk.parent.span_id in by_id, f"{span.name} does not lead to the predict span"
            walk = by_id[walk.parent.span_id]
    def parents(name: str) -> set[str]:
        return {by_id[s.parent.span_id].name for s in in_trace if s.name == name}

    # Batched deliveries (the detectors' and the logger's triggers have `batch`) carry no per-event HTTP
    # traceparent: the subscriber's span continues the event's own trace extension, a sibling of `deliver`.
    assert parents("outlier score") == {"predict image-classifier"}
    assert parents("drift window") == {"predict image-classifier"}  # features and embedding
    assert parents("store org.kubeflow.serving.inference.request") == {"predict image-classifier"}  # batched: the event's own
    assert parents("deliver drift-kserve-request") == {"predict image-classifier"}
    assert parents("store org.kubeflow.serving.inference.outlier") == {"predict image-classifier"}  # a reply keeps the origin
    # The instrumentation scope names the service that did the work.
    scopes = {s.instrumentation_scope.name for s in in_trace}
    assert {"seismo.model", "seismo.broker", "seismo.logger", "seismo.outlier", "seismo.drift"} <= scopes

    # The untraced prediction: its own new trace, rooted at the model server, with the drift test and its reply in it.
    fresh = [s for s in spans_named("predict image-classifier") if s.attributes["seismo.prediction_id"] == "new-trace-1"]
    assert len(fresh) == 1 and fresh[0].parent is None and hex_trace(fresh[0]) != CLIENT_TRACE
    tested = [s for s in spans_named("drift window", hex_trace(fresh[0])) if s.attributes.get("seismo.window_tested")]
    assert tested and spans_named("store org.kubeflow.serving.inference.drift", hex_trace(fresh[0]))

    # The stored record keeps the trace context as an extension (and the client's tracestate).
    record = httpx.get(f"{urls['logger']}/v1/records/traced-1", timeout=10).json()
    assert record["extensions"]["traceparent"].split("-")[1] == CLIENT_TRACE
    assert record["extensions"]["tracestate"] == "vendor=x"


def test_a_single_delivery_continues_the_deliverers_http_traceparent(traced, example_images):
    """Knative's broker delivers single events: the detector's span is a child of the delivery's HTTP
    `traceparent` (Knative's span), not of the event's own trace extension."""
    import httpx
    import orjson

    urls, exporter = traced
    delivery_span, origin_span = "1111111111111111", "2222222222222222"
    headers = {"ce-specversion": "1.0", "ce-id": "single-1", "ce-source": "http://m/", "ce-type": "org.kubeflow.serving.inference.request",
               "ce-inferenceservicename": "image-classifier", "content-type": "application/json",
               "ce-traceparent": f"00-{CLIENT_TRACE}-{origin_span}-01", "traceparent": f"00-{CLIENT_TRACE}-{delivery_span}-01"}
    body = orjson.dumps({"instances": example_images[:1].tolist()})
    assert httpx.post(urls["outlier"] + "/", headers=headers, content=body, timeout=30).status_code == 200
    scored = [s for s in exporter.get_finished_spans() if s.name == "outlier score" and s.attributes.get("seismo.prediction_id") == "single-1"]
    assert len(scored) == 1 and format(scored[0].parent.span_id, "016x") == delivery_span
