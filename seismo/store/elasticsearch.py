"""Elasticsearch record store, with the official client (installed with the `elasticsearch` extra).

Index names follow Seldon's request logger (`inference-log-<engine>-<namespace>-<model>-<endpoint>`),
so existing Kibana index patterns (`inference-log-*`) keep working. A record is upserted by
prediction id with optimistic concurrency (`if_seq_no`/`if_primary_term`): two replicas of the
logger folding different events into one record never overwrite each other.

A batch of updates costs one ids search and one `_bulk` request (one refresh wait, not one per
record): updates to one id are folded in memory first, and only the items Elasticsearch refuses
(409: another writer won, read again; 429/5xx: wait and retry) go round again.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seismo.retry import Backoff, is_transient, retry_call
from seismo.store.base import KEPT_ASIDE, DeadLetter, Record, RecordUpdate, Stored, merge, outcome, result_digest, within_budget

log = logging.getLogger(__name__)
_INDEX_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


@dataclass(frozen=True)
class ElasticsearchConfig:
    url: str
    index_prefix: str = "inference-log"
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    max_retries: int = 5
    backoff_seconds: float = 0.2
    timeout_seconds: float = 10.0
    max_indices: int = 50
    """Record indices this store creates at most; records that would need another go to `<prefix>-other`."""

    @classmethod
    def with_secret_dir(cls, url: str, secret_dir: str | Path | None, **kwargs: Any) -> ElasticsearchConfig:
        """Fill credentials from a mounted Kubernetes Secret (files username, password, api_key, ca.crt)."""
        if secret_dir:
            folder = Path(secret_dir)
            for field_name, file_name in (("username", "username"), ("password", "password"), ("api_key", "api_key")):
                path = folder / file_name
                if kwargs.get(field_name) is None and path.exists():
                    kwargs[field_name] = path.read_text().strip()
            if kwargs.get("ca_certs") is None and (folder / "ca.crt").exists():
                kwargs["ca_certs"] = str(folder / "ca.crt")
        return cls(url=url, **kwargs)


def index_name(prefix: str, record: Record) -> str:
    ext = record.extensions
    engine = "seldon" if any(t.startswith("io.seldon.") for t in record.event_types) else "inferenceservice"
    parts = [prefix, engine, ext.get("namespace") or "default", record.model or "unknown", ext.get("endpoint") or "default"]
    return _INDEX_UNSAFE.sub("-", "-".join(parts).lower()).strip("-_.")[:255]


def _to_doc(r: Record) -> dict[str, Any]:
    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()

    return {
        "prediction_id": r.prediction_id,
        "model": r.model,
        "model_version": r.model_version,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "request_time": r.request_time,
        "response_time": r.response_time,
        # Payloads keep their exact bytes; the API decodes them the same way for both backends.
        "request_base64": b64(r.request),
        "request_content_type": r.request_content_type,
        "response_base64": b64(r.response),
        "response_content_type": r.response_content_type,
        "status": r.status,
        "extensions": r.extensions,
        "annotations": r.annotations,
        "event_types": list(r.event_types),
    }


def _from_doc(doc: dict[str, Any]) -> Record:
    def unb64(text: str | None) -> bytes | None:
        return None if text is None else base64.b64decode(text)

    return Record(
        prediction_id=doc["prediction_id"],
        model=doc["model"],
        model_version=doc.get("model_version"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        request_time=doc.get("request_time"),
        response_time=doc.get("response_time"),
        request=unb64(doc.get("request_base64")),
        request_content_type=doc.get("request_content_type"),
        response=unb64(doc.get("response_base64")),
        response_content_type=doc.get("response_content_type"),
        status=doc.get("status"),
        extensions=doc.get("extensions") or {},
        annotations=doc.get("annotations") or {},
        event_types=tuple(doc.get("event_types") or ()),
    )


class ElasticsearchRecordStore:
    def __init__(self, config: ElasticsearchConfig, sleep: Callable[[float], None] = time.sleep):
        from elasticsearch import Elasticsearch  # optional extra: imported only when configured

        self.config = config
        self._sleep = sleep
        self.models: frozenset[str] = frozenset()
        """The configured models (the logger's SEISMO_LOGGER_MODELS): only they get indices of their own.
        Model, namespace and endpoint come from events; an index per name a client makes up would
        exhaust a shared cluster's shards."""
        self._indices: set[str] = set()
        auth: dict[str, Any] = {}
        tls: dict[str, Any] = {"ca_certs": config.ca_certs} if config.ca_certs else {}
        if config.api_key:
            auth["api_key"] = config.api_key
        elif config.username:
            auth["basic_auth"] = (config.username, config.password or "")
        self._es = Elasticsearch(
            config.url,
            verify_certs=config.verify_certs,
            **tls,
            request_timeout=config.timeout_seconds,
            max_retries=0,  # retries are ours: with backoff, and only on the statuses that warrant them
            **auth,
        )
        self._drift_index = f"{config.index_prefix}-drift"
        self._dead_letter_index = f"{config.index_prefix}-dead-letters"
        # Records are in every index under the prefix but these two (a drift result's id, `model:window`,
        # is also a valid prediction id: an ids search over both would find it).
        self._pattern = f"{config.index_prefix}-*,-{self._drift_index},-{self._dead_letter_index}"
        self._put_template()

    def _put_template(self) -> None:
        """Map the times as doubles and the payloads as unindexed binary in every index under the prefix.
        Dynamic mapping would make a time a 32-bit float (about 2 minutes apart at today's epoch seconds:
        `since`, `until` and ordering would be that coarse) and analyse every base64 payload as text.
        Without the right to manage templates the store still works, with those two faults: logged."""
        from elasticsearch import ApiError

        times = ("created_at", "updated_at", "request_time", "response_time", "received_at")
        payloads = ("request_base64", "response_base64", "event_base64")
        mappings = {"properties": {**{name: {"type": "double"} for name in times}, **{name: {"type": "binary"} for name in payloads}}}
        try:
            self._call("put_index_template", lambda: self._es.indices.put_index_template(
                name=self.config.index_prefix, index_patterns=[f"{self.config.index_prefix}-*"], template={"mappings": mappings}))
        except ApiError as exc:
            log.warning("could not put the index template %r (HTTP %s): times are mapped as 32-bit floats and payloads as text",
                        self.config.index_prefix, exc.meta.status)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """One Elasticsearch call, retried with backoff on what may pass (throttling, 5xx, no connection)."""
        from elasticsearch import ApiError, ConnectionError, ConnectionTimeout

        def transient(exc: Exception) -> str | None:
            if isinstance(exc, ApiError):
                return f"HTTP {exc.meta.status}" if is_transient(exc.meta.status) else None
            if isinstance(exc, (ConnectionError, ConnectionTimeout)):
                return type(exc).__name__
            return None

        backoff = Backoff(self.config.backoff_seconds, 10.0, jitter=False)
        return retry_call(fn, self.config.max_retries + 1, backoff, f"elasticsearch {what}", transient, self._sleep)

    def apply(self, updates: list[RecordUpdate]) -> list[Stored]:
        """Fold each update into its record: True if it changed it, False for a duplicate, KEPT_ASIDE
        for a conflicting duplicate (seismo.store.base.merge)."""
        results: list[Stored] = [False] * len(updates)
        pending = list(range(len(updates)))
        backoff = Backoff(self.config.backoff_seconds, 10.0, jitter=False)
        # Where a refused record is known to live (a 409 proves it exists there): re-read by a realtime get,
        # because another replica's write is not searchable until the next refresh.
        located: dict[str, str] = {}
        for attempt in range(1, 11):  # optimistic concurrency: rounds of re-read and re-merge for the refused items
            ids = list(dict.fromkeys(updates[i].prediction_id for i in pending))
            found = self._find_many([pid for pid in ids if pid not in located])
            found.update(self._get_located({pid: located[pid] for pid in ids if pid in located}))
            now = round(time.time(), 6)
            merged: dict[str, Record] = {}
            owners: dict[str, list[int]] = {}
            for i in pending:
                update = updates[i]
                base = merged.get(update.prediction_id) or (found[update.prediction_id][0] if update.prediction_id in found else None)
                record = merge(base, update, now)
                results[i] = outcome(base, update, record)
                if record is not None:
                    merged[update.prediction_id] = record
                    owners.setdefault(update.prediction_id, []).append(i)
            if not merged:
                return results
            operations: list[dict[str, Any]] = []
            for pid, record in merged.items():
                if pid in found:
                    _, index, seq_no, primary_term = found[pid]
                    operations.append({"index": {"_index": index, "_id": pid, "if_seq_no": seq_no, "if_primary_term": primary_term}})
                else:
                    operations.append({"create": {"_index": self.index_for(record), "_id": pid}})
                operations.append(_to_doc(record))
            response = self._call("bulk", functools.partial(self._es.bulk, operations=operations, refresh="wait_for"))
            pending, transient = [], False
            for pid, item in zip(merged, response["items"]):
                (detail,) = item.values()
                status = int(detail.get("status", 500))
                if status < 300:
                    continue
                if status == 409:
                    located[pid] = detail.get("_index") or (found[pid][1] if pid in found else self.index_for(merged[pid]))
                if status != 409 and not is_transient(status):
                    raise RuntimeError(f"elasticsearch refused record {pid}: HTTP {status} {str(detail.get('error'))[:300]}")
                transient = transient or status != 409
                pending.extend(owners[pid])
            if not pending:
                return results
            if transient:
                self._sleep(backoff.delay(attempt))
            pending.sort()
        raise RuntimeError(f"records {sorted({updates[i].prediction_id for i in pending})[:5]} kept changing or being refused "
                           "under 10 attempts to update them")

    def index_for(self, record: Record) -> str:
        """The record's Seldon-style index if its model is configured (and the index budget allows), else `<prefix>-other`."""
        name = index_name(self.config.index_prefix, record)
        if name in self._indices:
            return name
        if (self.models and record.model not in self.models) or len(self._indices) >= self.config.max_indices:
            return f"{self.config.index_prefix}-other"
        self._indices.add(name)
        return name

    def _find_many(self, prediction_ids: list[str]) -> dict[str, tuple[Record, str, int, int]]:
        """The records among `prediction_ids` with where they live and their concurrency tokens."""
        found: dict[str, tuple[Record, str, int, int]] = {}
        for start in range(0, len(prediction_ids), 500):
            chunk = prediction_ids[start:start + 500]
            result = self._call(
                "search",
                functools.partial(self._es.search, index=self._pattern, query={"ids": {"values": chunk}}, size=len(chunk),
                                  seq_no_primary_term=True, ignore_unavailable=True, allow_no_indices=True),
            )
            for hit in result["hits"]["hits"]:
                record = _from_doc(hit["_source"])
                found.setdefault(record.prediction_id, (record, hit["_index"], hit["_seq_no"], hit["_primary_term"]))
        return found

    def _get_located(self, where: dict[str, str]) -> dict[str, tuple[Record, str, int, int]]:
        """The records at known indices with their concurrency tokens, by one realtime `_mget`."""
        if not where:
            return {}
        docs = [{"_index": index, "_id": pid} for pid, index in where.items()]
        result = self._call("mget", functools.partial(self._es.mget, docs=docs))
        return {doc["_id"]: (_from_doc(doc["_source"]), doc["_index"], doc["_seq_no"], doc["_primary_term"])
                for doc in result["docs"] if doc.get("found")}

    def get(self, prediction_id: str) -> Record | None:
        found = self._find_many([prediction_id]).get(prediction_id)
        return found[0] if found else None

    def get_many(self, prediction_ids: list[str]) -> dict[str, Record]:
        """The records that exist among `prediction_ids`, by id: one ids search per 500."""
        found: dict[str, Record] = {}
        for start in range(0, len(prediction_ids), 500):
            chunk = prediction_ids[start:start + 500]
            result = self._call(
                "search",
                functools.partial(self._es.search, index=self._pattern, query={"ids": {"values": chunk}}, size=len(chunk),
                                  ignore_unavailable=True, allow_no_indices=True),
            )
            for hit in result["hits"]["hits"]:
                record = _from_doc(hit["_source"])
                found[record.prediction_id] = record
        return found

    def query(
        self, model: str | None = None, since: float | None = None, until: float | None = None, limit: int = 100,
        max_bytes: int | None = None, requests: bool = True,
    ) -> list[Record]:
        filters: list[dict[str, Any]] = []
        if model is not None:
            filters.append({"term": {"model": model}})
        bounds = {k: v for k, v in (("gte", since), ("lt", until)) if v is not None}
        if bounds:
            filters.append({"range": {"created_at": bounds}})
        result = self._call(
            "search",
            lambda: self._es.search(
                index=self._pattern,
                query={"bool": {"filter": filters}},
                sort=[{"created_at": "asc"}],
                size=limit,
                ignore_unavailable=True,
                allow_no_indices=True,
                source_excludes=None if requests else ["request_base64"],
            ),
        )
        # The page comes whole from the cluster; the byte budget bounds what is answered.
        return within_budget((_from_doc(hit["_source"]) for hit in result["hits"]["hits"]), max_bytes)

    def count(self, model: str | None = None) -> int:
        query = {"term": {"model": model}} if model is not None else {"match_all": {}}
        result = self._call(
            "count",
            lambda: self._es.count(index=self._pattern, query=query, ignore_unavailable=True, allow_no_indices=True),
        )
        return int(result["count"])

    def embedding_versions(self, model: str | None = None) -> list[dict]:
        # A terms aggregation on the dynamic mapping's keyword subfield, with the creation time range of each.
        field = "extensions.embeddingversion.keyword"
        filters: list[dict[str, Any]] = [{"exists": {"field": field}}]
        if model is not None:
            filters.append({"term": {"model": model}})
        result = self._call(
            "search",
            lambda: self._es.search(
                index=self._pattern, query={"bool": {"filter": filters}}, size=0, ignore_unavailable=True, allow_no_indices=True,
                aggs={"versions": {"terms": {"field": field, "size": 1000},
                                   "aggs": {"first": {"min": {"field": "created_at"}}, "last": {"max": {"field": "created_at"}}}}},
            ),
        )
        buckets = (result.get("aggregations") or {}).get("versions", {}).get("buckets", [])
        rows = [{"version": b["key"], "count": b["doc_count"], "first": b["first"]["value"], "last": b["last"]["value"]} for b in buckets]
        return sorted(rows, key=lambda r: r["first"] or 0)

    def add_drift_window(self, model: str, window: int, result: dict) -> Stored:
        from elasticsearch import ConflictError

        index = self._drift_index
        doc = {"model": model, "window": window, "received_at": time.time(), "result": result}
        try:
            self._call("index", lambda: self._es.index(index=index, id=f"{model}:{window}", document=doc, op_type="create", refresh="wait_for"))
            return True
        except ConflictError:
            pass
        first = self._call("get", lambda: self._es.get(index=index, id=f"{model}:{window}"))["_source"]["result"]
        digest = result_digest(result)
        if result_digest(first) == digest:
            return False
        conflict = {**doc, "result": {**result, "conflict": True}}
        try:  # kept beside the first, under an id of its own
            self._call("index", lambda: self._es.index(index=index, id=f"{model}:{window}:{digest}", document=conflict, op_type="create",
                                                       refresh="wait_for"))
        except ConflictError:
            return False
        return KEPT_ASIDE

    def drift_windows(self, model: str | None = None, limit: int = 1000) -> list[dict]:
        query = {"term": {"model": model}} if model is not None else {"match_all": {}}
        result = self._call("search", lambda: self._es.search(
            index=self._drift_index, query=query, sort=[{"received_at": "asc"}, {"window": "asc"}],
            size=limit, ignore_unavailable=True, allow_no_indices=True))
        return [hit["_source"]["result"] for hit in result["hits"]["hits"]]

    def add_dead_letter(self, letter: DeadLetter) -> bool:
        from elasticsearch import ConflictError

        doc = {"key": letter.key, "event_id": letter.event_id, "type": letter.type, "model": letter.model,
               "received_at": letter.received_at, "code": letter.code, "destination": letter.destination,
               "event_base64": base64.b64encode(letter.event).decode()}
        try:
            self._call("index", lambda: self._es.index(index=self._dead_letter_index, id=letter.key, document=doc, op_type="create",
                                                       refresh="wait_for"))
            return True
        except ConflictError:
            return False

    def dead_letters(self, model: str | None = None, limit: int = 100, after: tuple[float, str] | None = None) -> list[DeadLetter]:
        query = {"term": {"model": model}} if model is not None else {"match_all": {}}
        # `key` is a dynamic keyword subfield; search_after pages on the (received_at, key) sort.
        extra: dict[str, Any] = {"search_after": list(after)} if after is not None else {}
        result = self._call("search", lambda: self._es.search(
            index=self._dead_letter_index, query=query, sort=[{"received_at": "asc"}, {"key.keyword": "asc"}], size=limit,
            ignore_unavailable=True, allow_no_indices=True, **extra))
        return [DeadLetter(key=d["key"], event_id=d["event_id"], type=d["type"], model=d.get("model"), received_at=d["received_at"],
                           code=d["code"], destination=d.get("destination"), event=base64.b64decode(d["event_base64"]))
                for d in (hit["_source"] for hit in result["hits"]["hits"])]

    def remove_dead_letter(self, key: str) -> bool:
        from elasticsearch import NotFoundError

        try:
            self._call("delete", lambda: self._es.delete(index=self._dead_letter_index, id=key, refresh="wait_for"))
            return True
        except NotFoundError:
            return False

    def expire(self, older_than: float) -> dict[str, int]:
        """Retention through `_delete_by_query` (records by created_at, the drift log and dead letters by received_at)."""
        def delete(index: str, field: str) -> int:
            result = self._call("delete_by_query", lambda: self._es.delete_by_query(
                index=index, query={"range": {field: {"lt": older_than}}}, conflicts="proceed",
                ignore_unavailable=True, allow_no_indices=True))
            return int(result.get("deleted", 0))

        return {"records": delete(self._pattern, "created_at"), "drift_windows": delete(self._drift_index, "received_at"),
                "dead_letters": delete(self._dead_letter_index, "received_at")}

    def close(self) -> None:
        self._es.close()
