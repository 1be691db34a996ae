"""Limits on what a client may send, checked before any work is done on it.

Each check raises PayloadError (a 400 at the services) with a message naming the value at fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import chain
from typing import Any

import orjson

from seismo.protocol.payloads import PayloadError

MAX_JSON_DEPTH = 32
"""Nesting depth of any JSON body: a 4-D image batch inside a V1 body is 6 levels deep."""
MAX_ID_CHARS = 256
# A prediction id is echoed in the X-Prediction-Id header and sent as ce-id: visible ASCII only, so
# every peer (KServe, Seldon, proxies, Elasticsearch ids) can carry it unchanged.
# Visible ASCII but '/': an id is a path segment of GET /v1/records/{id}, and a '/' stays a separator even
# percent-encoded (an id with one made that a 404, and `victim/lineage` answered another record's lineage).
# '?' and '#' are fine percent-encoded.
_ID = re.compile(rf"^[\x21-\x2e\x30-\x7e]{{1,{MAX_ID_CHARS}}}$")


_CONTAINERS = (list, dict)


def check_depth(doc: Any, limit: int = MAX_JSON_DEPTH, what: str = "request body") -> Any:
    """`doc` unchanged, or PayloadError if lists and objects nest deeper than `limit`.

    On the prediction path for every request: a level's element types are collected in C
    (`set(map(type, ...))`), and only levels that hold containers are walked in Python, so an image's
    3,072 floats cost one C pass instead of 3,072 Python steps (profiled: the walk took 27 % of the
    model server's CPU before)."""
    level: list[Any] = [doc]
    depth = 0
    while level:
        depth += 1
        containers: list[Iterable[Any]] = [value for value in level if type(value) is list]
        containers += [value.values() for value in level if type(value) is dict]
        if not containers:
            break
        if depth > limit:
            raise PayloadError(f"{what} nests deeper than {limit} levels of lists and objects")
        children = list(chain.from_iterable(containers))  # C loops: one pass over the whole level
        kinds = set(map(type, children))
        level = [child for child in children if type(child) in _CONTAINERS] if list in kinds or dict in kinds else []
    return doc


def loads(body: bytes, what: str = "request body", depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON, refusing invalid JSON and excessive nesting with a PayloadError naming the problem."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc}") from None
    return check_depth(doc, depth, what)


def is_prediction_id(value: object) -> bool:
    """1-256 visible ASCII characters but / (fullmatch: `$` alone would let a trailing newline through)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_prediction_id(value: str, where: str) -> str:
    """`value` if it can be a prediction id (1-256 visible ASCII characters), else PayloadError."""
    if not is_prediction_id(value):
        shown = value[:60].encode("unicode_escape").decode("ascii")
        raise PayloadError(
            f"{where} {shown!r} cannot be a prediction id: use 1 to {MAX_ID_CHARS} visible ASCII characters other than "
            "'/' (no spaces, control characters or non-ASCII letters): it is echoed in the X-Prediction-Id "
            "header and names the record in GET /v1/records/{id}"
        )
    return value


DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""One default body limit along the event path (model server, broker, logger, detectors): a prediction
the model server accepts is an event the broker and the logger accept."""


class BodyTooLarge(Exception):
    def __init__(self, limit: int, message: str | None = None):
        super().__init__(message or f"request body is larger than the limit of {limit} bytes")
        self.limit = limit
