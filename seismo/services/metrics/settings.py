"""`seismo serve metrics`'s settings (environment prefix SEISMO_METRICS_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from seismo.store.settings import StoreSettings
from seismo.topology import CONFIG_DIR, SERVICE_PORTS, data_dir

EXAMPLE_CONFIG = CONFIG_DIR / "metrics.yaml"


class MetricsSettings(StoreSettings):
    """The store settings name the logger's record store, read to join feedback by prediction id."""

    model_config = SettingsConfigDict(env_prefix="SEISMO_METRICS_", validate_by_name=True, validate_by_alias=True)

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["metrics"]
    """Port for feedback, events and performance reads."""
    config_file: Path = EXAMPLE_CONFIG
    """YAML with each model's metric type, threshold, features and cohort rules."""
    state_path: Path = Field(default_factory=lambda: data_dir() / "metrics.db")
    """SQLite file with scored feedback, pending feedback and the predictions read for estimation (with a
    PostgreSQL URL set, they are in that database's `seismo_metrics` schema instead, shared by every replica)."""
    window: str = "1h"
    """The gauges' sliding window: a duration (30s, 15m, 1h, 7d) or a count of newest instances (1000)."""
    pending_ttl_seconds: float = 86400.0
    """How long feedback waits for its prediction to be stored before it is counted as orphaned."""
    late_after_seconds: float = 3600.0
    """Truth arriving later than this after its prediction is counted as late."""
    max_calibration_error: float = 0.05
    """Estimates are flagged unreliable when the expected calibration error on labelled rows exceeds this by more
    than chance explains at that number of rows (a consistency-resampling test at 1 %)."""
    join_interval_seconds: float = 1.0
    """How often pending feedback is matched against the store."""
    scan_interval_seconds: float = 2.0
    """How often newly logged predictions are read for estimation."""
    scan_settle_seconds: float = 1.0
    """Predictions are read once this old, so their response event has been stored too."""
    scan_wait_seconds: float = Field(300.0, gt=0)
    """A prediction read before its response was stored is looked up again on every scan until it is this
    old (then counted in `seismo_metrics_feedback_rejected_total{reason="no_response"}`)."""
    refresh_interval_seconds: float = 5.0
    """How often the windowed gauges are recomputed."""
    max_cohorts: int = 50
    """Cohort label values per model exported to Prometheus beyond `all` and the configured rules' cohorts; more are `other`."""
    cohort_admit_after: int = 10
    """A cohort named only by feedback or a header becomes a label value after this many scored instances."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest feedback body accepted; bigger ones get 413."""
    max_feedback_batch: int = Field(1000, ge=1)
    """Most feedback objects in one `POST /feedback` JSON array; more get 413."""
    retention_seconds: float = 30 * 86400.0
    """Scored truth and predictions read for estimation older than this leave the ledger (0: kept forever)."""
    diagnosis_interval_seconds: float = 60.0
    """How often every configured model is diagnosed for the seismo_diagnosis_* gauges (0: only on request)."""
    diagnosis_lookback: str = "7d"
    """The range the periodic diagnosis covers (GET /v1/diagnosis takes its own `since`)."""
    sink_url: str | None = Field(default=None, validation_alias=AliasChoices("SEISMO_METRICS_SINK_URL", "K_SINK"))
    """Where the data-quality findings go as `io.seismo.inference.quality` events (the broker, which hands them to
    the logger for the records' `quality` annotation). K_SINK works too. Unset: the findings are only counted."""
    seldon_graphs: Path | None = None
    """The SeldonDeployment manifests the logger reads (its `SEISMO_LOGGER_SELDON_GRAPHS`): Seldon feedback
    events of a graph node whose `<deployment>.<node>` model is configured here score that node's record."""
