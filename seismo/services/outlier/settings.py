"""`seismo serve outlier`'s settings (environment prefix SEISMO_OUTLIER_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from seismo.protocol.limits import DEFAULT_MAX_BODY_BYTES
from seismo.topology import EXAMPLE_DETECTORS, SERVICE_PORTS


class OutlierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_OUTLIER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["outlier"]
    """Port the broker delivers request events to."""
    detector_path: Path = EXAMPLE_DETECTORS / "outlier"
    """A detector folder saved by `seismo fit outlier` (or save_detector)."""
    input_detector: bool = True
    """Load the detector at `detector_path` and score request events. false: it is not loaded (for the example's
    VAE, no TensorFlow: about a quarter of the start time and 540 MiB less memory) and request events are refused
    (reason `input_detector_off`); what `seismo up` and the chart set while the broker sends this service no
    requests (SEISMO_BROKER_INPUT_DETECTORS, `detectors.inputs`). Response events are still checked (`adversarial`)."""
    model: str = "image-classifier"
    """The model whose requests this detector scores; events for other models are rejected."""
    sample_share: float = Field(1.0, gt=0, le=1)
    """Share of the watched model's predictions scored (outliers, adversarial checks) (by a hash of the prediction id: every replica, and a
    prediction's request and response, agree); the rest are answered 204 and counted in
    `seismo_outlier_events_sampled_out_total`. Results carry `sample_share`. 1: every prediction."""
    feature_scores: bool = False
    """Include per-feature scores in replies (large for images)."""
    max_batch: int = 256
    """Most instances scored in one call."""
    max_event_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest event body (or batched delivery) accepted; bigger ones get 413."""
    max_batch_events: int = 1000
    """Most events in one batched delivery (`application/cloudevents-batch+json`, which Seismo's broker
    sends to triggers with `batch`); more get 400. Answered 200 with one result (and reply) per event."""
    adversarial: bool = True
    """Check response events' embeddings for adversarial inputs (needs `adversarial_detector_path`)."""
    adversarial_detector_path: Path = EXAMPLE_DETECTORS / "adversarial"
    """A ClassMahalanobisAdversarial folder fitted on the model's embedding (`make model` fits the example's)."""
