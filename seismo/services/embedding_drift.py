"""The drift service's embedding windows: response events in, EmbeddingDrift results out.

Seismo's model server (and foreign models named in the embeddings config) put each prediction's
embedding on its response event. The drift service, given `SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH`,
fills count windows of those vectors (in their own SQLite file, so a restart loses nothing) and tests
each full window with the saved `EmbeddingDrift`.

The versioning guard runs per event, before anything is added: embeddings of another major or minor
version than the detector's reference are refused with a 400 naming both versions (the broker
dead-letters the event; `seismo_drift_events_rejected{reason="embedding_version"}` counts it); a
patch is added and noted on the window's result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from seismo.detect import load_detector
from seismo.detect.embedding import EmbeddingDrift
from seismo.detect.windows import Window, WindowStore
from seismo.embeddings.extract import EmbeddingSource, embedding_of
from seismo.embeddings.version import EmbeddingVersionError
from seismo.protocol.cloudevents import CloudEvent
from seismo.protocol.instances import Rejection
from seismo.protocol.payloads import PayloadError
from seismo.times import rfc3339

log = logging.getLogger(__name__)
DETECTOR_NAME = "EmbeddingDrift"


class _EmbeddingMetrics:
    def __init__(self, registry: CollectorRegistry):
        labels = ["model", "embedding_version"]  # the reference's version: fixed per detector, never a client's value
        self.distance = Gauge("seismo_embedding_drift_distance", "Last embedding window's euclidean centroid distance",
                              labels, registry=registry)
        self.cosine = Gauge("seismo_embedding_drift_cosine_distance", "Last embedding window's cosine centroid distance",
                            labels, registry=registry)
        self.threshold = Gauge("seismo_embedding_drift_distance_threshold",
                               "Centroid distance the reference's own fluctuation exceeds with probability p_val", labels,
                               registry=registry)
        self.p_value = Gauge("seismo_embedding_drift_p_value", "Last embedding window's p-value (the detector's method)",
                             labels, registry=registry)
        self.flag = Gauge("seismo_embedding_drift_detected", "1 if the last embedding window drifted", labels, registry=registry)
        self.effect = Gauge("seismo_embedding_drift_effect_size", "Last embedding window's effect size: the KS gap of reference and "
                            "window along the direction the centroid moved", labels, registry=registry)
        self.windows = Counter("seismo_embedding_drift_windows", "Embedding windows tested, by outcome", ["model", "outcome"],
                               registry=registry)
        self.fill = Gauge("seismo_embedding_drift_window_fill", "Embeddings waiting in the current window", ["model"], registry=registry)
        self.instances = Counter("seismo_embedding_drift_instances", "Embeddings added to windows (redeliveries not counted)", ["model"],
                                 registry=registry)
        self.patches = Counter("seismo_embedding_drift_patch_events", "Events scored across a patch version (noted on results)",
                               ["model"], registry=registry)


class EmbeddingWindows:
    """Embedding windows of one model: checked on arrival, tested when full. Blocking calls (`add`,
    `finish`) run on the drift service's window thread."""

    def __init__(self, detector_path: Path, model: str, window_size: int, state: Path | str, allow_minor: bool,
                 sources: dict[str, EmbeddingSource], registry: CollectorRegistry, lease: float | None = None,
                 annotate: Callable[[dict], dict] = lambda payload: payload, effect_floor: float | None = None):
        detector = load_detector(detector_path)
        if not isinstance(detector, EmbeddingDrift):
            raise ValueError(f"{detector_path} holds a {detector.kind}, not an EmbeddingDrift (fit one with `seismo fit embedding`)")
        if effect_floor is not None:
            detector.effect_floor = effect_floor
        if allow_minor:
            detector.allow_minor = True
        assert detector.instance_shape is not None  # a loaded detector is fitted
        self.detector = detector
        self.model = model
        self.source = sources.get(model)
        self.metrics = _EmbeddingMetrics(registry)
        self.store = WindowStore(state, detector.instance_shape, window_size, "count", namespace="seismo_embedding_drift")
        self.lease = lease
        self.annotate = annotate  # the drift service's: adds the sample share to every result
        self._notes: dict[str, str] = {}  # the latest version note per model's current window (patches seen)
        self.metrics.fill.labels(model).set(self.store.pending(model))

    def vectors_of(self, event: CloudEvent) -> tuple[np.ndarray, str | None, str | None] | None:
        """(vectors, version, note) of a response event, None when it carries no embedding (an error
        response); Rejection when the embedding is malformed or the guard refuses its version."""
        try:
            found = embedding_of(event.data, event.extensions, self.source)
        except PayloadError as exc:
            raise Rejection("bad_embedding", str(exc), self.model) from None
        if found is None:
            return None
        if found.vectors.shape[1:] != self.detector.instance_shape:
            raise Rejection("bad_embedding", f"embedding has {found.vectors.shape[1]} dimensions; the detector's reference has "
                            f"{list(self.detector.instance_shape or ())}", self.model)
        try:
            note = self.detector.version_note(found.version)
        except EmbeddingVersionError as exc:
            raise Rejection("embedding_version", str(exc), self.model) from None
        if note is not None and note.startswith("patch"):
            self.metrics.patches.labels(self.model).inc()
        return found.vectors, found.version, note

    def add(self, rows: np.ndarray, event_id: str, version: str | None, note: str | None) -> list[dict] | None:
        """Add one event's vectors; the results of the windows they completed (None: a redelivery)."""
        if note is not None:
            self._notes[self.model] = note
        complete = self.store.add(self.model, rows, event_id=event_id)
        if complete is None:
            return None
        self.metrics.instances.labels(self.model).inc(len(rows))
        self.metrics.fill.labels(self.model).set(self.store.pending(self.model))
        return [self.finish(window, event_id, version) for window in complete]

    def finish(self, window: Window, event_id: str | None, version: str | None) -> dict:
        """Test a full window and make its result durable before anyone hears of it."""
        detector = self.detector
        version = version or detector.version
        result = detector.predict(window.rows, version if detector.version else None)
        note = self._notes.pop(self.model, None) or result.version_note
        labels = (window.model, detector.version or "none")
        m = self.metrics
        m.distance.labels(*labels).set(result.euclidean_distance)
        m.cosine.labels(*labels).set(result.cosine_distance)
        m.threshold.labels(*labels).set(result.distance_threshold or 0.0)
        m.p_value.labels(*labels).set(result.p_val)
        m.effect.labels(*labels).set(result.effect_size or 0.0)
        m.flag.labels(*labels).set(1 if result.is_drift else 0)
        m.windows.labels(window.model, "drift" if result.is_drift else "no_drift").inc()
        payload = self.annotate({**result.to_json(), "version_note": note, "model": window.model, "window": window.number,
                                 "size": len(window.rows), "start": rfc3339(window.start), "end": rfc3339(window.end),
                                 "detector": DETECTOR_NAME})
        log.info("embedding drift: %s window %d (%d vectors): drift=%s distance=%.4g p=%.3g", window.model, window.number,
                 len(window.rows), result.is_drift, result.euclidean_distance, result.p_val)
        self.store.finish(window, orjson.dumps(payload), event_id)
        return payload

    def earlier_results(self, event_id: str) -> list[dict]:
        return [orjson.loads(p) for p in self.store.results_for(self.model, event_id)]

    def recover(self) -> list[dict]:
        """Windows taken but not recorded when the service last stopped, tested now."""
        return [self.finish(window, event_id, None) for window, event_id in self.store.unfinished(self.lease)]

    def close(self) -> None:
        self.store.close()
