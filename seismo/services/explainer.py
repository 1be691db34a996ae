"""`seismo serve explainer`: black-box explanations of a deployed model's predictions.

`POST /v1/models/{m}:explain` takes the same V1 (`instances`) or V2 (`inputs`) body as a prediction,
with one instance, and optional `parameters` (`method`: anchors (default) or kernel_shap; `threshold`,
`max_model_calls`, `max_seconds`, `seed`). The explainer never loads the model: it calls the model
server over HTTP with batches of perturbed instances, through one pooled client. Each explanation runs
on a worker thread (the search is sequential CPU work); its model calls go back to the event loop's
client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.events.payloads import PayloadError, decode_v1_instances, decode_v2_request
from seismo.explain.anchors import Budget
from seismo.explain.config import ExplainedModel, load_models
from seismo.explain.methods import METHODS, Explanation, explain_image_anchor, explain_kernel_shap, explain_tabular_anchor
from seismo.services.api.explainer import OPERATIONS
from seismo.services.auth import AuthSettings, TokenSet, auth_middleware
from seismo.services.common import EXCEPTION_HANDLERS, BodyTooLarge, JSONResponse, error, health_routes, parse_json, read_body
from seismo.services.openapi import openapi_route
from seismo.topology import CONFIG_DIR, SERVICE_PORTS
from seismo.tracing import Tracing, fail

log = logging.getLogger(__name__)
EXAMPLE_CONFIG = CONFIG_DIR / "explainer.yaml"


class ExplainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_EXPLAINER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["explainer"]
    """Port for explain requests."""
    config_file: Path = EXAMPLE_CONFIG
    """YAML naming each explained model: kind (tabular or image), model server URL, reference data."""
    max_model_calls: int = 20000
    """Most instances one explanation may send to the model (a request may ask for fewer)."""
    max_seconds: float = 30.0
    """Longest one explanation may run (a request may ask for less); then the best anchor so far is returned."""
    threshold: float = 0.95
    """Default anchor precision target."""
    concurrency: int = 2
    """Explanations computed at once; more wait their turn."""
    max_queued: int = 8
    """Explanations waiting for a turn at most; beyond that a request gets 429 with Retry-After."""
    max_rows_per_request: int = 256
    """Most perturbed instances sent to the model server in one HTTP request."""
    model_timeout_seconds: float = 30.0
    """Timeout of one request to the model server."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest request body accepted; bigger ones get 413."""


class ModelServerError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ExplainRequestError(ValueError):
    pass


def instance_of(doc: Any, model: ExplainedModel, reference: np.ndarray) -> tuple[np.ndarray, dict]:
    """The one instance to explain and the request's parameters, or ExplainRequestError."""
    if not isinstance(doc, dict):
        raise ExplainRequestError("explain body must be a JSON object with 'instances' (V1) or 'inputs' (V2)")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ExplainRequestError("'parameters' must be an object")
    try:
        if "inputs" in doc:
            _, tensors, v2_parameters = decode_v2_request(doc)
            parameters = {**(v2_parameters if isinstance(v2_parameters, dict) else {}), **parameters}
            array = np.asarray(tensors[0].data, dtype=np.float32)
        else:
            array = decode_v1_instances(doc)
    except PayloadError as exc:
        raise ExplainRequestError(str(exc)) from None
    if len(array) != 1:
        raise ExplainRequestError(f"explain one instance at a time; got {len(array)}")
    instance = array[0]
    if instance.shape != reference.shape[1:]:
        raise ExplainRequestError(f"instance has shape {list(instance.shape)}; model {model.name!r} takes {list(reference.shape[1:])}")
    if not np.isfinite(instance).all():
        raise ExplainRequestError("instance contains NaN or infinity")
    return instance, parameters


def _number(parameters: dict, name: str, default: float, low: float, high: float, whole: bool = False) -> float:
    value = parameters.get(name, default)
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise ExplainRequestError(f"parameter '{name}' must be a {'whole ' if whole else ''}number from {low:g} to {high:g}, got {value!r}")
    return value


class ExplainerBusy(Exception):
    """Every explanation slot and queue place is taken (a 429)."""


class UnknownModel(LookupError):
    """No explainer is configured for the model (a 404)."""


class ExplainerService:
    """The explainer without HTTP: checks a request, runs one explanation on a worker thread under a
    call budget, and counts it. Its model calls go to the model server through one pooled client."""

    def __init__(self, settings: ExplainerSettings, registry: CollectorRegistry):
        self.settings = settings
        self.models = load_models(settings.config_file)
        self.explanations = Counter("seismo_explainer_explanations", "Explanations by method and outcome", ["model", "method", "outcome"],
                                    registry=registry)
        self.seconds = Histogram("seismo_explainer_seconds", "Time per explanation", ["model", "method"],
                                 buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120), registry=registry)
        self.calls = Histogram("seismo_explainer_model_calls", "Instances sent to the model per explanation", ["model", "method"],
                               buckets=(10, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000, 100000), registry=registry)
        fractions = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
        self.precision = Histogram("seismo_explainer_anchor_precision", "Precision of returned anchors", ["model"], buckets=fractions,
                                   registry=registry)
        self.coverage = Histogram("seismo_explainer_anchor_coverage", "Coverage of returned anchors", ["model"],
                                  buckets=(0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0), registry=registry)
        self.rejected = Counter("seismo_explainer_requests_rejected", "Explain requests refused, by reason", ["reason"], registry=registry)
        self.tracing = Tracing("explainer")
        self.tokens = TokenSet(AuthSettings())
        self.references: dict[str, np.ndarray] = {}
        self._client: httpx.AsyncClient | None = None
        self._executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="explain")
        self._admitted = 0
        self.ready = False

    async def start(self) -> None:
        self.references = {name: model.load_reference() for name, model in self.models.items()}
        self._client = httpx.AsyncClient(timeout=self.settings.model_timeout_seconds, limits=httpx.Limits(max_connections=16))
        self.ready = True
        log.info("explainer ready on port %d for %s", self.settings.port,
                 ", ".join(f"{m.name} ({m.kind}, {m.url})" for m in self.models.values()))

    async def stop(self) -> None:
        self.ready = False
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            await self._client.aclose()

    def _model_headers(self) -> dict[str, str]:
        """The explainer's calls are marked so the model server answers them without logging them (its
        perturbed instances are not production traffic); with auth on, the mark needs a token (read
        again per call, so a rotated Secret is followed)."""
        headers = {"content-type": "application/json", "x-seismo-traffic": "explainer"}
        current = self.tokens.current()
        if current:
            headers["authorization"] = f"Bearer {current[0]}"
        return headers

    async def _post_batch(self, model: ExplainedModel, batch: np.ndarray, trace: dict[str, str]) -> np.ndarray:
        """One OIP V2 request: a flat FP32 tensor decodes several times faster than V1's nested lists."""
        assert self._client is not None, "the explainer is not started"
        url = f"{model.url}/v2/models/{model.name}/infer"
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": list(batch.shape), "data": batch.reshape(-1)}]}
        try:
            r = await self._client.post(url, content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), headers={**self._model_headers(), **trace})
        except httpx.HTTPError as exc:
            raise ModelServerError(503, f"model server for {model.name!r} at {model.url} is unreachable: {type(exc).__name__}") from None
        if r.status_code != 200:
            try:
                detail = r.json().get("error", r.text[:200])
            except ValueError:
                detail = r.text[:200]
            raise ModelServerError(502, f"model server for {model.name!r} answered {r.status_code}: {detail}")
        try:
            output = orjson.loads(r.content)["outputs"][0]  # the first output: the class scores
            return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            raise ModelServerError(502, f"model server for {model.name!r} answered without V2 'outputs'") from None

    def _predictor(self, model: ExplainedModel, loop: asyncio.AbstractEventLoop, trace: dict[str, str]):
        """predict(batch) for a worker thread: chunks go through the loop's pooled client, each call a child
        of the explanation's span (`trace`: the worker thread does not see the loop's current span)."""
        step = self.settings.max_rows_per_request

        def predict(batch: np.ndarray) -> np.ndarray:
            parts = []
            for start in range(0, len(batch), step):
                future = asyncio.run_coroutine_threadsafe(self._post_batch(model, batch[start:start + step], trace), loop)
                parts.append(future.result(self.settings.model_timeout_seconds + 5))
            return np.concatenate(parts)

        return predict

    def model(self, name: str) -> ExplainedModel:
        if name not in self.models:
            self.rejected.labels("unknown_model").inc()
            raise UnknownModel(f"no explainer for model {name!r}; configured: {sorted(self.models)}")
        return self.models[name]

    async def explain(self, name: str, doc: Any, trace: dict[str, str] | None = None) -> Explanation:
        """Explain the one instance in a V1 or V2 request body for model `name`.

        UnknownModel, ExplainRequestError (bad request), ExplainerBusy or ModelServerError otherwise."""
        settings = self.settings
        model = self.model(name)
        reference = self.references[name]
        try:
            instance, parameters = instance_of(doc, model, reference)
            method = parameters.get("method", "anchors")
            if method not in METHODS:
                raise ExplainRequestError(f"parameter 'method' must be one of {', '.join(METHODS)}, got {method!r}")
            if method == "kernel_shap" and model.kind != "tabular":
                raise ExplainRequestError("kernel_shap explains tabular models; use anchors for images")
            threshold = _number(parameters, "threshold", settings.threshold, 0.5, 1.0)
            budget = Budget(int(_number(parameters, "max_model_calls", settings.max_model_calls, 1, settings.max_model_calls)),
                            _number(parameters, "max_seconds", settings.max_seconds, 0.01, settings.max_seconds))
            seed = int(_number(parameters, "seed", 0, 0, 2**31 - 1))
            nsamples = int(_number(parameters, "nsamples", 0, 1, 100_000, whole=True)) if "nsamples" in parameters else None
        except ValueError as exc:  # ExplainRequestError, or a value numpy could not take
            self.rejected.labels("invalid").inc()
            raise exc if isinstance(exc, ExplainRequestError) else ExplainRequestError(str(exc)) from None
        if self._admitted >= settings.concurrency + settings.max_queued:
            self.rejected.labels("busy").inc()
            raise ExplainerBusy(f"the explainer is busy ({settings.concurrency} running, {settings.max_queued} waiting); retry later")
        predict = self._predictor(model, asyncio.get_running_loop(), trace or {})
        if method == "kernel_shap":
            work = lambda: explain_kernel_shap(model, reference, instance, predict, budget, seed, nsamples=nsamples)  # noqa: E731
        elif model.kind == "tabular":
            work = lambda: explain_tabular_anchor(model, reference, instance, predict, budget, threshold, seed)  # noqa: E731
        else:
            work = lambda: explain_image_anchor(model, reference, instance, predict, budget, threshold, seed)  # noqa: E731
        self._admitted += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except ModelServerError:
            self.explanations.labels(name, method, "model_error").inc()
            raise
        finally:
            self._admitted -= 1
        self.explanations.labels(name, method, result.outcome).inc()
        self.seconds.labels(name, method).observe(result.seconds)
        self.calls.labels(name, method).observe(result.model_calls)
        if method == "anchors":
            self.precision.labels(name).observe(result.precision or 0.0)
            self.coverage.labels(name).observe(result.coverage or 0.0)
        log.info("explained %s with %s: %s in %.2fs, %d model calls", name, method, result.outcome, result.seconds, result.model_calls)
        return result


def create_app(settings: ExplainerSettings, registry: CollectorRegistry) -> Starlette:
    """Routes that translate HTTP to the `ExplainerService` (on `app.state.explainer`) and back."""
    core = ExplainerService(settings, registry)

    async def explain(request: Request) -> Response:
        name = request.path_params["model_name"]
        try:
            core.model(name)
            doc = parse_json(await read_body(request, settings.max_body_bytes))
        except UnknownModel as exc:
            return error(404, str(exc))
        except BodyTooLarge as exc:
            core.rejected.labels("too_large").inc()
            return error(413, str(exc))
        except ValueError as exc:
            core.rejected.labels("invalid").inc()
            return error(400, str(exc))
        with core.tracing.span(f"explain {name}", request.headers, "SERVER", {"seismo.model": name}) as span:
            try:
                result = await core.explain(name, doc, core.tracing.context_of(span))
            except ExplainRequestError as exc:
                return error(400, str(exc))
            except ExplainerBusy as exc:
                return error(429, str(exc), headers={"Retry-After": "5"})
            except ModelServerError as exc:
                fail(span, str(exc))
                return error(exc.status, str(exc))
            if span is not None:
                span.set_attribute("seismo.model_calls", result.model_calls)
        return JSONResponse({"model": name, **result.to_json()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await core.start()
        try:
            yield
        finally:
            await core.stop()

    routes = [
        Route("/v1/models/{model_name}:explain", explain, methods=["POST"]),
        *health_routes(registry, lambda: core.ready), openapi_route("explainer", OPERATIONS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=auth_middleware(event_paths=(), settings=core.tokens.settings))
    app.state.explainer = core
    return app
