"""`seismo serve logger`'s settings (environment prefix SEISMO_LOGGER_): its own, and the record
store's (seismo.store.settings), which it owns."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from seismo.embeddings.extract import DEFAULT_CONFIG as DEFAULT_EMBEDDINGS_CONFIG
from seismo.protocol.limits import DEFAULT_MAX_BODY_BYTES
from seismo.store.settings import RecordStoreSettings
from seismo.topology import SERVICE_PORTS

MAX_QUERY_LIMIT = 1000
MAX_LINEAGE_DEPTH = 32
STORE_FAILING_SECONDS = 30.0
READ_CONCURRENCY = 2  # reads in flight at once; more wait (each holds at most a page's payloads in memory)
"""Hops a lineage answer follows upstream at most (chains of models are short; a client names parents)."""


class LoggerSettings(RecordStoreSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_LOGGER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["logger"]
    """Port for events in and record reads."""
    max_event_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest event body accepted; bigger ones get 413 (the model server's body limit, so what it accepts is stored)."""
    max_batch: int = 256
    """Events folded into the store in one transaction at most."""
    max_read_bytes: int = 16 * 1024 * 1024
    """Payload bytes one records listing answers at most (`GET /v1/records` stops before the record that
    would pass it, answering at least one, and says `"truncated": true`; page on with `since`)."""
    max_batch_events: int = 1000
    """Most events in one batched delivery (`application/cloudevents-batch+json`, which Seismo's broker
    sends to triggers with `batch`); more get 400. Answered 200 with one result per event."""
    models: str = ""
    """Model names (comma-separated) counted by name in metric labels; any other name a client sends is
    counted as `other` until it has been seen 10 times (at most 20 such names)."""
    retention_seconds: float = 30 * 86400.0
    """Records, drift-log entries and dead letters older than this are removed in the background (default 30 days, as
    the metrics server's ledger: a store must not grow without bound by default); 0 keeps them forever."""
    retention_interval_seconds: float = 300.0
    """How often retention runs."""
    max_store_bytes: int = 4 * 1024**3
    """Bytes the SQLite record store may hold (default 4 GiB, under the chart's 5 GiB volume): past it,
    retention removes the oldest records until it is below again, counted as
    `seismo_logger_retention_removed_total{what="records_over_size"}`. 0: no cap. Elasticsearch: use an
    index lifecycle policy (the cluster's own size rules)."""
    embedding_reference_path: Path | None = None
    """An EmbeddingDrift folder whose reference `GET /v1/embeddings/clusters` compares production with
    (`seismo up` sets the example's). Unset: that endpoint answers 404 naming this setting."""
    embeddings_config: Path | None = DEFAULT_EMBEDDINGS_CONFIG
    """Foreign models' embedding outputs and versions (models Seismo does not serve), recorded on their
    records as Seismo's model server records its own (`embeddingversion`, `embeddingoutput`)."""
    seldon_graphs: Path | None = None
    """A YAML file of SeldonDeployment manifests: each non-root node of their graphs gets its own record
    (`<puid>:<node>`, model `<deployment>.<node>`) with its graph parent as `parentid`. Unset: every node
    of a Seldon graph folds into the puid's record (the first node's events win)."""
