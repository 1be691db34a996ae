"""`seismo serve outlier`: scores every instance of every inference request it is sent.

The answer to each delivered request event is an `org.kubeflow.serving.inference.outlier` reply
(same id and extensions), which the broker publishes and the logger folds into the prediction's
record. Concurrent events are scored in one batch.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.batching import ThreadBatcher, split_rows
from seismo.detect import OutlierResult, load_detector
from seismo.events.types import KSERVE_OUTLIER
from seismo.services.api.detectors import OUTLIER_OPERATIONS
from seismo.services.auth import auth_middleware
from seismo.services.common import DEFAULT_MAX_BODY_BYTES, EXCEPTION_HANDLERS, health_routes
from seismo.services.detector_events import accept, reply
from seismo.services.openapi import openapi_route
from seismo.topology import EXAMPLE_DETECTORS, SERVICE_PORTS
from seismo.tracing import Tracing, parent_of

log = logging.getLogger(__name__)


class OutlierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_OUTLIER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["outlier"]
    """Port the broker delivers request events to."""
    detector_path: Path = EXAMPLE_DETECTORS / "outlier"
    """A detector folder saved by `seismo fit outlier` (or save_detector)."""
    model: str = "image-classifier"
    """The model whose requests this detector scores; events for other models are rejected."""
    feature_scores: bool = False
    """Include per-feature scores in replies (large for images)."""
    max_batch: int = 256
    """Most instances scored in one call."""
    max_event_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest event body accepted; bigger ones get 413."""


class OutlierService:
    """The outlier detector without HTTP: scores instances in batches on one thread, counts outcomes."""

    def __init__(self, settings: OutlierSettings, registry: CollectorRegistry):
        if not any((settings.detector_path / name).exists() for name in ("config.json", "config.toml", "meta.dill")):
            raise ValueError(f"no detector at {settings.detector_path}: fit one with `seismo fit outlier --reference FILE --out DIR` "
                             "(or `make model` for the example) and set SEISMO_OUTLIER_DETECTOR_PATH")
        self.settings = settings
        self.source = f"http://{settings.host}:{settings.port}/"
        self.tracing = Tracing("outlier")
        self.instances = Counter("seismo_outlier_instances", "Instances scored, by outcome", ["model", "outcome"], registry=registry)
        self.rejected = Counter("seismo_outlier_events_rejected", "Events not scored, by reason", ["model", "reason"], registry=registry)
        self.scores = Histogram("seismo_outlier_score", "Instance outlier scores", ["model"],
                                buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000), registry=registry)
        self.threshold = Gauge("seismo_outlier_threshold", "Score above which an instance is an outlier", ["model"], registry=registry)
        self.detector: Any = None
        self.batcher: ThreadBatcher[np.ndarray, OutlierResult] = ThreadBatcher(self._score_batch, settings.max_batch,
                                                                               name="outlier-scoring", size_of=len)

    @property
    def ready(self) -> bool:
        return self.detector is not None

    def stopped(self) -> list[str]:
        return self.batcher.stopped()

    async def start(self) -> None:
        self.detector = load_detector(self.settings.detector_path)
        self.threshold.labels(self.settings.model).set(self.detector.threshold)
        self.batcher.start()
        log.info("outlier detector %s for %r ready on port %d", self.detector.kind, self.settings.model, self.settings.port)

    async def stop(self) -> None:
        await self.batcher.close()

    def _score_batch(self, arrays: list[np.ndarray]) -> list[OutlierResult]:
        """One detector call for several events' instances, split back into one result per event."""
        result = self.detector.predict(np.concatenate(arrays))
        parts = zip(*(split_rows(a, arrays) for a in (result.is_outlier, result.instance_score, result.feature_score)), strict=True)
        return [OutlierResult(is_outlier, score, result.threshold, features) for is_outlier, score, features in parts]

    async def score(self, rows: np.ndarray) -> OutlierResult:
        result = await self.batcher.submit(rows)
        model = self.settings.model
        n_out = int(result.is_outlier.sum())
        self.instances.labels(model, "outlier").inc(n_out)
        self.instances.labels(model, "inlier").inc(len(result.is_outlier) - n_out)
        for value in result.instance_score:
            self.scores.labels(model).observe(float(value))
        return result

    def reply_data(self, result: OutlierResult) -> dict:
        """The outlier event's data: alibi-detect's fields, per-feature scores only when configured."""
        return {
            "is_outlier": result.is_outlier.astype(int),
            "instance_score": result.instance_score,
            "threshold": self.detector.threshold,
            "feature_score": result.feature_score if self.settings.feature_scores else None,
            "detector": self.detector.kind,
            "detector_version": getattr(self.detector, "detector_version", None),
        }


def create_app(settings: OutlierSettings, registry: CollectorRegistry) -> Starlette:
    """Routes that translate HTTP to the `OutlierService` (on `app.state.outlier`) and back."""
    core = OutlierService(settings, registry)

    async def handle(request: Request) -> Response:
        shape = core.detector.instance_shape if core.detector is not None else None
        accepted = await accept(request, settings.max_event_bytes, settings.model, shape, core.rejected, "outlier")
        if isinstance(accepted, Response):
            return accepted
        event, array = accepted
        with core.tracing.span("outlier score", parent_of(request.headers, event.extensions), "SERVER",
                               {"seismo.prediction_id": event.id, "seismo.instances": len(array)}) as span:
            data = core.reply_data(await core.score(array))
            if span is not None:
                span.set_attribute("seismo.outliers", int(data["is_outlier"].sum()))
        return reply(event, KSERVE_OUTLIER, core.source, data)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await core.start()
        try:
            yield
        finally:
            await core.stop()

    routes = [Route("/", handle, methods=["POST"]), *health_routes(registry, lambda: core.ready, core.stopped), openapi_route("outlier", OUTLIER_OPERATIONS)]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=auth_middleware(event_paths=("/",)))
    app.state.outlier = core
    return app
