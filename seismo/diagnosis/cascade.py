"""Walk upstream: which models fed this one (the records' `parentid` lineage), and what they did.

For each upstream model the diagnosis compares its outputs and its version before and after this
model's change point: a version that changed, or outputs that moved, is the candidate cause.

A Seldon Core graph node logs its subtree's response (the executor logs it after the node's children
answered), so a Seldon parent's logged response already holds what this model did: comparing it would
blame the parent for this model's own regression. For Seldon records the parent's output is read where
it arrived, in this model's logged requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import islice

import numpy as np

from seismo.diagnosis.evidence import MIN_WINDOW, class_drift, ks_test
from seismo.diagnosis.rules import UpstreamChange
from seismo.protocol.binary import load_document
from seismo.protocol.payloads import PayloadError, instances_of
from seismo.store import Record, RecordStore
from seismo.store.base import stored_records

MAX_RECORDS = 20_000
"""Records read per model for the walk (the oldest in range when there are more)."""
MIN_LINKS = 10
"""An upstream model needs this many links before it is compared."""


def records_in_range(store: RecordStore, model: str, since: float | None, until: float | None) -> Iterator[Record]:
    """The model's records oldest first (as replay reads them), at most MAX_RECORDS."""
    return islice(stored_records(store, model, since, until), MAX_RECORDS)


def _output_value(record: Record) -> float | None:
    """An upstream prediction reduced to one number: its class (argmax of a probability row) or its first value."""
    if (record.status or 200) >= 400:
        return None
    return _first_value(record.response)


def _first_value(body: bytes | None) -> float | None:
    if not body:
        return None
    try:
        doc = load_document(body, what="stored payload")
        array = np.asarray(instances_of(doc), dtype=np.float64)
    except (PayloadError, TypeError, ValueError):
        return None
    if array.size == 0 or not np.isfinite(array).all():
        return None
    row = array.reshape(len(array), -1)[0] if array.ndim else array.reshape(1)
    looks_like_probabilities = row.size > 1 and bool(np.all((row >= 0) & (row <= 1))) and abs(float(row.sum()) - 1.0) < 1e-3
    return float(np.argmax(row)) if looks_like_probabilities else float(row[0])


def _is_seldon(record: Record) -> bool:
    return any(t.startswith("io.seldon.") for t in record.event_types)


def upstream_models(store: RecordStore, model: str, since: float | None,
                    until: float | None) -> tuple[Counter[str], dict[str, list[tuple[float, float]]]]:
    """Upstream model -> how many of `model`'s predictions in range name one of its predictions as parent;
    and, for Seldon graph parents, their outputs as this model received them: (request time, value)."""
    children = [r for r in records_in_range(store, model, since, until) if r.extensions.get("parentid")]
    found: Counter[str] = Counter()
    received: dict[str, list[tuple[float, float]]] = {}
    for start in range(0, len(children), 500):
        chunk = children[start:start + 500]
        parents = store.get_many([r.extensions["parentid"] for r in chunk])
        for child in chunk:
            parent = parents.get(child.extensions["parentid"])
            if parent is None or not parent.model or parent.model == model:
                continue
            found[parent.model] += 1
            if _is_seldon(parent) and _is_seldon(child):
                value = _first_value(child.request)
                if value is not None:
                    received.setdefault(parent.model, []).append((child.request_time or child.created_at, value))
    return found, received


def compare_upstream(store: RecordStore, upstream: str, links: int, split: float, since: float | None,
                     until: float | None, received: list[tuple[float, float]] | None = None) -> UpstreamChange | None:
    """The upstream model's versions and outputs before vs after `split` (this model's change point).

    `received`: the upstream's outputs as the downstream model got them (a Seldon graph parent), read
    instead of the upstream's own logged responses."""
    before_versions: Counter[str] = Counter()
    after_versions: Counter[str] = Counter()
    before: list[float] = []
    after: list[float] = []
    first_after_at: dict[str, float] = {}
    for record in records_in_range(store, upstream, since, until):
        at = record.response_time or record.created_at
        value = _output_value(record)
        version = record.model_version or record.extensions.get("modelversion")
        side_after = at >= split
        if version:
            (after_versions if side_after else before_versions)[version] += 1
            # the earliest answer of each version, not the first stored: with concurrent clients and
            # batched events the logger stores records out of their answers' order
            first_after_at[version] = min(at, first_after_at.get(version, at))
        if value is not None and not received:
            (after if side_after else before).append(value)
    for at, value in received or ():
        (after if at >= split else before).append(value)
    if not before and not after:
        return None
    version_before = before_versions.most_common(1)[0][0] if before_versions else None
    version_after = after_versions.most_common(1)[0][0] if after_versions else None
    drift = None
    if len(before) >= MIN_WINDOW and len(after) >= MIN_WINDOW:
        b, a = np.array(before), np.array(after)
        is_class = bool(np.all(b == np.round(b)) and np.all(a == np.round(a)) and len(np.unique(np.concatenate([a, b]))) <= 50)
        drift = class_drift(b, a) if is_class else ks_test(b.reshape(-1, 1), a.reshape(-1, 1), ["output"])
    changed_at = split
    if version_after is not None and version_after != version_before:
        changed_at = first_after_at.get(version_after, split)
    return UpstreamChange(upstream, version_before, version_after, drift, changed_at, links)


def upstream_changes(store: RecordStore, model: str, split: float | None, since: float | None,
                     until: float | None = None) -> list[UpstreamChange]:
    if split is None:
        return []
    changes = []
    found, received = upstream_models(store, model, since, until)
    for upstream, links in found.most_common(5):
        if links >= MIN_LINKS:
            change = compare_upstream(store, upstream, links, split, since, until, received.get(upstream))
            if change is not None:
                changes.append(change)
    return changes
