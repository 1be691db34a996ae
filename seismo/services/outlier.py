"""`seismo serve outlier`: scores every instance of every inference request it is sent.

The answer to each delivered request event is an `org.kubeflow.serving.inference.outlier` reply
(same id and extensions), which the broker publishes and the logger folds into the prediction's
record. Concurrent events are scored in one batch.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.batching import ThreadBatcher, split_rows
from seismo.detect import load_detector
from seismo.events.types import KSERVE_OUTLIER
from seismo.services.auth import auth_middleware
from seismo.services.common import DEFAULT_MAX_BODY_BYTES, EXCEPTION_HANDLERS, health_routes
from seismo.services.detector_events import accept, reply
from seismo.topology import EXAMPLE_DETECTORS, SERVICE_PORTS

log = logging.getLogger(__name__)


class OutlierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_OUTLIER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["outlier"]
    """Port the broker delivers request events to."""
    detector_path: Path = EXAMPLE_DETECTORS / "outlier"
    """A detector folder saved by `seismo fit outlier` (or Detector.save)."""
    model: str = "image-classifier"
    """The model whose requests this detector scores; events for other models are rejected."""
    feature_scores: bool = False
    """Include per-feature scores in replies (large for images)."""
    max_batch: int = 256
    """Most instances scored in one call."""
    max_event_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest event body accepted; bigger ones get 413."""


def create_app(settings: OutlierSettings, registry: CollectorRegistry) -> Starlette:
    if not any((settings.detector_path / name).exists() for name in ("config.json", "config.toml", "meta.dill")):
        raise ValueError(f"no detector at {settings.detector_path}: fit one with `seismo fit outlier --reference FILE --out DIR` "
                         "(or `make model` for the example) and set SEISMO_OUTLIER_DETECTOR_PATH")
    instances = Counter("seismo_outlier_instances", "Instances scored, by outcome", ["model", "outcome"], registry=registry)
    rejected = Counter("seismo_outlier_events_rejected", "Events not scored, by reason", ["model", "reason"], registry=registry)
    scores = Histogram("seismo_outlier_score", "Instance outlier scores", ["model"],
                       buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000), registry=registry)
    threshold_gauge = Gauge("seismo_outlier_threshold", "Score above which an instance is an outlier", ["model"], registry=registry)
    state: dict = {"detector": None}

    def score_batch(arrays: list[np.ndarray]):
        result = state["detector"].predict(np.concatenate(arrays))
        return list(zip(*(split_rows(a, arrays) for a in (result.is_outlier, result.instance_score, result.feature_score))))

    batcher: ThreadBatcher = ThreadBatcher(score_batch, settings.max_batch, name="outlier-scoring", size_of=len)

    async def handle(request: Request) -> Response:
        detector = state["detector"]
        accepted = await accept(request, settings.max_event_bytes, settings.model, detector.instance_shape, rejected, "outlier")
        if isinstance(accepted, Response):
            return accepted
        event, array = accepted
        is_outlier, instance_score, feature_score = await batcher.submit(array)
        n_out = int(is_outlier.sum())
        instances.labels(settings.model, "outlier").inc(n_out)
        instances.labels(settings.model, "inlier").inc(len(is_outlier) - n_out)
        for s in instance_score:
            scores.labels(settings.model).observe(float(s))
        data = {
            "is_outlier": is_outlier.astype(int),
            "instance_score": instance_score,
            "threshold": detector.threshold,
            "feature_score": feature_score if settings.feature_scores else None,
            "detector": detector.kind,
        }
        return reply(event, KSERVE_OUTLIER, f"http://{settings.host}:{settings.port}/", data)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state["detector"] = load_detector(settings.detector_path)
        threshold_gauge.labels(settings.model).set(state["detector"].threshold)
        batcher.start()
        log.info("outlier detector %s for %r ready on port %d", state["detector"].kind, settings.model, settings.port)
        try:
            yield
        finally:
            await batcher.close()

    routes = [Route("/", handle, methods=["POST"]), *health_routes(registry, lambda: state["detector"] is not None)]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=auth_middleware(event_paths=("/",)))
