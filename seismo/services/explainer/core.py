"""The explainer's core (`seismo serve explainer`): black-box explanations of a deployed model's predictions.

`POST /v1/models/{m}:explain` takes the same V1 (`instances`) or V2 (`inputs`) body as a prediction,
with one instance, and optional `parameters` (`method`: anchors (default) or kernel_shap; `threshold`,
`max_model_calls`, `max_seconds`, `seed`). The explainer never loads the model: it calls the model
server over HTTP with batches of perturbed instances, through one pooled client. Each explanation runs
on a worker thread (the search is sequential CPU work); its model calls go back to the event loop's
client.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from seismo.explain.anchors import Budget
from seismo.explain.config import ExplainedModel, load_models
from seismo.explain.methods import Explanation, explain_image_anchor, explain_kernel_shap, explain_tabular_anchor
from seismo.protocol.payloads import PayloadError, decode_v1_instances, decode_v2_request
from seismo.services.api.explainer import ExplainRequest
from seismo.services.auth import AuthSettings, TokenSet
from seismo.services.base import Service
from seismo.services.explainer.settings import ExplainerSettings
from seismo.tracing import Tracing

log = logging.getLogger(__name__)


class ModelServerError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ExplainRequestError(ValueError):
    pass


def instance_of(request: ExplainRequest, model: ExplainedModel, reference: np.ndarray) -> np.ndarray:
    """The one instance to explain, decoded against `model`'s reference, or ExplainRequestError."""
    doc = request.document()
    try:
        if "inputs" in doc:
            _, tensors, _ = decode_v2_request(doc)
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
    return instance


def _within(name: str, asked: float | None, low: float, limit: float) -> float:
    """What a request asked for, at most the service's limit (more is a 400 naming both); the limit when it asked nothing."""
    if asked is None:
        return limit
    if asked > limit:
        raise ExplainRequestError(f"parameter '{name}' must be a number from {low:g} to {limit:g}, got {asked!r}")
    return asked


class ExplainerBusy(Exception):
    """Every explanation slot and queue place is taken (a 429)."""


class UnknownModel(LookupError):
    """No explainer is configured for the model (a 404)."""


class ExplainerService(Service):
    """The explainer without HTTP: checks a request, runs one explanation on a worker thread under a
    call budget, and counts it. Its model calls go to the model server through one pooled client."""

    name = "explainer"

    def __init__(self, settings: ExplainerSettings, registry: CollectorRegistry, auth: AuthSettings | None = None,
                 tracing: Tracing | None = None):
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
        self.tracing = tracing or Tracing("explainer")  # handed in by create_app; made here when a test builds the core alone
        self.tokens = TokenSet(auth or AuthSettings())
        self.references: dict[str, np.ndarray] = {}
        self._client: httpx.AsyncClient | None = None
        self._executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="explain")
        self._admitted = 0
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    def count_rejected(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    async def start(self) -> None:
        self.references = {name: model.load_reference() for name, model in self.models.items()}
        self._client = httpx.AsyncClient(timeout=self.settings.model_timeout_seconds, limits=httpx.Limits(max_connections=16))
        self._ready = True
        log.info("explainer ready on port %d for %s", self.settings.port,
                 ", ".join(f"{m.name} ({m.kind}, {m.url})" for m in self.models.values()))

    async def stop(self) -> None:
        self._ready = False
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

    async def explain(self, name: str, request: ExplainRequest, trace: dict[str, str] | None = None) -> Explanation:
        """Explain the one instance of a V1 or V2 request (parsed by its API model) for model `name`.

        UnknownModel, ExplainRequestError (bad request), ExplainerBusy or ModelServerError otherwise."""
        settings = self.settings
        model = self.model(name)
        reference = self.references[name]
        try:
            instance = instance_of(request, model, reference)
            asked = request.asked()
            method = asked.method
            if method == "kernel_shap" and model.kind != "tabular":
                raise ExplainRequestError("kernel_shap explains tabular models; use anchors for images")
            threshold = settings.threshold if asked.threshold is None else asked.threshold
            budget = Budget(int(_within("max_model_calls", asked.max_model_calls, 1, settings.max_model_calls)),
                            _within("max_seconds", asked.max_seconds, 0.01, settings.max_seconds))
            seed = int(asked.seed or 0)
            nsamples = asked.nsamples
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
