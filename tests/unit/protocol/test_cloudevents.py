"""CloudEvents codec against events shaped exactly as KServe's logger and Seldon Core's executor send them."""

import base64
import random
from urllib.parse import quote

import orjson
import pytest

from seismo.protocol.cloudevents import _HEADER_SAFE, CloudEvent, CloudEventError, encode_header_value, from_http, to_binary, to_structured
from seismo.protocol.types import EventKind, kind_of, model_of, prediction_id_of

KSERVE_HEADERS = {
    "Ce-Specversion": "1.0",
    "Ce-Id": "5a8c1d40-0b5e-4b8c-9c8e-1f2d3c4b5a69",
    "Ce-Time": "2026-11-22T10:00:00.123456Z",
    "Ce-Type": "org.kubeflow.serving.inference.request",
    "Ce-Source": "http://localhost:9081/",
    "Ce-Inferenceservicename": "sklearn-iris",
    "Ce-Namespace": "default",
    "Ce-Component": "predictor",
    "Ce-Endpoint": "default",
    "Ce-Metadata": '{"x-header": ["value"]}',
    "Content-Type": "application/json",
}
SELDON_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "0b7c9f62-4d0e-4a55-8f3e-2f0a1c7d9e11",
    "ce-type": "io.seldon.serving.inference.response",
    "ce-source": "http://iris-model-default:8000/",
    "ce-modelid": "classifier",
    "ce-requestid": "puid-7f3e",
    "ce-inferenceservicename": "iris-model",
    "ce-namespace": "seldon",
    "ce-endpoint": "default",
    "ce-protocol": "seldon",
    "content-type": "application/json",
}


def test_kserve_binary_request_decodes_with_extensions_and_prediction_id():
    body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
    event = from_http(KSERVE_HEADERS, body)
    assert event.type == "org.kubeflow.serving.inference.request"
    assert event.data == body and event.datacontenttype == "application/json"
    assert event.extensions["inferenceservicename"] == "sklearn-iris"
    assert event.extensions["metadata"] == '{"x-header": ["value"]}'
    assert prediction_id_of(event) == "5a8c1d40-0b5e-4b8c-9c8e-1f2d3c4b5a69"  # KServe: ce-id names it
    assert model_of(event) == "sklearn-iris"
    assert kind_of(event.type) is EventKind.REQUEST


def test_seldon_event_belongs_to_its_requestid_not_its_ce_id():
    event = from_http(SELDON_HEADERS, b'{"data": {"names": ["t:0"], "ndarray": [[0.9]]}, "meta": {"puid": "puid-7f3e"}}')
    assert prediction_id_of(event) == "puid-7f3e"
    assert model_of(event) == "iris-model"
    assert kind_of(event.type) is EventKind.RESPONSE


def test_structured_mode_with_json_data_and_base64_data():
    doc = {"specversion": "1.0", "id": "a1", "source": "/s", "type": "io.seldon.serving.feedback",
           "requestid": "p1", "datacontenttype": "application/json", "data": {"truth": {"data": {"ndarray": [1]}}}}
    event = from_http({"content-type": "application/cloudevents+json; charset=utf-8"}, orjson.dumps(doc))
    assert orjson.loads(event.data) == doc["data"]
    assert event.extensions == {"requestid": "p1"}
    raw = b"\x00\x01binary"
    doc2 = {"specversion": "1.0", "id": "a2", "source": "/s", "type": "t", "data_base64": base64.b64encode(raw).decode()}
    assert from_http({"content-type": "application/cloudevents+json"}, orjson.dumps(doc2)).data == raw


@pytest.mark.parametrize(
    "drop, message",
    [("Ce-Id", "'id'"), ("Ce-Source", "'source'"), ("Ce-Type", "'type'"), ("Ce-Specversion", "specversion")],
)
def test_missing_required_attribute_is_named(drop, message):
    headers = {k: v for k, v in KSERVE_HEADERS.items() if k != drop}
    with pytest.raises(CloudEventError, match=message):
        from_http(headers, b"{}")


def test_invalid_inputs_are_refused_with_reasons():
    with pytest.raises(CloudEventError, match="no ce-"):
        from_http({"content-type": "application/json"}, b"{}")
    with pytest.raises(CloudEventError, match="specversion '0.3'"):
        from_http({**KSERVE_HEADERS, "Ce-Specversion": "0.3"}, b"{}")
    with pytest.raises(CloudEventError, match="batched"):
        from_http({"content-type": "application/cloudevents-batch+json"}, b"[]")
    with pytest.raises(CloudEventError, match="not valid JSON"):
        from_http({"content-type": "application/cloudevents+json"}, b"{nope")
    with pytest.raises(CloudEventError, match="extension name 'bad_name'"):
        from_http({**KSERVE_HEADERS, "ce-bad_name": "x"}, b"{}")
    with pytest.raises(CloudEventError, match="'data' is not a valid CloudEvents extension name"):
        from_http({**KSERVE_HEADERS, "ce-data": "x"}, b"{}")  # would clash with a structured document's payload


def test_binary_round_trip_keeps_everything_including_non_ascii():
    event = CloudEvent("id-1", "http://x/", "org.kubeflow.serving.inference.response", b'{"predictions": [1]}',
                       "application/json", "2026-01-01T00:00:00Z", extensions={"inferenceservicename": "m", "note": "caf\u00e9 50%"})
    headers, body = to_binary(event)
    assert all(h.isascii() for h in headers.values())
    assert from_http(headers, body) == event
    assert from_http({"content-type": "application/cloudevents+json"}, to_structured(event)) == event


@pytest.mark.parametrize("event", [
    CloudEvent("id-1", "http://x/", "org.kubeflow.serving.inference.response", b'{"predictions": [1]}', "application/json",
               "2026-01-01T00:00:00Z", subject="s 1", extensions={"inferenceservicename": "m", "note": "caf\u00e9 50% \"q\" \u202e"}),
    CloudEvent("id 2%", "/src", "t", b"\x00\xffbinary", "application/octet-stream", dataschema="http://schema/"),
    CloudEvent("id-3", "/src", "t"),  # no data, no content type
])
def test_a_journaled_binary_event_becomes_the_same_structured_event_without_parsing_it(event):
    from seismo.protocol.cloudevents import binary_to_structured_doc, from_structured_doc

    doc = binary_to_structured_doc(*to_binary(event))
    assert from_structured_doc(orjson.loads(orjson.dumps(doc))) == event
    assert from_structured_doc(orjson.loads(to_structured(event))) == event


def test_header_values_are_encoded_as_quote_encodes_them_with_or_without_the_fast_path():
    """Values that need no percent-encoding skip quote(); every other value is quote()'s."""
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x80)] + ["é", "€", "\u202e", "\U0001F600", "\x85", "\u00a0"]
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(20000)]
    samples += [chr(c) for c in range(0x3000)] + ["plain\n", "\nplain", "a b", "100%", 'say "hi"']
    for value in samples:
        assert encode_header_value(value) == quote(value, safe=_HEADER_SAFE), repr(value)


def test_the_attribute_limit_is_the_same_in_binary_and_structured_mode():
    """64 attributes besides datacontenttype pass in both modes, and an event taken in binary mode stays valid
    when the broker writes it into a batch (it was dead-lettered there when structured mode counted one more)."""
    from seismo.protocol.cloudevents import MAX_ATTRIBUTES, binary_to_structured_doc, from_structured_doc

    def binary(extensions: int) -> dict[str, str]:
        headers = {"ce-specversion": "1.0", "ce-id": "limit", "ce-source": "/t", "ce-type": "t", "content-type": "application/json"}
        headers.update({f"ce-x{i}": f"v%22{i}" for i in range(extensions)})
        return headers

    most = MAX_ATTRIBUTES - 4  # besides specversion, id, source and type
    event = from_http(binary(most), b"{}")
    headers, body = to_binary(event)
    again = from_structured_doc(binary_to_structured_doc(headers, body))
    assert again == event
    assert from_http({"content-type": "application/cloudevents+json"}, to_structured(event)) == event
    with pytest.raises(CloudEventError, match="too many CloudEvents attributes"):
        from_http(binary(most + 1), b"{}")
    with pytest.raises(CloudEventError, match="too many CloudEvents attributes"):
        from_structured_doc({**binary_to_structured_doc(headers, body), "xextra": "v"})
