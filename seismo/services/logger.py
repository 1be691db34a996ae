"""`seismo serve logger`: stores every logged event as one record per prediction.

`POST /` takes the CloudEvents the broker delivers (request, response, detector replies, feedback;
KServe and Seldon types) and folds each into its prediction's record. The answer is 200 only once the
record is committed, so the broker retries anything not stored. Reads: `GET /v1/records/{id}` and
`GET /v1/records?model=&since=&until=&limit=`.
"""

from __future__ import annotations

import contextlib
import logging
import time

import orjson
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic_settings import SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.batching import ThreadBatcher
from seismo.events.cloudevents import CloudEvent, CloudEventError, from_http
from seismo.events.types import RECORD_EXTENSIONS, EventKind, kind_of, model_of, prediction_id_of
from seismo.services.common import EXCEPTION_HANDLERS, BodyTooLarge, JSONResponse, error, health_routes, read_body
from seismo.store import RecordStore, RecordUpdate, record_to_json
from seismo.store.settings import StoreSettings

log = logging.getLogger(__name__)
MAX_QUERY_LIMIT = 1000


class LoggerSettings(StoreSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_LOGGER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8091
    """Port for events in and record reads."""
    max_event_bytes: int = 10 * 1024 * 1024
    """Largest event body accepted; bigger ones get 413."""
    max_batch: int = 256
    """Events folded into the store in one transaction at most."""


def _event_time(event: CloudEvent, received: float) -> float:
    if event.time:
        try:
            return datetime.fromisoformat(event.time.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return received


def update_from_event(event: CloudEvent, received: float) -> RecordUpdate:
    """What an accepted event contributes to its record. ValueError if it is not a type we store."""
    kind = kind_of(event.type)
    if kind is None:
        raise ValueError(f"event type {event.type!r} is not one the logger stores")
    status = event.extensions.get("statuscode")
    return RecordUpdate(
        prediction_id=prediction_id_of(event),
        kind=kind,
        event_type=event.type,
        model=model_of(event),
        time=_event_time(event, received),
        body=event.data,
        content_type=event.datacontenttype,
        status=int(status) if status and status.isdigit() else None,
        model_version=event.extensions.get("modelversion"),
        extensions={k: v for k, v in event.extensions.items() if k in RECORD_EXTENSIONS},
    )


def drift_window_of(update: RecordUpdate) -> tuple[str, int, dict]:
    """(model, window number, result) of a drift event, or ValueError naming what is missing."""
    try:
        result = orjson.loads(update.body)
        window = int(result["window"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ValueError("a drift event's data must be a JSON object with the tested 'window' number") from None
    return str(result.get("model") or update.model), window, result


def _parse_time(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"'{name}' must be epoch seconds or an ISO-8601 time, got {value!r}") from None


def create_app(settings: LoggerSettings, registry: CollectorRegistry, store: RecordStore | None = None) -> Starlette:
    received = Counter("seismo_logger_events_received", "Events received", ["model", "type"], registry=registry)
    stored = Counter("seismo_logger_events_stored", "Events folded into a record", ["model", "type"], registry=registry)
    duplicates = Counter("seismo_logger_events_duplicate", "Redelivered events that changed nothing", ["model", "type"], registry=registry)
    rejected = Counter("seismo_logger_events_rejected", "Events refused, by reason", ["reason"], registry=registry)
    store_seconds = Histogram(
        "seismo_logger_store_seconds", "Time to commit one batch of events to the store",
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
    )
    state: dict[str, object] = {"ready": False}

    def write_batch(updates: list[RecordUpdate]) -> list[bool]:
        started = time.perf_counter()
        results = state["store"].apply(updates)  # type: ignore[union-attr]
        store_seconds.observe(time.perf_counter() - started)
        return results

    writer: ThreadBatcher[RecordUpdate, bool] = ThreadBatcher(write_batch, settings.max_batch, name="store-writer")

    async def ingest(request: Request) -> Response:
        try:
            body = await read_body(request, settings.max_event_bytes)
            event = from_http(request.headers, body)
            update = update_from_event(event, time.time())
            drift_window = drift_window_of(update) if update.kind is EventKind.DRIFT else None
        except BodyTooLarge as exc:
            rejected.labels("too_large").inc()
            return error(413, str(exc))
        except (CloudEventError, ValueError) as exc:
            rejected.labels("invalid").inc()
            log.warning("rejected event: %s", exc)
            return error(400, str(exc))
        received.labels(update.model, event.type).inc()
        try:
            if drift_window is not None:
                await writer.call(state["store"].add_drift_window, *drift_window)  # type: ignore[union-attr]
            changed = await writer.submit(update)
        except Exception as exc:  # the store is down: 503 makes the broker retry later
            rejected.labels("store_error").inc()
            log.error("store write failed for %s: %s", update.prediction_id, exc)
            return error(503, f"store unavailable: {type(exc).__name__}")
        (stored if changed else duplicates).labels(update.model, event.type).inc()
        return JSONResponse({"prediction_id": update.prediction_id, "stored": changed})

    async def drift_log(request: Request) -> Response:
        limit_text = request.query_params.get("limit", "1000")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 10000:
            return error(400, "'limit' must be an integer between 1 and 10000")
        windows = await writer.call(state["store"].drift_windows, request.query_params.get("model"), int(limit_text))  # type: ignore[union-attr]
        return JSONResponse({"windows": windows})

    async def get_record(request: Request) -> Response:
        prediction_id = request.path_params["prediction_id"]
        record = await writer.call(state["store"].get, prediction_id)  # type: ignore[union-attr]
        if record is None:
            return error(404, f"no record for prediction id {prediction_id!r}")
        return JSONResponse(record_to_json(record))

    async def list_records(request: Request) -> Response:
        params = request.query_params
        try:
            since = _parse_time(params.get("since"), "since")
            until = _parse_time(params.get("until"), "until")
        except ValueError as exc:
            return error(400, str(exc))
        # Times are kept to the microsecond; half a microsecond of slack makes a `since` copied from a
        # record's ISO time include that record whatever the float rounding.
        since = None if since is None else since - 5e-7
        until = None if until is None else until - 5e-7
        limit_text = params.get("limit", "100")
        if not limit_text.isdigit():
            return error(400, f"'limit' must be an integer, got {limit_text!r}")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            return error(400, f"'limit' must be between 1 and {MAX_QUERY_LIMIT}")
        records = await writer.call(state["store"].query, params.get("model"), since, until, limit)  # type: ignore[union-attr]
        return JSONResponse({"records": [record_to_json(r) for r in records]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state["store"] = store or settings.open_store()
        writer.start()
        state["ready"] = True
        log.info("logger ready on port %d, storing to %s", settings.port, settings.describe_store())
        try:
            yield
        finally:
            state["ready"] = False
            await writer.close(state["store"].close if store is None else None)  # type: ignore[union-attr]

    routes = [
        Route("/", ingest, methods=["POST"]),
        Route("/v1/records", list_records, methods=["GET"]),
        Route("/v1/records/{prediction_id}", get_record, methods=["GET"]),
        Route("/v1/drift", drift_log, methods=["GET"]),
        *health_routes(registry, lambda: bool(state["ready"])),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
