"""CloudEvents 1.0 over HTTP: read binary and structured mode, write binary mode.

Binary mode keeps the payload as the HTTP body and the attributes in `ce-*` headers (what KServe's
logger and Seldon Core's executor send); structured mode puts everything in one JSON document with
content type `application/cloudevents+json`. Batched mode (a JSON array of structured events) is
refused by `from_http`, as Knative's broker does; the services that take batches from Seismo's own
model server and broker read it with `batch_from_http`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote

import orjson

from seismo.protocol.limits import loads
from seismo.protocol.payloads import PayloadError
from seismo.times import now_rfc3339  # noqa: F401  (re-exported: the event time format)

SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
_CONTEXT_ATTRIBUTES = ("specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time")
_REQUIRED = ("id", "source", "type")
# The spec: attribute names are lower-case ASCII letters and digits only.
_NAME = re.compile(r"^[a-z0-9]{1,64}$")
# The spec's String type: no control characters (U+0000-U+001F, U+007F-U+009F), and no lone surrogates.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The HTTP binding (3.1.3.2): percent-encode space, double quote, percent and everything outside
# printable ASCII; what is left is safe in any HTTP header.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_NOTHING_TO_ENCODE = re.compile(r'[\x21\x23\x24\x26-\x7e]*')  # exactly _HEADER_SAFE: quote() would return the value as it is
MAX_ATTRIBUTE_CHARS = 4096
MAX_ATTRIBUTES = 64


class CloudEventError(ValueError):
    """The request is not a valid CloudEvent; the message says why (it becomes a 400)."""


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    source: str
    type: str
    data: bytes = b""
    datacontenttype: str | None = None
    time: str | None = None
    subject: str | None = None
    dataschema: str | None = None
    specversion: str = SPEC_VERSION
    extensions: Mapping[str, str] = field(default_factory=dict)

    def extension(self, name: str, default: str | None = None) -> str | None:
        return self.extensions.get(name, default)

    def with_extensions(self, **values: str) -> CloudEvent:
        return replace(self, extensions={**self.extensions, **values})

    def json_data(self):
        """The payload parsed as JSON; CloudEventError if it is not JSON."""
        if not self.data:
            return None
        try:
            return loads(self.data, "event data")
        except PayloadError as exc:
            raise CloudEventError(str(exc)) from None


def check_attribute(name: str, value: str) -> None:
    """CloudEventError unless `value` is a valid CloudEvents String (no control characters, bounded)."""
    if len(value) > MAX_ATTRIBUTE_CHARS:
        raise CloudEventError(f"CloudEvents attribute '{name}' is longer than {MAX_ATTRIBUTE_CHARS} characters")
    bad = _CONTROL.search(value)
    if bad:
        raise CloudEventError(
            f"CloudEvents attribute '{name}' contains the control character U+{ord(bad.group()):04X} "
            f"at position {bad.start()}; the spec forbids control characters"
        )


def escape_id(value: str, limit: int = 120) -> str:
    """An id as it may appear in a log line: control characters escaped, length bounded."""
    text = value.encode("unicode_escape", "backslashreplace").decode("ascii", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def encode_header_value(value: str) -> str:
    """A CloudEvents attribute as an HTTP header value, percent-encoded as the HTTP binding says. Nearly
    every value (ids, types, times, names) needs no encoding: those are returned without quote()'s work."""
    if _NOTHING_TO_ENCODE.fullmatch(value):
        return value
    return quote(value, safe=_HEADER_SAFE)


def _validate(attrs: dict[str, str], extensions: dict[str, str]) -> None:
    # datacontenttype is not counted: binary mode carries it as Content-Type, not as a ce- header, and
    # an event accepted in one mode must stay valid in the other (the broker turns binary events into
    # structured ones for batched deliveries; counting it there only dead-lettered events it had accepted).
    count = len(attrs) + len(extensions) - ("datacontenttype" in attrs)
    if count > MAX_ATTRIBUTES:
        raise CloudEventError(f"too many CloudEvents attributes ({count}, not counting datacontenttype); at most {MAX_ATTRIBUTES}")
    version = attrs.get("specversion")
    if version is None:
        raise CloudEventError("missing CloudEvents attribute 'specversion' (header ce-specversion)")
    if version != SPEC_VERSION:
        raise CloudEventError(f"unsupported CloudEvents specversion {version!r}; only '1.0' is accepted")
    for name in _REQUIRED:
        if not attrs.get(name):
            raise CloudEventError(f"missing CloudEvents attribute '{name}' (header ce-{name})")
    for name in extensions:
        if name == "data":  # the structured format's payload member: as an extension it would clash with it
            raise CloudEventError("'data' is not a valid CloudEvents extension name (the structured format reserves it)")
        if not _NAME.match(name):
            raise CloudEventError(
                f"invalid CloudEvents extension name {escape_id(name)!r}: only lower-case letters and digits are allowed"
            )
    for name, value in (*attrs.items(), *extensions.items()):
        check_attribute(name, value)
    content_type = attrs.get("datacontenttype")
    if content_type is not None and not (content_type.isascii() and content_type.isprintable()):
        raise CloudEventError("CloudEvents attribute 'datacontenttype' must be a printable ASCII media type")


def from_http(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """Decode an HTTP request (headers with any case) into a CloudEvent, either content mode."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == BATCH_CONTENT_TYPE:
        raise CloudEventError("batched content mode is not taken here; send one event per request")
    if media_type == STRUCTURED_CONTENT_TYPE:
        return _from_structured(body)
    return _from_binary(lowered, body, content_type or None)


def _from_binary(headers: dict[str, str], body: bytes, content_type: str | None) -> CloudEvent:
    attrs: dict[str, str] = {}
    extensions: dict[str, str] = {}
    for key, value in headers.items():
        if not key.startswith("ce-"):
            continue
        name = key[3:]
        # The HTTP binding percent-encodes values that are not plain ASCII. Starlette hands headers over
        # as latin-1 text; raw UTF-8 bytes (which the binding forbids, but some senders use) are read back.
        try:
            value = unquote(value.encode("latin-1").decode("utf-8"), errors="strict")
        except UnicodeError:
            raise CloudEventError(f"header {key} is not percent-encoded UTF-8 text") from None
        if name in _CONTEXT_ATTRIBUTES:
            attrs[name] = value
        else:
            extensions[name] = value
    if not attrs:
        raise CloudEventError(
            "not a CloudEvent: no ce-* headers (binary mode) and content type is not "
            f"{STRUCTURED_CONTENT_TYPE} (structured mode)"
        )
    _validate(attrs, extensions)
    return CloudEvent(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        data=body,
        datacontenttype=content_type,
        time=attrs.get("time"),
        subject=attrs.get("subject"),
        dataschema=attrs.get("dataschema"),
        specversion=attrs["specversion"],
        extensions=extensions,
    )


def is_batch(headers: Mapping[str, str]) -> bool:
    """Whether the request is in batched content mode (`application/cloudevents-batch+json`)."""
    content_type = headers.get("content-type") or headers.get("Content-Type") or ""
    return content_type.split(";", 1)[0].strip().lower() == BATCH_CONTENT_TYPE


def batch_from_http(body: bytes, max_events: int) -> list[CloudEvent | CloudEventError]:
    """A batched-mode body (a JSON array of structured events) decoded event by event: a bad event is
    its CloudEventError in its place, so the others still go through. CloudEventError for the whole
    body when it is not such an array or holds more than `max_events`."""
    try:
        docs = loads(body, "CloudEvents batch")
    except PayloadError as exc:
        raise CloudEventError(str(exc)) from None
    if not isinstance(docs, list):
        raise CloudEventError("a batched request must be a JSON array of structured events")
    if not docs:
        raise CloudEventError("a batched request must hold at least one event")
    if len(docs) > max_events:
        raise CloudEventError(f"a batched request may hold at most {max_events} events, this one has {len(docs)}")
    out: list[CloudEvent | CloudEventError] = []
    for doc in docs:
        try:
            out.append(from_structured_doc(doc))
        except CloudEventError as exc:
            out.append(exc)
    return out


def to_batch(events: list[CloudEvent]) -> bytes:
    """Events in batched content mode: a JSON array of structured events, data as base64 (byte for byte)."""
    return b"[" + b",".join(to_structured(event) for event in events) + b"]"


def _from_structured(body: bytes) -> CloudEvent:
    try:
        doc = loads(body, "structured CloudEvent")  # depth-checked: its data is written back out as JSON
    except PayloadError as exc:
        raise CloudEventError(str(exc)) from None
    return from_structured_doc(doc)


def from_structured_doc(doc: object) -> CloudEvent:
    """A structured-mode event already parsed from JSON (one item of a batch); CloudEventError if invalid."""
    if not isinstance(doc, dict):
        raise CloudEventError("structured CloudEvent must be a JSON object")
    attrs: dict[str, str] = {}
    extensions: dict[str, str] = {}
    for key, value in doc.items():
        if key in ("data", "data_base64"):
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        (attrs if key in _CONTEXT_ATTRIBUTES else extensions)[key] = text
    _validate(attrs, extensions)
    content_type = attrs.get("datacontenttype")
    if "data_base64" in doc:
        try:
            data = base64.b64decode(doc["data_base64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise CloudEventError(f"data_base64 is not valid base64: {exc}") from None
    elif "data" in doc:
        value = doc["data"]
        is_json = content_type is None or "json" in content_type
        if isinstance(value, str) and not is_json:
            data = value.encode()
        else:
            data = orjson.dumps(value)
            content_type = content_type or "application/json"
    else:
        data = b""
    return CloudEvent(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        data=data,
        datacontenttype=content_type,
        time=attrs.get("time"),
        subject=attrs.get("subject"),
        dataschema=attrs.get("dataschema"),
        specversion=attrs["specversion"],
        extensions=extensions,
    )


def to_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Headers and body for sending the event in binary content mode."""
    headers = {
        "ce-specversion": encode_header_value(event.specversion),
        "ce-id": encode_header_value(event.id),
        "ce-source": encode_header_value(event.source),
        "ce-type": encode_header_value(event.type),
    }
    for name in ("time", "subject", "dataschema"):
        value = getattr(event, name)
        if value is not None:
            headers[f"ce-{name}"] = encode_header_value(value)
    for name, value in event.extensions.items():
        headers[f"ce-{name}"] = encode_header_value(str(value))
    if event.datacontenttype:
        headers["content-type"] = event.datacontenttype
    return headers, event.data


def to_structured_doc(event: CloudEvent, json_data: bool = False) -> dict:
    """The event as a structured-mode document for orjson to write. The data goes as `data_base64` (byte
    for byte), or inline as `data` when `json_data` says the caller made it with orjson (valid JSON)."""
    doc: dict[str, object] = {"specversion": event.specversion, "id": event.id, "source": event.source, "type": event.type}
    for name in ("datacontenttype", "time", "subject", "dataschema"):
        value = getattr(event, name)
        if value is not None:
            doc[name] = value
    doc.update(event.extensions)
    if event.data:
        if json_data:
            doc["data"] = orjson.Fragment(event.data)
        else:
            doc["data_base64"] = base64.b64encode(event.data).decode()
    return doc


def binary_to_structured_doc(headers: Mapping[str, str], body: bytes) -> dict:
    """A binary-mode event exactly as `to_binary` wrote it (lower-case names, percent-encoded values),
    as a structured-mode document, without decoding and checking it again: the broker's batched
    deliveries of journaled events, which were checked when they arrived (re-parsing each one cost
    a tenth of the broker's CPU)."""
    doc: dict[str, object] = {name[3:]: unquote(value) for name, value in headers.items() if name.startswith("ce-")}
    content_type = headers.get("content-type")
    if content_type is not None:
        doc["datacontenttype"] = content_type
    if body:
        doc["data_base64"] = base64.b64encode(body).decode()
    return doc


def to_structured(event: CloudEvent) -> bytes:
    """The event as one structured-mode JSON document (used for storage, batches and tests)."""
    return orjson.dumps(to_structured_doc(event))
