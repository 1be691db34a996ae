"""seismo.tracing: when it is on, what trace context is carried, and spans reaching a real OTLP/HTTP receiver."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import RecordingSink, ServedApp, ThreadServer, wait_until
from prometheus_client import CollectorRegistry

from seismo.tracing import configured, trace_headers

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("env,expected", [
    ({}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None),
])
def test_tracing_is_off_unless_the_otel_variables_ask(env, expected):
    assert configured(env) == expected


def test_an_exporter_seismo_does_not_bundle_is_a_clear_error():
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        configured({"OTEL_TRACES_EXPORTER": "zipkin"})


@pytest.mark.parametrize("value", [
    "", "junk", VALID.upper(), "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    VALID + "\n", VALID + "-extra", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
])
def test_an_invalid_traceparent_is_never_carried(value):
    assert trace_headers({"traceparent": value, "tracestate": "a=b"}) == {}


def test_tracestate_is_carried_only_when_it_is_printable_and_bounded():
    assert trace_headers({"traceparent": VALID, "tracestate": "congo=t61rcWkgMzE"}) == {"traceparent": VALID, "tracestate": "congo=t61rcWkgMzE"}
    assert trace_headers({"traceparent": VALID, "tracestate": "a=b\r\nx"}) == {"traceparent": VALID}
    assert trace_headers({"traceparent": VALID, "tracestate": "a=" + "b" * 600}) == {"traceparent": VALID}


def send(client, body):
    assert client.post("/v2/models/image-classifier/infer", json={**body, "id": "kept"},
                       headers={"traceparent": VALID, "tracestate": "v=1"}).status_code == 200
    assert client.post("/v2/models/image-classifier/infer", json={**body, "id": "junk"},
                       headers={"traceparent": "00-xyz-zz-01", "tracestate": "v=1"}).status_code == 200


def test_with_tracing_off_the_model_server_carries_the_clients_valid_context_only(example_model, example_images):
    from seismo.services.model import ModelSettings, create_app

    sink = RecordingSink()
    body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": example_images[0].ravel().tolist()}]}
    with ThreadServer(sink.app()) as server:
        app = create_app(ModelSettings(path=example_model, sink_url=server.url + "/"), CollectorRegistry())
        assert not app.state.model.tracing.enabled
        with ServedApp(app) as client:
            send(client, body)
        wait_until(lambda: len(sink.received) >= 4, 20, message="4 events")
    by_id = {}
    for got in sink.received:
        by_id.setdefault(got.headers["ce-id"], []).append(got.headers)
    assert all(h["ce-traceparent"] == VALID and h["ce-tracestate"] == "v=1" for h in by_id["kept"])
    assert all("ce-traceparent" not in h and "ce-tracestate" not in h for h in by_id["junk"])


@pytest.mark.integration  # a fresh interpreter configured by OTEL_* alone
def test_spans_reach_an_otlp_http_receiver(tmp_path):
    """A real OTLP/HTTP endpoint on loopback: the SDK's exporter, configured by OTEL_* alone, posts protobuf."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received = RecordingSink()
    with ThreadServer(received.app()) as receiver:
        script = (
            "from seismo import tracing\n"
            "t = tracing.Tracing('logger')\n"
            "assert t.enabled\n"
            f"with t.span('store test', {{'traceparent': '{VALID}'}}, 'SERVER', {{'seismo.model': 'm'}}): pass\n"
            "tracing.shutdown()\n"
        )
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "seismo-logger-test"}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: received.received, 10, message="an OTLP export")
    export = received.received[0]
    assert export.headers["content-type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(export.body)
    resource = request.resource_spans[0]
    attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert attributes["service.name"] == "seismo-logger-test"
    span = resource.scope_spans[0].spans[0]
    assert resource.scope_spans[0].scope.name == "seismo.logger" and span.name == "store test"
    assert span.trace_id.hex() == VALID.split("-")[1] and span.parent_span_id.hex() == VALID.split("-")[2]


def test_services_sharing_a_process_keep_their_own_service_names(monkeypatch):
    """The first service in a process named every other's spans: one provider per service now."""
    from seismo import tracing

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setattr(tracing, "_providers", {})
    model, drift, again = tracing.Tracing("model"), tracing.Tracing("drift"), tracing.Tracing("model")
    names = [t._tracer.resource.attributes["service.name"] for t in (model, drift, again)]
    assert names == ["seismo-model", "seismo-drift", "seismo-model"]
    handed = tracing.Tracing("logger", provider=tracing._providers["drift"])
    assert handed._tracer.resource.attributes["service.name"] == "seismo-drift"  # a provider handed in is used as it is
