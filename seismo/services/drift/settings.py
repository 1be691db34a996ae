"""`seismo serve drift`'s settings (environment prefix SEISMO_DRIFT_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from seismo.config_files import one_of
from seismo.embeddings.extract import DEFAULT_CONFIG as DEFAULT_EMBEDDINGS_CONFIG
from seismo.protocol.limits import DEFAULT_MAX_BODY_BYTES
from seismo.topology import EXAMPLE_DETECTORS, SERVICE_PORTS, data_dir

WindowMode = Literal["count", "tumbling", "sliding"]


class DriftSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_DRIFT_", validate_by_name=True, validate_by_alias=True)

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["drift"]
    """Port the broker delivers request events to."""
    detector_path: Path = EXAMPLE_DETECTORS / "drift"
    """A detector folder saved by `seismo fit drift` (or save_detector)."""
    input_detector: bool = True
    """Load the detector at `detector_path` and fill windows with request events' instances. false: it is not
    loaded (for the example's autoencoder + KS, no TensorFlow: about a quarter of the start time and 540 MiB less
    memory) and request events are refused (reason `input_detector_off`); needs `embedding_detector_path`. What
    `seismo up` and the chart set while the broker sends this service no requests (SEISMO_BROKER_INPUT_DETECTORS,
    `detectors.inputs`)."""
    model: str = "image-classifier"
    """The model whose requests fill the windows; events for other models are rejected."""
    window_size: int = 1000
    """Instances per window (count mode), or the most a time window holds."""
    sample_share: float = Field(1.0, gt=0, le=1)
    """Share of the watched model's predictions whose instances fill the windows (by a hash of the prediction id: every replica, and a
    prediction's request and response, agree); the rest are answered 204 and counted in
    `seismo_drift_events_sampled_out_total`. Results carry `sample_share`. 1: every prediction."""
    window_mode: Annotated[WindowMode, one_of("window_mode", WindowMode)] = "count"
    """count, tumbling (time) or sliding (time)."""
    window_seconds: float = 60.0
    """Span of a time window."""
    slide_seconds: float = 10.0
    """How often a sliding window is tested."""
    window_grace_seconds: float = Field(5.0, ge=0)
    """Time windows take rows by their event's time (the CloudEvent `time`, else arrival; never later than
    arrival, nor earlier than one window span before it): a tumbling window is tested this long after its
    end, so rows of its span that arrive late (a retry, another replica) are still in it. Later ones count in
    the next window."""
    min_window: int = 50
    """Fewest instances a time window needs to be tested."""
    dedup_seconds: float = 86400.0
    """How long an event id is remembered, so a redelivered event is not added to a window twice."""
    state_path: Path = Field(default_factory=lambda: data_dir() / "drift-windows.db")
    """SQLite file holding window contents."""
    postgres_url: str | None = None
    """PostgreSQL, e.g. postgresql://seismo:secret@db:5432/seismo: the windows (feature and embedding) live in
    that database instead of the SQLite files, shared by every replica (one sequence of windows per model)."""
    sink_url: str | None = Field(default=None, validation_alias=AliasChoices("SEISMO_DRIFT_SINK_URL", "K_SINK"))
    """Where results of windows tested outside a delivery are posted (the broker). K_SINK works too."""
    max_event_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest event body (or batched delivery) accepted; bigger ones get 413."""
    max_batch_events: int = 1000
    """Most events in one batched delivery (`application/cloudevents-batch+json`, which Seismo's broker
    sends to triggers with `batch`); more get 400. Answered 200 with one result (and reply) per event."""
    effect_floor: float | None = Field(None, ge=0, lt=1)
    """The effect size a significant window must reach to count as drift (seismo.detect.effect: KS gap, share of
    probability mass), for the feature and the embedding detector alike; unset: each saved detector's own (0.05
    by default). 0: the test alone decides, so that large enough windows alarm on any shift, however small."""
    embedding_detector_path: Path | None = None
    """An EmbeddingDrift folder (`seismo fit embedding`): with it, the response events of `model` fill
    embedding windows too (`seismo up` sets the example's). Unset: response events are refused."""
    embedding_window_size: int = 200
    """Embeddings per embedding window (count windows)."""
    embedding_allow_minor: bool = False
    """Score embeddings of another minor version than the reference's (flagged on every result);
    another major version is always refused."""
    embedding_state_path: Path = Field(default_factory=lambda: data_dir() / "drift-embedding-windows.db")
    """SQLite file holding embedding window contents."""
    embeddings_config: Path | None = DEFAULT_EMBEDDINGS_CONFIG
    """Foreign models' embedding outputs and versions (see seismo/config/embeddings.yaml)."""
