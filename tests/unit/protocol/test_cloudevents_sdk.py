"""Seismo's CloudEvents codec round-tripped against the official CloudEvents Python SDK (its 2.x core API,
which implements the HTTP binding's percent-encoding), both content modes, both directions, every
attribute type the spec has (String, URI, URI-reference, Timestamp, Boolean, Integer, Binary) and
extensions, including the distributed-tracing extension Seismo carries."""

import base64
from datetime import UTC, datetime

import pytest

from seismo.protocol import cloudevents as ce

sdk_http = pytest.importorskip("cloudevents.core.bindings.http", reason="the CloudEvents SDK (a dev dependency)")
from cloudevents.core.bindings.http import HTTPMessage  # noqa: E402
from cloudevents.core.v1.event import CloudEvent as SdkEvent  # noqa: E402

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PAYLOAD = b'{"instances": [[1.0, 2.5]]}'


def seismo_event(**overrides) -> ce.CloudEvent:
    fields = dict(
        id="pred-1", source="http://model.seismo:8080/", type="org.kubeflow.serving.inference.request", data=PAYLOAD,
        datacontenttype="application/json", time="2026-11-22T10:00:00.500000Z", subject="image-classifier",
        dataschema="https://example.com/schemas/v1-request.json",
        extensions={"inferenceservicename": "image-classifier", "namespace": "seismo", "requestid": "pred-1",
                    "traceparent": TRACEPARENT, "tracestate": "vendor=opaque,other=x", "cohort": "a b%c ü"},
    )
    return ce.CloudEvent(**{**fields, **overrides})


def _sdk_message(headers: dict[str, str], body: bytes) -> HTTPMessage:
    return HTTPMessage(headers=dict(headers), body=body)


def _data_bytes(event) -> bytes:
    data = event.get_data()
    if isinstance(data, (dict, list)):
        import json

        return json.dumps(data).encode()
    return data if isinstance(data, bytes) else str(data).encode()


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_what_seismo_writes_the_sdk_reads_attribute_for_attribute(mode):
    event = seismo_event()
    if mode == "binary":
        headers, body = ce.to_binary(event)
    else:
        headers, body = {"content-type": ce.STRUCTURED_CONTENT_TYPE}, ce.to_structured(event)
    parsed = sdk_http.from_http_event(_sdk_message(headers, body))
    attributes = parsed.get_attributes()
    assert attributes["id"] == "pred-1" and attributes["source"] == event.source and attributes["type"] == event.type
    assert attributes["specversion"] == "1.0" and attributes["subject"] == "image-classifier"
    assert attributes["dataschema"] == event.dataschema and attributes["datacontenttype"] == "application/json"
    assert attributes["time"] == datetime(2026, 11, 22, 10, 0, 0, 500000, tzinfo=UTC)
    for name, value in event.extensions.items():
        assert attributes[name] == value, name  # percent-encoded in headers, decoded by the SDK
    assert _data_bytes(parsed).replace(b" ", b"") == PAYLOAD.replace(b" ", b"")


def test_binary_payloads_survive_structured_mode_as_data_base64():
    raw = bytes(range(256))
    event = seismo_event(data=raw, datacontenttype="application/octet-stream")
    parsed = sdk_http.from_http_event(_sdk_message({"content-type": ce.STRUCTURED_CONTENT_TYPE}, ce.to_structured(event)))
    assert parsed.get_data() == raw


def sdk_event(data=None, **extra) -> SdkEvent:
    attributes = {
        "id": "sdk-1", "source": "urn:seismo:test", "type": "io.seldon.serving.inference.request", "specversion": "1.0",
        "time": datetime(2026, 11, 22, 9, 30, 15, 250000, tzinfo=UTC), "subject": "iris", "dataschema": "https://example.com/s.json",
        "datacontenttype": "application/json",
        # Extension types: String (with characters that must be percent-encoded), Boolean, Integer, URI.
        "requestid": "puid 1/ü", "flag": True, "count": 42, "callback": "https://example.com/cb?a=1&b=2", "traceparent": TRACEPARENT,
        **extra,
    }
    return SdkEvent(attributes, data)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_what_the_sdk_writes_seismo_reads(mode):
    event = sdk_event({"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}})
    message = sdk_http.to_binary_event(event) if mode == "binary" else sdk_http.to_structured_event(event)
    parsed = ce.from_http(message.headers, message.body)
    assert (parsed.id, parsed.source, parsed.type, parsed.specversion) == ("sdk-1", "urn:seismo:test", "io.seldon.serving.inference.request", "1.0")
    assert parsed.subject == "iris" and parsed.dataschema == "https://example.com/s.json"
    assert parsed.time is not None and parsed.time.startswith("2026-11-22T09:30:15.25")
    assert parsed.extension("requestid") == "puid 1/ü"
    assert parsed.extension("traceparent") == TRACEPARENT and parsed.extension("callback") == "https://example.com/cb?a=1&b=2"
    # Seismo keeps every attribute a string. Structured mode carries JSON true, read as the spec's canonical
    # "true"; the SDK writes a Boolean into a header as Python's str() ("True", not the spec's "true"),
    # which Seismo keeps as it came.
    assert parsed.extension("count") == "42"
    assert parsed.extension("flag") == ("True" if mode == "binary" else "true")
    assert parsed.json_data() == {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}


def test_binary_data_from_the_sdk_in_both_modes():
    raw = b"\x00\x01\xfe\xff" * 10
    event = sdk_event(raw, datacontenttype="application/octet-stream")
    binary = sdk_http.to_binary_event(event)
    assert ce.from_http(binary.headers, binary.body).data == raw
    structured = sdk_http.to_structured_event(event)
    assert b"data_base64" in structured.body and base64.b64encode(raw) in structured.body
    assert ce.from_http(structured.headers, structured.body).data == raw


def test_full_round_trip_seismo_sdk_seismo_is_lossless():
    original = seismo_event()
    for to_sdk in ("binary", "structured"):
        headers, body = ce.to_binary(original) if to_sdk == "binary" else ({"content-type": ce.STRUCTURED_CONTENT_TYPE}, ce.to_structured(original))
        through_sdk = sdk_http.from_http_event(_sdk_message(headers, body))
        for back in (sdk_http.to_binary_event(through_sdk), sdk_http.to_structured_event(through_sdk)):
            again = ce.from_http(back.headers, back.body)
            assert (again.id, again.source, again.type, again.subject, again.dataschema) == \
                (original.id, original.source, original.type, original.subject, original.dataschema)
            assert dict(again.extensions) == dict(original.extensions)
            assert again.json_data() == original.json_data()
            assert again.time is not None and again.time.startswith("2026-11-22T10:00:00.5")
