"""The slice of Elasticsearch's documented REST API the record store uses, for machines with no cluster.

It checks what the official client must send (the versioned compatibility media type) and answers
as the API reference documents: the `X-Elastic-Product` header the client insists on, `_seq_no` and
`_primary_term` for optimistic concurrency, 409 `version_conflict_engine_exception` on a stale
`if_seq_no` or an existing id under `op_type=create`, wildcard index patterns with
`ignore_unavailable`, and `_bulk` (NDJSON action/source pairs, one result per item with its own
status, `errors` true when any failed), and near-real-time search: a search, count or delete-by-query
sees a document only after a refresh (`refresh=true|wait_for` on the write, or `POST /_refresh`), while
get and `_mget` are realtime. (A real cluster also refreshes every second on its own; the fake never
does, so a test sees exactly the window in which a write is stored but not yet searchable.) It can
fail its next requests, or its next bulk items, with a chosen status to test retries.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PRODUCT = {"X-Elastic-Product": "Elasticsearch", "content-type": "application/vnd.elasticsearch+json;compatible-with=9"}


class FakeElasticsearch:
    def __init__(self):
        self.indices: dict[str, dict[str, dict[str, Any]]] = {}
        """Every stored document (what get and _mget read), by index and id."""
        self.searchable: dict[str, dict[str, dict[str, Any]]] = {}
        """What search, count and delete-by-query see: the documents as of the last refresh."""
        self.seq_no = 0
        self.fail_next: list[int] = []  # statuses to answer the next requests with
        self.fail_items: list[int] = []  # statuses for the next bulk items (each item takes one)
        self.requests: list[tuple[str, str]] = []
        self.bad_headers: list[str] = []
        self.templates: dict[str, dict] = {}  # index templates by name, as put

    def _reply(self, body: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(body), status_code=status, headers=PRODUCT)

    def _check(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        accept = request.headers.get("accept", "")
        if "application/vnd.elasticsearch+json" not in accept or "compatible-with=" not in accept:
            self.bad_headers.append(f"accept: {accept!r}")
        if self.fail_next:
            status = self.fail_next.pop(0)
            return self._reply({"error": {"type": "es_rejected_execution_exception", "reason": "busy"}, "status": status}, status)
        return None

    def refresh(self) -> None:
        """Make every stored document searchable (what a refresh of every index does)."""
        self.searchable = {index: dict(docs) for index, docs in self.indices.items()}

    def _refresh_if_asked(self, request: Request, wrote: bool) -> None:
        """`refresh=true` refreshes; `wait_for` returns once a refresh has made the request's writes visible
        (here: a refresh), and at once, refreshing nothing, when none of its writes succeeded."""
        asked = request.query_params.get("refresh")
        if asked in ("true", "") or (asked == "wait_for" and wrote):
            self.refresh()

    def _matching(self, pattern: str) -> list[str]:
        """The multi-target syntax: comma-separated names and wildcards, in order; `-name` takes out what
        the targets before it matched."""
        chosen: list[str] = []
        for part in pattern.split(","):
            if part.startswith("-") and chosen:
                chosen = [name for name in chosen if not fnmatch.fnmatchcase(name, part[1:])]
            else:
                chosen += [name for name in self.searchable if fnmatch.fnmatchcase(name, part) and name not in chosen]
        return chosen

    def _hits(self, pattern: str, query: dict) -> list[dict]:
        hits = []
        for index in self._matching(pattern):
            for doc_id, doc in self.searchable[index].items():
                if _matches(doc["_source"], doc_id, query):
                    hits.append({"_index": index, "_id": doc_id, **doc})
        return hits

    def _write(self, index: str, doc_id: str, source: dict, op_type: str, if_seq_no: int | None, if_primary_term: int | None) -> tuple[int, dict]:
        """Index one document as the index API or a bulk index/create item does: (status, result)."""
        if "*" in index or index != index.lower():
            return 400, {"error": {"type": "invalid_index_name_exception", "reason": f"invalid index name [{index}]"}, "status": 400}
        docs = self.indices.setdefault(index, {})
        existing = docs.get(doc_id)
        conflict = (op_type == "create" and existing is not None) or (
            if_seq_no is not None
            and (existing is None or existing["_seq_no"] != if_seq_no or existing["_primary_term"] != if_primary_term)
        )
        if conflict:
            return 409, {"error": {"type": "version_conflict_engine_exception", "reason": f"[{doc_id}]: version conflict"}, "status": 409}
        self.seq_no += 1
        docs[doc_id] = {"_seq_no": self.seq_no, "_primary_term": 1, "_source": source}
        return (200 if existing else 201), {"_index": index, "_id": doc_id, "_version": 1, "result": "updated" if existing else "created",
                                            "_seq_no": self.seq_no, "_primary_term": 1, "_shards": {"total": 1, "successful": 1, "failed": 0}}

    def app(self) -> Starlette:
        async def search(request: Request) -> Response:
            if (failed := self._check(request)) is not None:
                return failed
            body = orjson.loads(await request.body() or b"{}")
            hits = self._hits(request.path_params["index"], body.get("query", {"match_all": {}}))
            sorts = [next(iter(sort.items())) for sort in body.get("sort", [])]
            for field, order in reversed(sorts):  # stable sorts, last key first: sorted by the first key, ties by the next
                order = order if isinstance(order, str) else order.get("order", "asc")
                hits.sort(key=lambda h: _field(h["_source"], field), reverse=order == "desc")
            for hit in hits:
                hit["sort"] = [_field(hit["_source"], field) for field, _ in sorts]
            if "search_after" in body:  # documented: the hits after these sort values (ascending sorts here)
                if not sorts or len(body["search_after"]) != len(sorts):
                    return self._reply({"error": {"type": "illegal_argument_exception", "reason": "search_after needs one value per sort"},
                                        "status": 400}, 400)
                hits = [h for h in hits if h["sort"] > list(body["search_after"])]
            aggregations = {name: _aggregate(spec, hits) for name, spec in (body.get("aggs") or {}).items()}
            hits = hits[: body.get("size", 10)]
            with_seq = body.get("seq_no_primary_term") or request.query_params.get("seq_no_primary_term") == "true"
            excluded = set(filter(None, request.query_params.get("_source_excludes", "").split(",")))  # documented: fields left out
            shown = [
                {"_index": h["_index"], "_id": h["_id"], "_score": None, "_source": {k: v for k, v in h["_source"].items() if k not in excluded},
                 **({"_seq_no": h["_seq_no"], "_primary_term": h["_primary_term"]} if with_seq else {}),
                 **({"sort": h["sort"]} if sorts else {})}
                for h in hits
            ]
            answer = {"took": 1, "timed_out": False, "hits": {"total": {"value": len(shown), "relation": "eq"}, "max_score": None, "hits": shown}}
            if aggregations:
                answer["aggregations"] = aggregations
            return self._reply(answer)

        async def count(request: Request) -> Response:
            if (failed := self._check(request)) is not None:
                return failed
            body = orjson.loads(await request.body() or b"{}")
            return self._reply({"count": len(self._hits(request.path_params["index"], body.get("query", {"match_all": {}})))})

        async def index_doc(request: Request) -> Response:
            if (failed := self._check(request)) is not None:
                return failed
            params = request.query_params
            seq = int(params["if_seq_no"]) if "if_seq_no" in params else None
            term = int(params["if_primary_term"]) if "if_primary_term" in params else None
            status, result = self._write(request.path_params["index"], request.path_params["id"], orjson.loads(await request.body()),
                                         params.get("op_type", "index"), seq, term)
            self._refresh_if_asked(request, status < 300)
            return self._reply(result, status)

        async def get_doc(request: Request) -> Response:
            # The documented contract: GET /<index>/_doc/<id> -> {"found": true, "_source": ...}, or 404 {"found": false}
            if (failed := self._check(request)) is not None:
                return failed
            index, doc_id = request.path_params["index"], request.path_params["id"]
            doc = self.indices.get(index, {}).get(doc_id)
            if doc is None:
                return self._reply({"_index": index, "_id": doc_id, "found": False}, 404)
            return self._reply({"_index": index, "_id": doc_id, "_version": 1, "found": True, **doc})

        async def delete_doc(request: Request) -> Response:
            # The documented contract: DELETE /<index>/_doc/<id> -> {"result": "deleted"}, or 404 {"result": "not_found"}
            if (failed := self._check(request)) is not None:
                return failed
            index, doc_id = request.path_params["index"], request.path_params["id"]
            found = self.indices.get(index, {}).pop(doc_id, None)
            self._refresh_if_asked(request, found is not None)
            self.seq_no += 1
            return self._reply({"_index": index, "_id": doc_id, "_version": 1, "result": "deleted" if found else "not_found",
                                "_seq_no": self.seq_no, "_primary_term": 1}, 200 if found else 404)

        async def put_template(request: Request) -> Response:
            # The documented contract: PUT /_index_template/<name> {"index_patterns": [...], "template": {...}}
            if (failed := self._check(request)) is not None:
                return failed
            self.templates[request.path_params["name"]] = orjson.loads(await request.body())
            return self._reply({"acknowledged": True})

        async def bulk(request: Request) -> Response:
            # The documented contract: POST /_bulk, NDJSON of action metadata + source lines, the client
            # sending the versioned x-ndjson media type; 200 with one item per action, in order.
            if (failed := self._check(request)) is not None:
                return failed
            content_type = request.headers.get("content-type", "")
            if "x-ndjson" not in content_type:
                self.bad_headers.append(f"bulk content-type: {content_type!r}")
            body = await request.body()
            if not body.endswith(b"\n"):
                return self._reply({"error": {"type": "illegal_argument_exception", "reason": "The bulk request must be terminated by a newline [\\n]"},
                                    "status": 400}, 400)
            lines = [orjson.loads(line) for line in body.splitlines() if line.strip()]
            items = []
            for action_line, source in zip(lines[0::2], lines[1::2]):
                (action, meta), = action_line.items()
                if action not in ("index", "create"):
                    raise ValueError(f"fake Elasticsearch does not implement bulk {action!r}")
                if self.fail_items:
                    status = self.fail_items.pop(0)
                    result = {"_index": meta["_index"], "_id": meta["_id"], "status": status,
                              "error": {"type": "es_rejected_execution_exception", "reason": "busy"}}
                else:
                    status, result = self._write(meta["_index"], meta["_id"], source, action, meta.get("if_seq_no"), meta.get("if_primary_term"))
                    result = {"_index": meta["_index"], "_id": meta["_id"], **result, "status": status}
                items.append({action: result})
            self._refresh_if_asked(request, any(next(iter(i.values()))["status"] < 300 for i in items))
            return self._reply({"took": 1, "errors": any(next(iter(i.values()))["status"] >= 300 for i in items), "items": items})

        async def delete_by_query(request: Request) -> Response:
            # The documented contract: POST /<index>/_delete_by_query {"query": ...} -> {"deleted": n, ...}
            if (failed := self._check(request)) is not None:
                return failed
            body = orjson.loads(await request.body() or b"{}")
            hits = self._hits(request.path_params["index"], body.get("query", {"match_all": {}}))
            for hit in hits:
                del self.indices[hit["_index"]][hit["_id"]]
                del self.searchable[hit["_index"]][hit["_id"]]
            return self._reply({"took": 1, "timed_out": False, "total": len(hits), "deleted": len(hits), "failures": []})

        async def mget(request: Request) -> Response:
            # The documented contract: POST /_mget {"docs": [{"_index", "_id"}]} -> {"docs": [...]}, one per
            # asked document in order, each as GET answers it (realtime: what is stored, refreshed or not).
            if (failed := self._check(request)) is not None:
                return failed
            body = orjson.loads(await request.body() or b"{}")
            default = request.path_params.get("index")
            answers = []
            for asked in body.get("docs", []):
                index, doc_id = asked.get("_index", default), asked["_id"]
                doc = self.indices.get(index, {}).get(doc_id)
                answers.append({"_index": index, "_id": doc_id, "found": False} if doc is None
                               else {"_index": index, "_id": doc_id, "_version": 1, "found": True, **doc})
            return self._reply({"docs": answers})

        async def refresh(request: Request) -> Response:
            if (failed := self._check(request)) is not None:
                return failed
            self.refresh()
            return self._reply({"_shards": {"total": 1, "successful": 1, "failed": 0}})

        return Starlette(routes=[
            Route("/_bulk", bulk, methods=["POST", "PUT"]),
            Route("/_mget", mget, methods=["POST", "GET"]),
            Route("/_refresh", refresh, methods=["POST", "GET"]),
            Route("/{index}/_refresh", refresh, methods=["POST", "GET"]),
            Route("/{index}/_delete_by_query", delete_by_query, methods=["POST"]),
            Route("/{index}/_search", search, methods=["POST", "GET"]),
            Route("/{index}/_count", count, methods=["POST", "GET"]),
            Route("/{index}/_doc/{id}", index_doc, methods=["PUT", "POST"]),
            Route("/{index}/_doc/{id}", get_doc, methods=["GET"]),
            Route("/{index}/_doc/{id}", delete_doc, methods=["DELETE"]),
            Route("/_index_template/{name}", put_template, methods=["PUT"]),
        ])


def _field(source: dict, path: str):
    """A dotted field of a document; a dynamic mapping's `.keyword` subfield reads the string itself."""
    value: Any = source
    for part in path.removesuffix(".keyword").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _aggregate(spec: dict, hits: list[dict]) -> dict:
    """The `terms`, `min` and `max` aggregations as documented (buckets by doc_count, then key)."""
    if "terms" in spec:
        field, size = spec["terms"]["field"], spec["terms"].get("size", 10)
        groups: dict[Any, list[dict]] = {}
        for hit in hits:
            value = _field(hit["_source"], field)
            if value is not None:
                groups.setdefault(value, []).append(hit)
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:size]
        buckets = [{"key": key, "doc_count": len(group),
                    **{name: _aggregate(sub, group) for name, sub in (spec.get("aggs") or {}).items()}} for key, group in ordered]
        return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": buckets}
    for kind, pick in (("min", min), ("max", max)):
        if kind in spec:
            values = [v for h in hits if (v := _field(h["_source"], spec[kind]["field"])) is not None]
            return {"value": pick(values) if values else None}
    raise ValueError(f"fake Elasticsearch does not implement the aggregation {spec}")


def _matches(source: dict, doc_id: str, query: dict) -> bool:
    (kind, spec), = query.items()
    if kind == "match_all":
        return True
    if kind == "exists":
        return _field(source, spec["field"]) is not None
    if kind == "ids":
        return doc_id in spec["values"]
    if kind == "term":
        (field, value), = spec.items()
        value = value["value"] if isinstance(value, dict) else value
        return source.get(field) == value
    if kind == "range":
        (field, bounds), = spec.items()
        v = source.get(field)
        ops = {"gte": lambda a, b: a >= b, "gt": lambda a, b: a > b, "lte": lambda a, b: a <= b, "lt": lambda a, b: a < b}
        return v is not None and all(ops[op](v, bound) for op, bound in bounds.items())
    if kind == "bool":
        return all(_matches(source, doc_id, q) for q in spec.get("filter", []) + spec.get("must", []))
    raise ValueError(f"fake Elasticsearch does not implement {kind!r} queries")
