"""`seismo serve explainer`'s settings (environment prefix SEISMO_EXPLAINER_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from seismo.protocol.limits import DEFAULT_MAX_BODY_BYTES
from seismo.topology import CONFIG_DIR, SERVICE_PORTS

EXAMPLE_CONFIG = CONFIG_DIR / "explainer.yaml"


class ExplainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_EXPLAINER_")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["explainer"]
    """Port for explain requests."""
    config_file: Path = EXAMPLE_CONFIG
    """YAML naming each explained model: kind (tabular or image), model server URL, reference data."""
    max_model_calls: int = 20000
    """Most instances one explanation may send to the model (a request may ask for fewer)."""
    max_seconds: float = 30.0
    """Longest one explanation may run (a request may ask for less); then the best anchor so far is returned."""
    threshold: float = 0.95
    """Default anchor precision target."""
    concurrency: int = 2
    """Explanations computed at once; more wait their turn."""
    max_queued: int = 8
    """Explanations waiting for a turn at most; beyond that a request gets 429 with Retry-After."""
    max_rows_per_request: int = 256
    """Most perturbed instances sent to the model server in one HTTP request."""
    model_timeout_seconds: float = 30.0
    """Timeout of one request to the model server."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body accepted; bigger ones get 413."""
