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
from seismo.explain.methods import METHODS, explain_image_anchor, explain_kernel_shap, explain_tabular_anchor
from seismo.services.auth import AuthSettings, TokenSet, auth_middleware
from seismo.services.common import EXCEPTION_HANDLERS, BodyTooLarge, JSONResponse, error, health_routes, parse_json, read_body
from seismo.topology import CONFIG_DIR, SERVICE_PORTS

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


def _number(parameters: dict, name: str, default: float, low: float, high: float) -> float:
    value = parameters.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ExplainRequestError(f"parameter '{name}' must be a number from {low:g} to {high:g}, got {value!r}")
    return value


def create_app(settings: ExplainerSettings, registry: CollectorRegistry) -> Starlette:
    models = load_models(settings.config_file)
    explanations = Counter("seismo_explainer_explanations", "Explanations by method and outcome", ["model", "method", "outcome"], registry=registry)
    seconds = Histogram("seismo_explainer_seconds", "Time per explanation", ["model", "method"],
                        buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120), registry=registry)
    calls = Histogram("seismo_explainer_model_calls", "Instances sent to the model per explanation", ["model", "method"],
                      buckets=(10, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000, 100000), registry=registry)
    fractions = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
    precision = Histogram("seismo_explainer_anchor_precision", "Precision of returned anchors", ["model"], buckets=fractions, registry=registry)
    coverage = Histogram("seismo_explainer_anchor_coverage", "Coverage of returned anchors", ["model"],
                         buckets=(0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0), registry=registry)
    rejected = Counter("seismo_explainer_requests_rejected", "Explain requests refused, by reason", ["reason"], registry=registry)
    state: dict[str, Any] = {"client": None, "references": {}, "ready": False, "admitted": 0}
    auth = AuthSettings()
    tokens = TokenSet(auth)

    def model_headers() -> dict[str, str]:
        """The explainer's calls are marked so the model server answers them without logging them (its
        perturbed instances are not production traffic); with auth on, the mark needs a token (read
        again per call, so a rotated Secret is followed)."""
        headers = {"content-type": "application/json", "x-seismo-traffic": "explainer"}
        current = tokens.current()
        if current:
            headers["authorization"] = f"Bearer {current[0]}"
        return headers
    executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="explain")

    async def post_batch(model: ExplainedModel, batch: np.ndarray) -> np.ndarray:
        """One OIP V2 request: a flat FP32 tensor decodes several times faster than V1's nested lists."""
        url = f"{model.url}/v2/models/{model.name}/infer"
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        body = {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": list(batch.shape), "data": batch.reshape(-1)}]}
        try:
            r = await state["client"].post(url, content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                                           headers=model_headers())
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

    def predictor(model: ExplainedModel, loop: asyncio.AbstractEventLoop):
        """predict(batch) for a worker thread: chunks go through the loop's pooled client."""

        def predict(batch: np.ndarray) -> np.ndarray:
            parts = []
            for start in range(0, len(batch), settings.max_rows_per_request):
                chunk = batch[start:start + settings.max_rows_per_request]
                future = asyncio.run_coroutine_threadsafe(post_batch(model, chunk), loop)
                parts.append(future.result(settings.model_timeout_seconds + 5))
            return np.concatenate(parts)

        return predict

    async def explain(request: Request) -> Response:
        name = request.path_params["model_name"]
        if name not in models:
            rejected.labels("unknown_model").inc()
            return error(404, f"no explainer for model {name!r}; configured: {sorted(models)}")
        model = models[name]
        reference = state["references"][name]
        try:
            body = await read_body(request, settings.max_body_bytes)
            instance, parameters = instance_of(parse_json(body), model, reference)
            method = parameters.get("method", "anchors")
            if method not in METHODS:
                raise ExplainRequestError(f"parameter 'method' must be one of {', '.join(METHODS)}, got {method!r}")
            if method == "kernel_shap" and model.kind != "tabular":
                raise ExplainRequestError("kernel_shap explains tabular models; use anchors for images")
            threshold = _number(parameters, "threshold", settings.threshold, 0.5, 1.0)
            budget = Budget(int(_number(parameters, "max_model_calls", settings.max_model_calls, 1, settings.max_model_calls)),
                            _number(parameters, "max_seconds", settings.max_seconds, 0.01, settings.max_seconds))
            seed = int(_number(parameters, "seed", 0, 0, 2**31 - 1))
        except BodyTooLarge as exc:
            rejected.labels("too_large").inc()
            return error(413, str(exc))
        except (ExplainRequestError, ValueError) as exc:
            rejected.labels("invalid").inc()
            return error(400, str(exc))
        if state["admitted"] >= settings.concurrency + settings.max_queued:
            rejected.labels("busy").inc()
            return error(429, f"the explainer is busy ({settings.concurrency} running, {settings.max_queued} waiting); retry later",
                         headers={"Retry-After": "5"})
        predict = predictor(model, asyncio.get_running_loop())
        if method == "kernel_shap":
            work = lambda: explain_kernel_shap(model, reference, instance, predict, budget, seed)  # noqa: E731
        elif model.kind == "tabular":
            work = lambda: explain_tabular_anchor(model, reference, instance, predict, budget, threshold, seed)  # noqa: E731
        else:
            work = lambda: explain_image_anchor(model, reference, instance, predict, budget, threshold, seed)  # noqa: E731
        state["admitted"] += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(executor, work)
        except ModelServerError as exc:
            explanations.labels(name, method, "model_error").inc()
            return error(exc.status, str(exc))
        finally:
            state["admitted"] -= 1
        outcome = "budget_exhausted" if result["budget_exhausted"] else ("ok" if result.get("anchor_found", True) else "no_anchor")
        explanations.labels(name, method, outcome).inc()
        seconds.labels(name, method).observe(result["seconds"])
        calls.labels(name, method).observe(result["model_calls"])
        if method == "anchors":
            precision.labels(name).observe(result["precision"])
            coverage.labels(name).observe(result["coverage"])
        log.info("explained %s with %s: %s in %.2fs, %d model calls", name, method, outcome, result["seconds"], result["model_calls"])
        return JSONResponse({"model": name, **result})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state["references"] = {name: model.load_reference() for name, model in models.items()}
        state["client"] = httpx.AsyncClient(timeout=settings.model_timeout_seconds, limits=httpx.Limits(max_connections=16))
        state["ready"] = True
        log.info("explainer ready on port %d for %s", settings.port, ", ".join(f"{m.name} ({m.kind}, {m.url})" for m in models.values()))
        try:
            yield
        finally:
            state["ready"] = False
            executor.shutdown(wait=False, cancel_futures=True)
            await state["client"].aclose()

    routes = [
        Route("/v1/models/{model_name}:explain", explain, methods=["POST"]),
        *health_routes(registry, lambda: state["ready"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                     middleware=auth_middleware(event_paths=(), settings=auth))
