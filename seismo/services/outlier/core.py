"""The outlier service's core (`seismo serve outlier`): scores every instance of every inference request it is sent, and checks
every response for adversarial inputs.

The answer to each delivered request event is an `org.kubeflow.serving.inference.outlier` reply
(same id and extensions), which the broker publishes and the logger folds into the prediction's
record. Concurrent events are scored in one batch.

Response events carry the model's embedding (seismo.embeddings); with an adversarial detector
configured (seismo.detect.adversarial, on by default for the example) each is answered with an
`io.seismo.inference.adversarial` reply the logger keeps as the record's `adversarial` annotation.
Responses without an embedding (an error response, a model that logs none) are skipped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from seismo.batching import ThreadBatcher, split_rows
from seismo.detect import ClassMahalanobisAdversarial, OutlierResult, load_detector
from seismo.detect.adversarial import AdversarialVersionError
from seismo.embeddings.extract import embedding_of
from seismo.protocol.cloudevents import CloudEvent
from seismo.protocol.payloads import PayloadError
from seismo.protocol.types import KSERVE_OUTLIER, SEISMO_ADVERSARIAL, EventKind, kind_of, model_of
from seismo.services.detector_events import Answer, EventDetector, Rejection, instances_of_event, reply
from seismo.services.outlier.settings import OutlierSettings
from seismo.tracing import Tracing, parent_of

log = logging.getLogger(__name__)


class OutlierService(EventDetector):
    """The outlier detector without HTTP: scores instances in batches on one thread, counts outcomes."""

    name = "outlier"

    def __init__(self, settings: OutlierSettings, registry: CollectorRegistry, tracing: Tracing | None = None):
        if not settings.input_detector and not settings.adversarial:
            raise ValueError("SEISMO_OUTLIER_INPUT_DETECTOR=false and SEISMO_OUTLIER_ADVERSARIAL=false leave this service nothing "
                             "to score: turn one of them on")
        if settings.input_detector and not any((settings.detector_path / name).exists()
                                               for name in ("config.json", "config.toml", "meta.dill")):
            raise ValueError(f"no detector at {settings.detector_path}: fit one with `seismo fit outlier --reference FILE --out DIR` "
                             "(or `make model` for the example) and set SEISMO_OUTLIER_DETECTOR_PATH "
                             "(or SEISMO_OUTLIER_INPUT_DETECTOR=false to check response embeddings alone)")
        self.settings = settings
        self.source = f"http://{settings.host}:{settings.port}/"
        self.tracing = tracing or Tracing("outlier")  # handed in by create_app; made here when a test builds the core alone
        self.instances = Counter("seismo_outlier_instances", "Instances scored, by outcome", ["model", "outcome"], registry=registry)
        self.rejected = Counter("seismo_outlier_events_rejected", "Events not scored, by reason", ["model", "reason"], registry=registry)
        self.scores = Histogram("seismo_outlier_score", "Instance outlier scores", ["model"],
                                buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000), registry=registry)
        self.threshold = Gauge("seismo_outlier_threshold", "Score above which an instance is an outlier", ["model"], registry=registry)
        self.adversarial_instances = Counter("seismo_adversarial_instances", "Response instances checked for adversarial inputs, by outcome",
                                             ["model", "outcome"], registry=registry)
        self.adversarial_scores = Histogram("seismo_adversarial_score", "Squared Mahalanobis distance of the embedding to the nearest class",
                                            ["model"], buckets=(10, 25, 50, 75, 100, 150, 200, 300, 500, 1000, 3000, 10000), registry=registry)
        self.adversarial_threshold = Gauge("seismo_adversarial_threshold", "Score above which an instance is flagged adversarial", ["model"],
                                           registry=registry)
        self.adversarial_skipped = Counter("seismo_adversarial_events_skipped", "Response events not checked, by reason (no_embedding)",
                                           ["model", "reason"], registry=registry)
        self.sampling_metrics(registry)
        self.detector: Any = None
        self._started = False
        # Small (class means and one precision matrix): loaded here, so a wrong path stops the start at once.
        self.adversarial = self._load_adversarial(settings.adversarial_detector_path) if settings.adversarial else None
        self.batcher: ThreadBatcher[np.ndarray, OutlierResult] = ThreadBatcher(self._score_batch, settings.max_batch,
                                                                               name="outlier-scoring", size_of=len)

    @property
    def ready(self) -> bool:
        return self._started

    def stopped(self) -> list[str]:
        return self.batcher.stopped()


    async def answer(self, event: CloudEvent, headers: Mapping[str, Any] | None = None) -> Answer:
        """One event's answer: an outlier reply to a request, an adversarial reply (or 204) to a response.
        Rejection when the event cannot be scored. `headers`: the single delivery's (trace context)."""
        headers = headers or {}
        if self.sampled_out(event):
            return Answer(204)
        if kind_of(event.type) is EventKind.RESPONSE and self.adversarial is not None:
            return self._adversarial_answer(event, headers)
        if not self.settings.input_detector:
            raise Rejection("input_detector_off", f"{event.type} events are not scored here: SEISMO_OUTLIER_INPUT_DETECTOR is false "
                            "(the broker should send this service response events only)", model_of(event))
        shape = self.detector.instance_shape if self.detector is not None else None
        event, array = instances_of_event(event, self.settings.model, shape)
        with self.tracing.span("outlier score", parent_of(headers, event.extensions), "SERVER",
                               {"seismo.prediction_id": event.id, "seismo.instances": len(array)}) as span:
            data = self.reply_data(await self.score(array))
            if span is not None:
                span.set_attribute("seismo.outliers", int(data["is_outlier"].sum()))
        return reply(event, KSERVE_OUTLIER, self.source, self.with_share(data))

    def _adversarial_answer(self, event: CloudEvent, headers: Mapping[str, Any]) -> Answer:
        with self.tracing.span("adversarial check", parent_of(headers, event.extensions), "SERVER", {"seismo.prediction_id": event.id}) as span:
            data = self.check_adversarial(event)
            if data is None:
                return Answer(204)  # nothing to check: no reply event
            if span is not None:
                span.set_attribute("seismo.adversarial", int(data["is_adversarial"].sum()))
        return reply(event, SEISMO_ADVERSARIAL, self.source, self.with_share(data))

    async def start(self) -> None:
        if self.settings.input_detector:
            self.detector = load_detector(self.settings.detector_path)
            self.threshold.labels(self.settings.model).set(self.detector.threshold)
        if self.adversarial is not None:
            self.adversarial_threshold.labels(self.settings.model).set(self.adversarial.threshold or 0.0)
        self.batcher.start()
        self._started = True
        log.info("outlier service for %r ready on port %d (input detector: %s; adversarial check: %s)", self.settings.model,
                 self.settings.port, self.detector.kind if self.detector is not None else "off", "on" if self.adversarial else "off")

    async def stop(self) -> None:
        await self.batcher.close()

    @staticmethod
    def _load_adversarial(path: Path) -> ClassMahalanobisAdversarial:
        if not (path / "config.json").exists():
            raise ValueError(f"no adversarial detector at {path}: fit one (`make model` for the example; "
                             "ClassMahalanobisAdversarial().fit(embeddings, labels) and save_detector) or set SEISMO_OUTLIER_ADVERSARIAL=false")
        detector = load_detector(path)
        if not isinstance(detector, ClassMahalanobisAdversarial):
            raise ValueError(f"{path} holds a {getattr(detector, 'kind', type(detector).__name__)}, not a ClassMahalanobisAdversarial")
        return detector

    def check_adversarial(self, event: CloudEvent) -> dict | None:
        """The adversarial reply's data for a response event, None when it carries no embedding; Rejection
        when the embedding is malformed or from another embedding space than the detector's."""
        model = model_of(event)
        assert self.adversarial is not None  # the route sends response events here only when it is loaded
        if model != self.settings.model:
            raise Rejection("unknown_model", f"no detector for model {model!r} here (this one watches {self.settings.model!r})", model)
        try:
            found = embedding_of(event.data, event.extensions)
        except PayloadError as exc:
            raise Rejection("bad_embedding", str(exc), model) from None
        if found is None:
            self.adversarial_skipped.labels(model, "no_embedding").inc()
            return None
        if found.vectors.shape[1:] != self.adversarial.instance_shape:
            raise Rejection("bad_embedding", f"embedding has {found.vectors.shape[1]} dimensions; the adversarial detector's has "
                            f"{list(self.adversarial.instance_shape or ())}", model)
        try:
            self.adversarial.check_version(found.version)
        except AdversarialVersionError as exc:
            raise Rejection("embedding_version", str(exc), model) from None
        result, nearest = self.adversarial.check(found.vectors)
        flagged = int(result.is_outlier.sum())
        self.adversarial_instances.labels(model, "adversarial").inc(flagged)
        self.adversarial_instances.labels(model, "clean").inc(len(result.is_outlier) - flagged)
        for value in result.instance_score:
            self.adversarial_scores.labels(model).observe(float(value))
        return {"is_adversarial": result.is_outlier.astype(int), "instance_score": result.instance_score, "threshold": result.threshold,
                "nearest_class": nearest, "detector": self.adversarial.kind,
                "detector_version": self.adversarial.detector_version, "embedding_version": found.version}

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
