"""The record store: one record per prediction, built up from the events that concern it.

A request event, a response event and detector replies arrive separately and in any order, possibly
more than once (the broker is at-least-once). `merge` folds one event into a record and says whether
it changed anything, so every backend deduplicates on (prediction id, event type) the same way.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import orjson

from seismo.protocol.limits import check_depth
from seismo.protocol.payloads import PayloadError
from seismo.protocol.types import EventKind
from seismo.times import rfc3339


@dataclass(frozen=True)
class Record:
    prediction_id: str
    model: str
    model_version: str | None = None
    created_at: float = 0.0  # when the store first heard of this prediction (epoch seconds)
    updated_at: float = 0.0
    request_time: float | None = None  # the request event's ce-time, else when it arrived
    response_time: float | None = None
    request: bytes | None = None
    request_content_type: str | None = None
    response: bytes | None = None
    response_content_type: str | None = None
    status: int | None = None  # HTTP status the model server answered with, when it says
    extensions: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    event_types: tuple[str, ...] = ()  # every event type folded in so far: the dedup key


@dataclass(frozen=True)
class RecordUpdate:
    """One event's contribution to a record."""

    prediction_id: str
    kind: EventKind
    event_type: str
    model: str
    time: float
    body: bytes = b""
    content_type: str | None = None
    status: int | None = None
    model_version: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    """An event no subscriber took after the broker's retries, kept whole so it can be sent again
    (`seismo dead-letters replay`). `key` is a digest of (source, id, destination): the sink's own
    retries and a second pod store it once."""

    key: str
    event_id: str
    type: str
    model: str | None
    received_at: float  # when the dead-letter sink got it (epoch seconds)
    code: str  # the subscriber's last answer (knativeerrorcode), "none" when it gave none
    destination: str | None  # the subscriber that refused it (knativeerrordest)
    event: bytes  # the whole event in structured mode, the knativeerror* extensions included

    @staticmethod
    def key_of(source: str, event_id: str, destination: str | None) -> str:
        return hashlib.sha256(orjson.dumps([source, event_id, destination])).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "id": self.event_id, "type": self.type, "model": self.model, "time": rfc3339(self.received_at),
                "code": self.code, "destination": self.destination, "size": len(self.event)}


KEPT_ASIDE: Literal["kept_aside"] = "kept_aside"
Stored = bool | Literal["kept_aside"]
"""What applying an update did: True folded in, False a duplicate, KEPT_ASIDE a conflicting duplicate."""
MAX_CONFLICTS = 5
"""Conflicting duplicates kept per record (`annotations.conflicts`); later ones are only counted."""
MAX_CONFLICT_PAYLOAD = 64 * 1024
"""A conflicting payload up to this size is kept whole; a larger one by its digest and size."""


def merge(record: Record | None, update: RecordUpdate, now: float) -> Record | None:
    """The record with `update` folded in, or None when the update is a duplicate.

    The first request and response of a prediction id are its record's; another with a different
    payload (a forgery, or two servers sharing ids) is not merged and not dropped: it is kept aside
    under the `conflicts` annotation (see `outcome`, which tells the two apart)."""
    if record is None:
        if update.kind is EventKind.DRIFT:
            return None  # a window's result belongs to the drift log; it annotates only a record that exists
        record = Record(prediction_id=update.prediction_id, model=update.model, created_at=now)
    elif update.event_type in record.event_types:
        return _kept_aside(record, update, now)
    changes: dict[str, Any] = {
        "updated_at": now,
        "event_types": (*record.event_types, update.event_type),
        "extensions": {**update.extensions, **record.extensions},
    }
    if record.model in ("", "unknown") and update.model != "unknown":
        changes["model"] = update.model
    if record.model_version is None and update.model_version:
        changes["model_version"] = update.model_version
    if update.kind is EventKind.REQUEST:
        changes.update(request=update.body, request_content_type=update.content_type, request_time=update.time)
    elif update.kind is EventKind.RESPONSE:
        changes.update(response=update.body, response_content_type=update.content_type, response_time=update.time)
        if update.status is not None:
            changes["status"] = update.status
        elif record.status is None:
            changes["status"] = 200  # KServe logs only successful responses
    else:
        # Detector replies and feedback become annotations under their kind's name.
        changes["annotations"] = {**record.annotations, update.kind.value: _decode_payload(update.body, update.content_type)}
    return replace(record, **changes)


def _kept_aside(record: Record, update: RecordUpdate, now: float) -> Record | None:
    """The record with a conflicting duplicate added to its `conflicts` annotation; None for a true
    duplicate (the broker is at-least-once), one already kept, or once MAX_CONFLICTS are kept."""
    if update.kind is EventKind.REQUEST:
        current = record.request
    elif update.kind is EventKind.RESPONSE:
        current = record.response
    else:
        return None  # detector replies annotate once; feedback is joined (and replaced) in the metrics ledger
    if update.body == (current or b""):
        return None
    if update.extensions.get("modelid"):
        return None  # a Seldon graph's nodes fold into their puid's record when no graph is configured: the first one's stays
    digest = hashlib.sha256(update.body).hexdigest()
    conflicts = list(record.annotations.get("conflicts") or [])
    if len(conflicts) >= MAX_CONFLICTS or any(c.get("sha256") == digest for c in conflicts):
        return None
    conflicts.append({"event_type": update.event_type, "received_at": rfc3339(now), "sha256": digest, "bytes": len(update.body),
                      "payload": _decode_payload(update.body, update.content_type) if len(update.body) <= MAX_CONFLICT_PAYLOAD else None})
    return replace(record, updated_at=now, annotations={**record.annotations, "conflicts": conflicts})


def payload_bytes(record: Record) -> int:
    return len(record.request or b"") + len(record.response or b"")


class StoreUnavailable(Exception):
    """The record store refused a read or a write: nothing was stored (a 503, so the sender or the broker retries)."""


class Page(list):
    """Records, and whether a byte budget left some out (`truncated`)."""

    truncated = False


def within_budget(records: Iterator[Record], max_bytes: int | None) -> Page:
    """The records up to the one whose payloads would take the total past `max_bytes` (at least one)."""
    out = Page()
    total = 0
    for record in records:
        total += payload_bytes(record)
        if out and max_bytes is not None and total > max_bytes:
            out.truncated = True
            break
        out.append(record)
    return out


def result_digest(result: dict[str, Any]) -> str:
    """A drift result's identity beside its (model, window): the same result redelivered has the same one."""
    return hashlib.sha256(orjson.dumps(result, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def outcome(before: Record | None, update: RecordUpdate, after: Record | None) -> Stored:
    """What `merge(before, update)` giving `after` did to the record."""
    if after is None:
        return False
    return KEPT_ASIDE if before is not None and update.event_type in before.event_types else True


def _decode_payload(body: bytes | None, content_type: str | None) -> Any:
    """JSON payloads as JSON values; text as a string; anything else as base64."""
    if body is None:
        return None
    if not body:
        return None
    try:
        # Depth-checked: a body nested deeper than any service accepts (stored because even refused
        # predictions are logged) is returned as text, so reading the record never fails.
        return check_depth(orjson.loads(body), what="stored payload")
    except (orjson.JSONDecodeError, PayloadError):
        pass
    # Text only when it is text: binary tensors (all-zero images are valid UTF-8) stay bytes, as base64.
    binary_type = content_type is not None and not content_type.startswith("text/") and "json" not in content_type
    if not binary_type:
        try:
            text = body.decode("utf-8")
            if text.isprintable() or not _CONTROL.search(text):
                return text
        except UnicodeDecodeError:
            pass
    return {"base64": base64.b64encode(body).decode(), "content_type": content_type}


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # what text has none of (tabs and line ends aside)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def embedding_view(record: Record) -> tuple[list | None, str | None]:
    """(embedding, embedding_version) of a record: the vectors its response event carried, if any.

    Reading never fails: a response whose embedding cannot be read shows none (the drift service
    counted it when the event arrived)."""
    from seismo.embeddings.extract import VERSION_EXTENSION, embedding_of

    version = record.extensions.get(VERSION_EXTENSION)
    if not version or not record.response:
        return None, version
    try:
        found = embedding_of(record.response, record.extensions)
    except (PayloadError, ValueError):
        return None, version
    return (found.vectors.tolist() if found is not None else None), version


def response_view(record: Record) -> dict[str, Any]:
    """What the embeddings' views read of a record (`embedding`, `embedding_version`, `response`,
    `annotations`), without decoding the request, which for images is most of the record."""
    embedding, embedding_version = embedding_view(record)
    return {"embedding": embedding, "embedding_version": embedding_version, "annotations": record.annotations,
            "response": _decode_payload(record.response, record.response_content_type)}


def record_to_json(record: Record) -> dict[str, Any]:
    """The record as the logger's HTTP API returns it."""
    embedding, embedding_version = embedding_view(record)
    return {
        "prediction_id": record.prediction_id,
        "model": record.model,
        "model_version": record.model_version,
        "created_at": _iso(record.created_at),
        "request_time": _iso(record.request_time),
        "response_time": _iso(record.response_time),
        "status": record.status,
        "request": _decode_payload(record.request, record.request_content_type),
        "response": _decode_payload(record.response, record.response_content_type),
        "request_content_type": record.request_content_type,
        "response_content_type": record.response_content_type,
        "extensions": record.extensions,
        "annotations": record.annotations,
        "event_types": list(record.event_types),
        "embedding": embedding,
        "embedding_version": embedding_version,
    }


def lineage_link(record: Record) -> dict[str, Any]:
    """One link of a lineage chain: who predicted what when, without payloads (fetch the record for those)."""
    return {"prediction_id": record.prediction_id, "model": record.model, "model_version": record.model_version,
            "created_at": _iso(record.created_at), "status": record.status, "parent_id": record.extensions.get("parentid")}


class RecordStore(Protocol):
    """What every backend offers. Calls block: services run them in a worker thread."""

    def apply(self, updates: list[RecordUpdate]) -> list[Stored]:
        """Fold updates in, atomically where the backend allows; True where a record changed, KEPT_ASIDE
        where a conflicting duplicate was kept aside, False for a duplicate."""

    def get(self, prediction_id: str) -> Record | None: ...

    def get_many(self, prediction_ids: list[str]) -> dict[str, Record]:
        """The records that exist among `prediction_ids`, by id."""

    def query(
        self, model: str | None = None, since: float | None = None, until: float | None = None, limit: int = 100,
        max_bytes: int | None = None, requests: bool = True,
    ) -> list[Record]:
        """Records oldest first by creation time, optionally one model's, in [since, until). `max_bytes`:
        stop before the record whose payloads would take the total past it (one record at least, so a
        listing always moves on). `requests=False`: leave request payloads out (None)."""

    def count(self, model: str | None = None) -> int: ...

    def embedding_versions(self, model: str | None = None) -> list[dict[str, Any]]:
        """The embedding versions records carry: `version`, `count`, `first` and `last` (creation times,
        epoch seconds), oldest first."""

    def add_drift_window(self, model: str, window: int, result: dict[str, Any]) -> Stored:
        """Append a tested window to the drift log: True; False if the same result for (model, window) is
        there (a redelivery); KEPT_ASIDE when another result for it is there: this one is kept too,
        marked `"conflict": true`, so a result sent first cannot take a later one's place unseen."""

    def drift_windows(self, model: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The drift log, oldest window first."""

    def add_dead_letter(self, letter: DeadLetter) -> bool:
        """Keep a dead letter: True; False when one with its key is there already."""

    def dead_letters(self, model: str | None = None, limit: int = 100, after: tuple[float, str] | None = None) -> list[DeadLetter]:
        """Dead letters oldest first (by received_at, then key), optionally one model's, after the cursor
        (received_at, key) of the last one a caller has seen."""

    def remove_dead_letter(self, key: str) -> bool:
        """Forget a dead letter (replayed): True if it was there."""

    def expire(self, older_than: float) -> dict[str, int]:
        """Retention: remove records created, drift windows and dead letters received before `older_than`;
        counts by kind."""

    def close(self) -> None: ...


def stored_records(store: RecordStore, model: str, since: float | None, until: float | None, page_size: int = 1000) -> Iterator[Record]:
    """Every record of `model` in [since, until), oldest first, page by page (ties on created_at kept once)."""
    seen: set[str] = set()
    cursor = since
    while True:
        page = store.query(model=model, since=cursor, until=until, limit=page_size)
        fresh = [r for r in page if r.prediction_id not in seen]
        for record in fresh:
            seen.add(record.prediction_id)
            yield record
        if len(page) < page_size or not fresh:
            return
        cursor = page[-1].created_at
        seen = {r.prediction_id for r in page if r.created_at == cursor}  # only ties can come back
