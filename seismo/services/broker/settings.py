"""`seismo serve broker`'s settings (environment prefix SEISMO_BROKER_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from seismo.config_files import one_of
from seismo.protocol.limits import DEFAULT_MAX_BODY_BYTES
from seismo.topology import CONFIG_DIR, SERVICE_PORTS, data_dir

DEFAULT_TRIGGERS = CONFIG_DIR / "triggers.yaml"
INPUT_TRIGGERS = CONFIG_DIR / "triggers-inputs.yaml"


Synchronous = Literal["full", "normal"]


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_BROKER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["broker"]
    """Ingress and API port."""
    triggers_file: Path = DEFAULT_TRIGGERS
    """YAML file of triggers (Knative Trigger spec shape)."""
    input_detectors: bool = False
    """Also deliver the watched model's request events to the outlier and drift services' input detectors
    (seismo/config/triggers-inputs.yaml; for the example image model a VAE and an untrained autoencoder + KS
    on its pixels: a second network on every image, about three times the cost, docs/performance.md). Off:
    the detectors read the embedding the model's responses carry (adversarial check, embedding drift), which
    caught every corruption the pixel detectors caught in the demo. Only with the shipped trigger file: a
    `triggers_file` of one's own lists every trigger it wants."""
    journal_path: Path = Field(default_factory=lambda: data_dir() / "broker.db")
    """SQLite file holding events until every matching trigger has them."""
    synchronous: Annotated[Synchronous, one_of("synchronous", Synchronous)] = "full"
    """SQLite synchronous mode: `full` survives power loss, `normal` only a process crash (faster)."""
    max_event_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body accepted (one event, or one batch of them); bigger ones get 413."""
    max_batch_events: int = 1000
    """Most events in one batched request (`application/cloudevents-batch+json`, which Seismo's model
    server sends when SEISMO_MODEL_LOG_BATCH_SIZE > 1); more get 400. Answered 200 with one result per event."""
    delivery_concurrency: int = 32
    """Deliveries in flight at once, per trigger."""
    replicas: str | None = None
    """Subscribers with several replicas (`seismo up --replicas` sets it): `BASE_URL=OTHER_URL[,...]` per subscriber,
    `;` between them; each delivery goes to the next replica in turn, as a Kubernetes Service spreads them."""
    max_backoff_seconds: float = 60.0
    """Cap on the wait between retries, whatever the backoff policy computes."""
    poll_interval_seconds: float = 0.25
    """How often an idle trigger looks for retries that came due."""
    max_journal_bytes: int = 2 * 1024**3
    """Journal size (bytes in use) at which the ingress answers 503 instead of accepting more events."""
    dead_letter_retention_seconds: float = 7 * 86400.0
    """Dead letters kept in the journal's table are removed this long after they died."""
    max_dead_letters: int = 100_000
    """Most dead letters kept in the table; the oldest beyond this are removed."""
    max_dead_letter_bytes: int = 256 * 1024**2
    """Bytes of events the dead-letter table may hold, apart from the live journal; beyond it (and
    whenever the journal is full) the oldest dead letters are shed first, so events no subscriber took
    can never fill the journal and stop the ingress. Counted as
    `seismo_broker_retention_removed_total{what="dead_letters_shed"}`."""
