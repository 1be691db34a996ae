"""The logger over HTTP: `POST /` (events), `GET /v1/records...`, the drift log, embeddings, dead letters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.protocol.cloudevents import CloudEventError, batch_from_http, from_http, is_batch
from seismo.services import senders
from seismo.services.api.logger import OPERATIONS, ClustersQuery, DeadLettersQuery, DriftLogQuery, ModelQuery, RecordsQuery
from seismo.services.app import build_app, query
from seismo.services.common import BodyTooLarge, JSONResponse, error, read_body
from seismo.services.logger.core import RecordLogger
from seismo.services.logger.settings import LoggerSettings
from seismo.services.queries import parse_since
from seismo.store import RecordStore, record_to_json
from seismo.store.base import StoreUnavailable, lineage_link
from seismo.tracing import Tracing


class LoggerEndpoints:
    def __init__(self, core: RecordLogger):
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("/", self.ingest, methods=["POST"]),
            Route("/v1/records", self.list_records, methods=["GET"]),
            Route("/v1/records/{prediction_id}", self.get_record, methods=["GET"]),
            Route("/v1/records/{prediction_id}/lineage", self.get_lineage, methods=["GET"]),
            Route("/v1/drift", self.drift_log, methods=["GET"]),
            Route("/v1/embeddings/versions", self.embedding_versions, methods=["GET"]),
            Route("/v1/embeddings/clusters", self.embedding_clusters, methods=["GET"]),
            Route("/v1/dead-letters", self.dead_letter, methods=["POST"]),
            Route("/v1/dead-letters", self.list_dead_letters, methods=["GET"]),
        ]

    async def ingest(self, request: Request) -> Response:
        if is_batch(request.headers):  # the broker delivers batches to triggers that declare `batch`
            try:
                items = batch_from_http(await read_body(request, self.core.settings.max_event_bytes), self.core.settings.max_batch_events)
            except BodyTooLarge as exc:
                self.core.count_rejected("too_large")
                return error(413, str(exc))
            except CloudEventError as exc:
                self.core.count_rejected("invalid")
                return error(400, str(exc))
            return JSONResponse({"results": await self.core.store_batch(items, senders.caller(request.scope))})
        try:
            body = await read_body(request, self.core.settings.max_event_bytes)
            event = self.core.parse(request.headers, body)
            if why := self.core.forbidden(senders.caller(request.scope), event):  # before its content is looked at
                return error(403, why)
            event, update, drift_window = self.core.accept_event(event)
        except BodyTooLarge as exc:
            self.core.count_rejected("too_large")
            return error(413, str(exc))
        except (CloudEventError, ValueError) as exc:
            return error(400, str(exc))
        try:
            changed = await self.core.store_event(event, update, drift_window, request.headers)
        except StoreUnavailable as exc:  # 503 makes the broker retry later
            return error(503, f"store unavailable: {exc}")
        return JSONResponse({"prediction_id": update.prediction_id, "stored": changed})

    @query(DriftLogQuery)
    async def drift_log(self, request: Request, q: DriftLogQuery) -> Response:
        return JSONResponse({"windows": await self.core.drift_windows(q.model, q.limit)})

    @query(ClustersQuery)
    async def embedding_clusters(self, request: Request, q: ClustersQuery) -> Response:
        if self.core.settings.embedding_reference_path is None:
            return error(404, "no embedding reference configured: set SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH to an EmbeddingDrift folder")
        return JSONResponse(await self.core.clusters(q.model, parse_since(q.since), q.limit))

    @query(ModelQuery)
    async def embedding_versions(self, request: Request, q: ModelQuery) -> Response:
        return JSONResponse({"versions": await self.core.embedding_versions(q.model or None)})

    async def get_record(self, request: Request) -> Response:
        prediction_id = request.path_params["prediction_id"]
        record = await self.core.record(prediction_id)
        if record is None:
            return error(404, f"no record for prediction id {prediction_id!r}")
        return JSONResponse(record_to_json(record))

    async def get_lineage(self, request: Request) -> Response:
        prediction_id = request.path_params["prediction_id"]
        chain = await self.core.lineage(prediction_id)
        if chain is None:
            return error(404, f"no record for prediction id {prediction_id!r}")
        return JSONResponse({"prediction_id": prediction_id, "chain": [lineage_link(r) for r in chain],
                             "complete": not chain[-1].extensions.get("parentid")})

    @query(RecordsQuery)
    async def list_records(self, request: Request, q: RecordsQuery) -> Response:
        since, until = parse_since(q.since, "since"), parse_since(q.until, "until")
        # Times are kept to the microsecond; half a microsecond of slack makes a `since` copied from a
        # record's ISO time include that record whatever the float rounding.
        since = None if since is None else since - 5e-7
        until = None if until is None else until - 5e-7
        records = await self.core.records(q.model, since, until, q.limit)
        # `truncated`: the byte budget stopped the page early (the next one starts at its last record's time).
        return JSONResponse({"records": [record_to_json(r) for r in records], "truncated": getattr(records, "truncated", False)})

    async def dead_letter(self, request: Request) -> Response:
        """The dead-letter sink of the Knative Triggers."""
        try:
            event = from_http(request.headers, await read_body(request, self.core.settings.max_event_bytes))
        except BodyTooLarge as exc:
            self.core.count_rejected("too_large")
            return error(413, str(exc))
        except CloudEventError as exc:
            self.core.count_rejected("invalid")
            return error(400, str(exc))
        identity = senders.caller(request.scope)
        if identity is not None and identity != senders.BROKER:  # only the broker reports dead letters
            self.core.count_rejected("forbidden_sender")
            return error(403, f"dead letters are accepted only from the broker; this one came from {identity!r}")
        try:
            kept = await self.core.dead_letter(event)
        except StoreUnavailable as exc:  # not kept: the broker's retry may find the store back
            return error(503, f"store unavailable: {exc}")
        return JSONResponse({"counted": kept, "kept": True}, status_code=202)

    @query(DeadLettersQuery)
    async def list_dead_letters(self, request: Request, q: DeadLettersQuery) -> Response:
        return JSONResponse({"dead_letters": [d.to_json() for d in await self.core.dead_letters(q.model, q.limit)]})


def create_app(settings: LoggerSettings, registry: CollectorRegistry, store: RecordStore | None = None) -> Starlette:
    """The `RecordLogger` (on `app.state.logger`) behind its routes; `store` replaces the settings' one (tests)."""
    core = RecordLogger(settings, registry, store, Tracing("logger"))
    return build_app(core, LoggerEndpoints(core).routes(), registry, OPERATIONS, event_paths=("/", "/v1/dead-letters"))
