"""The model server's data plane: what REST (seismo.services.model.http) and gRPC (seismo.serving.grpc_v2)
both call. Every prediction gets a prediction id (incoming `ce-id`, `X-Request-Id`, the V2 body `id`,
else a new UUID), returned as `X-Prediction-Id` (and V2 `id`), and shared by the request and response
events sent to the sink. Error responses are logged too, with their status in `ce-statuscode`.

No transport here: a request is its headers and a callable that reads its body; an answer is an `Outcome`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from seismo.performance.config import COHORT_NAME
from seismo.protocol.binary import CONTENT_TYPE as BINARY_CONTENT_TYPE
from seismo.protocol.binary import HEADER_LENGTH, binary_output_names, encode_binary_body, header_length_of, load_document
from seismo.protocol.cloudevents import CloudEvent
from seismo.protocol.limits import BodyTooLarge, check_prediction_id, loads
from seismo.protocol.payloads import PayloadError, decode_v1_instances, decode_v2_request, encode_v2_tensor, v2_datatype
from seismo.protocol.types import FORWARDED_HEADERS, PARENT_HEADER, SELDON_FEEDBACK
from seismo.services.auth import AuthSettings, TokenSet, is_authorized, sender_token
from seismo.services.base import NotStarted
from seismo.serving.event_sender import EventSender, EventSenderConfig
from seismo.serving.prediction_events import Answered, EventSource, kserve_events, seldon_events
from seismo.serving.predictor import Predictor
from seismo.serving.runtimes import load_runtime
from seismo.serving.seldon import decode_request as decode_seldon_request
from seismo.serving.seldon import encode_response as encode_seldon_response
from seismo.serving.seldon import output_names as seldon_output_names
from seismo.times import now_rfc3339
from seismo.tracing import Tracing, fail, trace_headers
from seismo.transport.poster import EventPoster

if TYPE_CHECKING:  # the settings are the service's; the data plane reads them
    from seismo.protocol.feedback import Feedback
    from seismo.services.model.settings import ModelSettings

log = logging.getLogger(__name__)
TRAFFIC_HEADER = "x-seismo-traffic"
"""`X-Seismo-Traffic: explainer` marks the explainer's calls, which are answered but never logged."""
_SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)


class TooManyInstances(ValueError):
    pass


EVENT_OVERHEAD_BYTES = 16 * 1024
"""What an event's attributes and a batch's framing add to its data, at most (ids and headers are bounded)."""


def encoded_event_bytes(body_bytes: int) -> int:
    """The size of a request event carrying `body_bytes` of data in a batch of the broker: base64 plus framing."""
    return (body_bytes + 2) // 3 * 4 + EVENT_OVERHEAD_BYTES


def check_event_size(body_bytes: int, limit: int) -> None:
    """TooManyInstances (a 413) when a request of `body_bytes` could not be carried to the store."""
    if encoded_event_bytes(body_bytes) > limit:
        raise TooManyInstances(
            f"request body of {body_bytes} bytes would make a request event of {encoded_event_bytes(body_bytes)} bytes on the "
            f"way to the store (data travels in base64); the event path carries at most {limit} bytes "
            f"(SEISMO_MODEL_MAX_EVENT_BYTES): send fewer instances per request")


class _ServingMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter("seismo_model_requests", "Inference requests", ["model", "protocol", "code"], registry=registry)
        self.latency = Histogram(
            "seismo_model_request_seconds", "Inference request latency", ["model", "protocol"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=registry,
        )
        self.request_bytes = Histogram("seismo_model_request_bytes", "Request body size", ["model", "protocol"], buckets=_SIZE_BUCKETS, registry=registry)
        self.unlogged = Counter("seismo_model_requests_unlogged", "Requests answered but deliberately not logged, by reason",
                                ["model", "reason"], registry=registry)
        self.response_bytes = Histogram("seismo_model_response_bytes", "Response body size", ["model", "protocol"], buckets=_SIZE_BUCKETS, registry=registry)


def check_forwarded_headers(headers: Mapping[str, str]) -> None:
    """X-Seismo-Cohort / X-Seismo-Holdout become event extensions and metric labels: cohort names only.
    X-Seismo-Parent-Id names the upstream prediction: a prediction id."""
    for header in FORWARDED_HEADERS:
        value = headers.get(header)
        if value is not None and header == PARENT_HEADER:
            check_prediction_id(value, f"header {header}")
        elif value is not None and not COHORT_NAME.match(value):
            raise PayloadError(f"header {header} must be 1 to 64 letters, digits, '_', '.' or '-', got {value[:40]!r}")


def prediction_id_for(headers: Mapping[str, str], body_id: str | None = None) -> str:
    """DESIGN.md's order: an incoming ce-id, X-Request-Id, the V2 body id, else a new UUID.

    PayloadError (a 400, before the model runs) for an id that cannot be echoed as a header.
    """
    for where, value in (("header ce-id", headers.get("ce-id")), ("header X-Request-Id", headers.get("x-request-id")),
                         ("V2 body 'id'", body_id)):
        if value:
            return check_prediction_id(value, where)
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Outcome:
    """One answered inference request: what goes back to the client and into the response event."""

    status: int
    body: bytes
    prediction_id: str
    content_type: str = "application/json"
    header_length: int | None = None  # binary tensor extension: the JSON header's length
    event_body: bytes | None = None  # the response event's data when it differs from the client's (the embedding added)
    embedding_version: str | None = None  # set when the response event carries the embedding


def _json(status: int, content: Any, prediction_id: str) -> Outcome:
    return Outcome(status, orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), prediction_id)


class DataPlane:
    """The model server without a transport: ids, limits, every protocol, metrics and event logging.

    REST routes and gRPC calls hand it the request's headers and body and get an `Outcome` back; the
    predictor (batching) and the event sender (queue and senders) start with `start()`."""

    def __init__(self, settings: ModelSettings, registry: CollectorRegistry, auth: AuthSettings | None = None,
                 tracing: Tracing | None = None):
        if not settings.path.exists():
            raise ValueError(f"model artifact {settings.path} not found: train the example with `make model` or set SEISMO_MODEL_PATH")
        self.settings = settings
        self.registry = registry
        self.metrics = _ServingMetrics(registry)
        self.auth = TokenSet(auth or AuthSettings())
        self.source = settings.event_source or f"http://{settings.host}:{settings.port}/"
        self.tracing = tracing or Tracing("model")  # handed in by create_app; made here when a test builds the core alone
        self._predictor: Predictor | None = None
        self._sender: EventSender | None = None
        self._logs_requests = bool(settings.sink_url) and settings.log_mode in ("all", "request")
        self.stats = {"success": [0, 0], "fail": [0, 0]}  # requests and their nanoseconds, for Triton's statistics
        self.last_inference_ms = 0
        self._client: EventPoster | None = None

    @property
    def ready(self) -> bool:
        return self._predictor is not None

    def json_body_limit(self) -> int:
        """The largest request body this server takes: its body limit, and with logging on what the event path carries."""
        limit = self.settings.max_body_bytes
        if self._logs_requests:
            limit = min(limit, (self.settings.max_event_bytes - EVENT_OVERHEAD_BYTES) * 3 // 4)
        return limit

    @property
    def predictor(self) -> Predictor:
        if self._predictor is None:
            raise NotStarted("the model server is not started")
        return self._predictor

    async def start(self) -> None:
        settings = self.settings
        runtime = load_runtime(settings.path, settings.framework, settings.name, settings.embedding_layer,
                               settings.embedding_version, settings.embeddings, settings.engine)
        if settings.embedding_previous_path is not None and runtime.embedding is not None:
            self._check_embedding_version(settings.embedding_previous_path)
        self.event_source = EventSource(self.source, runtime.info.name, runtime.info.version, settings.namespace, settings.endpoint,
                                        settings.log_mode in ("all", "request"), settings.log_mode in ("all", "response"))
        self._predictor = Predictor(runtime, self.registry, settings.max_batch_size, settings.max_batch_wait_ms / 1000)
        self._predictor.start()
        if settings.sink_url:
            self._client = EventPoster(max_connections=settings.log_concurrency, bearer=sender_token(self.auth.settings, "model"))
            await self._client.start()
            config = EventSenderConfig(
                sink_url=settings.sink_url,
                capacity=settings.log_queue_capacity,
                overflow=settings.log_overflow,
                on_client_error=settings.log_on_client_error,
                concurrency=settings.log_concurrency,
                batch_size=settings.log_batch_size,
                linger=settings.log_linger_seconds,
            )
            self._sender = EventSender(config, self._client, self.registry)
            self._sender.start()
        log.info(
            "serving %r (%s on %s) on port %d; events %s", runtime.info.name, runtime.info.platform,
            getattr(runtime, "engine", "scikit-learn"), settings.port,
            f"to {settings.sink_url} ({settings.log_mode})" if settings.sink_url else "not logged (no sink)",
        )

    def _check_embedding_version(self, previous: Path) -> None:
        """Deploy-time version check: refuse to serve embeddings whose claimed version bump is not honest."""
        from seismo.embeddings.check import check_models

        result = check_models(previous, self.settings.path)
        if not result.honest:
            raise ValueError(f"embedding version check against {previous} failed: {result.message}")
        log.info("embedding version check against %s: %s", previous, result.message)

    async def stop(self) -> None:
        if self._sender is not None:
            await self._sender.stop()
        if self._client is not None:
            await self._client.close()
        if self._predictor is not None:
            await self._predictor.stop()

    def stopped(self) -> list[str]:
        dead = self._predictor.stopped() if self._predictor is not None else []
        return dead + (self._sender.stopped() if self._sender is not None else [])

    def serves(self, name: str, version: str | None = None) -> bool:
        """This server's model, and (when one is named) its version: another version is a 404, not an answer from this one."""
        info = self.predictor.info
        return name == info.name and (not version or version == (info.version or ""))

    def not_served(self, name: str, protocol: str) -> Outcome:
        self.metrics.requests.labels("unknown", protocol, "404").inc()
        info = self.predictor.info
        return _json(404, {"error": f"model {name!r} is not served here; available: [{info.name!r}]"
                                    + (f" version {info.version!r}" if info.version else "")}, str(uuid.uuid4()))

    async def infer(self, protocol: str, headers: Mapping[str, str], read: Callable[[], Awaitable[bytes]],
                    metric_protocol: str | None = None) -> Outcome:
        """Shared path of every protocol: limits, ids, error mapping, metrics, the `predict` span, logging.

        `read` returns the body or raises BodyTooLarge; it is called before the headers are judged, so a
        client still sending when the answer goes out sees the 400, not a reset. `metric_protocol` labels
        the metrics when the transport differs from the body's protocol (gRPC carries V2 bodies)."""
        name = self.predictor.info.name
        label = metric_protocol or protocol
        with self.tracing.span(f"predict {name}", headers, "SERVER", {"seismo.model": name, "seismo.protocol": label}) as span:
            outcome, body = await self._answer(protocol, headers, read, label)
            if span is not None:
                span.set_attribute("seismo.prediction_id", outcome.prediction_id)
                span.set_attribute("http.response.status_code", outcome.status)
                if outcome.status >= 400:
                    fail(span, f"HTTP {outcome.status}")
            # The events carry this span as their parent; with tracing off, the client's own context if valid.
            trace = self.tracing.context_of(span) if span is not None else trace_headers(headers)
        if self._sender is not None:
            # Built and queued in the loop's next turn: the answer is on the wire by then (writing it
            # never waits unless the client stops reading), so the client does not wait for its events.
            asyncio.get_running_loop().call_soon(self._log_events, outcome, protocol, headers, body, trace)
        return outcome

    async def _answer(self, protocol: str, headers: Mapping[str, str], read: Callable[[], Awaitable[bytes]],
                      label: str) -> tuple[Outcome, bytes]:
        started = time.perf_counter()
        name = self.predictor.info.name
        pid = str(uuid.uuid4())  # until the request names a valid one: refusals get a safe id too
        body = b""
        try:
            body = await read()
            if self._logs_requests and encoded_event_bytes(len(body)) > self.settings.max_event_bytes:
                # What is answered is stored: refuse up front what the event path cannot carry. The refusal's
                # own events carry no body (the broker would refuse them too, and count them as dropped).
                size, body = len(body), b""
                check_event_size(size, self.settings.max_event_bytes)
            check_forwarded_headers(headers)
            pid = prediction_id_for(headers)  # provisional: a V2 body id may still name it
            if protocol == "v1":
                outcome = await self._v1(loads(body), headers, pid)
            elif protocol == "seldon":
                outcome = await self._seldon(loads(body), headers)
            else:
                outcome = await self._v2(load_document(body, header_length_of(headers)), headers, pid)
        except (BodyTooLarge, TooManyInstances) as exc:
            outcome = _json(413, {"error": str(exc)}, pid)
        except PayloadError as exc:
            outcome = _json(400, {"error": str(exc)}, pid)
        except Exception:
            log.exception("inference failed for %s", pid)
            outcome = _json(500, {"error": "inference failed; see the model server's log"}, pid)
        self.metrics.requests.labels(name, label, str(outcome.status)).inc()
        elapsed = time.perf_counter() - started
        self.metrics.latency.labels(name, label).observe(elapsed)
        kind = "success" if outcome.status == 200 else "fail"
        self.stats[kind][0] += 1
        self.stats[kind][1] += int(elapsed * 1e9)
        self.last_inference_ms = int(time.time() * 1000)
        self.metrics.request_bytes.labels(name, label).observe(len(body))
        self.metrics.response_bytes.labels(name, label).observe(len(outcome.body))
        return outcome, body

    def _check_count(self, rows: int) -> None:
        if rows > self.settings.max_instances:
            raise TooManyInstances(f"request has {rows} instances; at most {self.settings.max_instances} per request "
                                   "(SEISMO_MODEL_MAX_INSTANCES)")

    async def _v1(self, doc: Any, headers: Mapping[str, str], pid: str) -> Outcome:
        if isinstance(doc, dict) and isinstance(doc.get("instances"), list):
            self._check_count(len(doc["instances"]))
        array = self.predictor.check(decode_v1_instances(doc), "instances")
        predictions, embedding = await self.predictor.predict(array)
        content = {"predictions": predictions}
        outcome = _json(200, content, pid)
        spec = self.predictor.embedding
        if embedding is None or spec is None:
            return outcome
        # V1 has no named outputs: the response event carries the embedding under its name beside `predictions`.
        event_body = orjson.dumps({**content, spec.output: embedding}, option=orjson.OPT_SERIALIZE_NUMPY)
        return dataclasses.replace(outcome, event_body=event_body, embedding_version=spec.version)

    async def _seldon(self, doc: Any, headers: Mapping[str, str]) -> Outcome:
        """Seldon's protocol: the puid (meta.puid, else the Seldon-Puid header, else the usual order) names the prediction."""
        request = decode_seldon_request(doc, self.predictor.input_spec.shape)
        if request.puid:
            pid = check_prediction_id(request.puid, "Seldon meta.puid")
        elif headers.get("seldon-puid"):
            pid = check_prediction_id(headers["seldon-puid"], "header Seldon-Puid")
        else:
            pid = prediction_id_for(headers)
        self._check_count(request.array.shape[0] if request.array.ndim else 1)
        array = self.predictor.check(request.array, request.form)
        probabilities, _ = await self.predictor.predict(array)
        info = self.predictor.info
        names = seldon_output_names(self.predictor.classes, probabilities.shape[-1] if probabilities.ndim > 1 else 1)
        return _json(200, encode_seldon_response(np.asarray(probabilities), request, pid, names, info.name, info.version), pid)

    async def _v2(self, doc: Any, headers: Mapping[str, str], pid: str) -> Outcome:
        body_id, tensors, _ = decode_v2_request(doc)
        if body_id:
            pid = prediction_id_for(headers, body_id)
        tensor = self.predictor.pick_v2_input(tensors)
        if tensor.shape:
            self._check_count(tensor.shape[0])
        array = self.predictor.check(tensor.data, tensor.name)
        requested = doc.get("outputs")
        names = [str(o.get("name")) for o in requested if isinstance(o, dict)] if isinstance(requested, list) else None
        probabilities, embedding = await self.predictor.predict(array)
        outputs = self.predictor.named_outputs(probabilities, names, embedding)
        info = self.predictor.info
        binary = binary_output_names(doc, list(outputs))
        encoded = [({"name": n, "datatype": v2_datatype(a), "shape": list(a.shape)} if n in binary else encode_v2_tensor(n, a), a)
                   for n, a in outputs.items()]
        output_docs = [e for e, _ in encoded]
        payload = {"model_name": info.name, "model_version": info.version, "id": pid, "outputs": output_docs}
        if not binary:
            outcome = _json(200, payload, pid)
        else:
            as_binary = [(e, a) for e, a in encoded if "data" not in e]
            body, header_length = encode_binary_body(payload, as_binary)
            outcome = Outcome(200, body, pid, BINARY_CONTENT_TYPE, header_length)
        spec = self.predictor.embedding
        if embedding is None or spec is None:
            return outcome
        if spec.output in outputs:  # the client asked for it: the event carries the client's body as it is
            return dataclasses.replace(outcome, embedding_version=spec.version)
        # The response event carries one more output than the client asked for: the embedding, as JSON
        # (binary tensors keep their bytes after the header, in the same order).
        event_payload = {**payload, "outputs": [*output_docs, encode_v2_tensor(spec.output, embedding)]}
        head = orjson.dumps(event_payload, option=orjson.OPT_SERIALIZE_NUMPY)
        tail = outcome.body[outcome.header_length:] if outcome.header_length is not None else b""
        return dataclasses.replace(outcome, event_body=head + tail, embedding_version=spec.version)

    def _log_events(self, outcome: Outcome, protocol: str, headers: Mapping[str, str], body: bytes, trace: Mapping[str, str]) -> None:
        if self._sender is None:
            return
        info = self.predictor.info
        if headers.get(TRAFFIC_HEADER) == "explainer" and is_authorized(headers, self.auth):
            # The explainer's perturbed instances are not production traffic: they must not reach the
            # logger, drift or outlier detection. With auth on, only a caller holding a token may ask this.
            self.metrics.unlogged.labels(info.name, "explainer").inc()
            return
        embedding = self.predictor.embedding
        # No Content-Type (tritonclient sends none): the binary extension's header says it is binary.
        content_type = headers.get("content-type") or (BINARY_CONTENT_TYPE if HEADER_LENGTH in headers else "application/json")
        answered = Answered(outcome.prediction_id, protocol, outcome.status, body, content_type,
                            outcome.event_body or outcome.body, outcome.content_type, outcome.embedding_version,
                            embedding.output if embedding is not None else None)
        build = seldon_events if protocol == "seldon" else kserve_events
        try:
            events = build(self.event_source, answered, headers, trace)
        except Exception:  # runs as a loop callback after the answer: nothing may escape uncounted
            expected = int(self.event_source.log_requests) + int(self.event_source.log_responses)
            self._sender.dropped.labels(info.name, "unsendable").inc(expected)
            log.exception("the events of prediction %s could not be built; counted as dropped (unsendable)", outcome.prediction_id)
            return
        for event in events:
            self._sender.log(event)

    def relay_feedback(self, feedback: Feedback, body: bytes) -> str:
        """Queue Seldon feedback (parsed, and as it came) as an event for the sink; its prediction id.
        ValueError (a 400) when it names no prediction, LookupError (a 503) when this server logs nothing."""
        if self._sender is None:
            raise LookupError("feedback travels as an event and this model server logs none (set SEISMO_MODEL_SINK_URL)")
        if feedback.prediction_id is None:
            raise ValueError("feedback must name its prediction: the response's meta.puid (or 'prediction_id')")
        info = self.predictor.info
        extensions = {"inferenceservicename": info.name, "namespace": self.settings.namespace, "endpoint": self.settings.endpoint,
                      "partitionkey": info.name, "requestid": feedback.prediction_id, **({"modelversion": info.version} if info.version else {})}
        event = CloudEvent(str(uuid.uuid4()), self.source, SELDON_FEEDBACK, body, "application/json", now_rfc3339(), extensions=extensions)
        self._sender.log(event)
        return feedback.prediction_id

    def model_config(self) -> dict:
        """Triton's model configuration (`GET /v2/models/{m}/config`), what tritonclient's get_model_config reads."""
        info = self.predictor.info

        def tensor(spec) -> dict:
            # Triton names V2's BYTES `TYPE_STRING`; the first dimension is the batch (max_batch_size > 0).
            datatype = "STRING" if spec.datatype == "BYTES" else spec.datatype
            return {"name": spec.name, "data_type": f"TYPE_{datatype}", "dims": list(spec.shape[1:])}

        # Triton's versions are numbers: a version that is not one is reported as the latest.
        version = info.version or ""
        policy = {"specific": {"versions": [int(version)]}} if version.isdigit() else {"latest": {"num_versions": 1}}
        return {"name": info.name, "platform": info.platform, "backend": info.platform, "max_batch_size": self.settings.max_batch_size,
                "input": [tensor(s) for s in info.inputs], "output": [tensor(s) for s in info.outputs], "version_policy": policy}

    def model_statistics(self) -> dict:
        """Triton's statistics extension (`GET /v2/models/{m}/stats`)."""
        info = self.predictor.info
        success, fail = self.stats["success"], self.stats["fail"]
        return {"model_stats": [{
            "name": info.name, "version": info.version or "", "last_inference": self.last_inference_ms,
            "inference_count": self.predictor.rows, "execution_count": self.predictor.executions,
            "inference_stats": {"success": {"count": success[0], "ns": success[1]}, "fail": {"count": fail[0], "ns": fail[1]}},
        }]}

    def model_metadata(self) -> dict:
        """V2 model metadata (OIP `GET /v2/models/{name}`)."""
        info = self.predictor.info
        spec = lambda s: {"name": s.name, "datatype": s.datatype, "shape": list(s.shape)}  # noqa: E731
        outputs = [spec(s) for s in info.outputs]
        if self.predictor.classes:
            outputs.append({"name": "class", "datatype": "INT64", "shape": [-1]})
        embedding = self.predictor.embedding
        if embedding is not None:  # returned when asked for by name; its version travels as a parameter
            outputs.append({"name": embedding.output, "datatype": "FP32", "shape": [-1, -1],
                            "parameters": {"embedding_version": embedding.version}})
        return {
            "name": info.name,
            "versions": [info.version] if info.version else [],
            "platform": info.platform,
            "inputs": [spec(s) for s in info.inputs],
            "outputs": outputs,
        }
