"""Where things are: the services and their ports, the data directory, the shipped examples, `${VAR}` expansion.

Neutral ground under every layer: settings classes, the local stack, the CLI and manifests/build.py read
it, and it imports nothing of Seismo, so none of them has to reach into another layer for a constant.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Service:
    """One deployable service: `seismo serve <name>`, one container, one Deployment."""

    name: str
    port: int
    """Default port (settings, containers, manifests, compose)."""
    module: str
    """Package with `create_app(settings, registry)` (seismo.services.<name>); imported only when that
    service runs, so the broker and the logger never import TensorFlow."""
    settings: str
    """Its pydantic-settings class (env prefix SEISMO_<NAME>_)."""
    extras: str = ""
    """The pyproject extra its image installs (`docker build --build-arg EXTRAS=...`); "" for none."""
    grpc_port: int | None = None
    """A second port, for the Open Inference Protocol's gRPC service."""
    gpu: bool = False
    """Has a CUDA image (`EXTRAS=gpu`, tag suffix -gpu) for GPU node pools."""
    receives_events: bool = False
    """The broker delivers events to it (its triggers' subscriber)."""


SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        # In the order `seismo up` starts them: subscribers first, then the broker that delivers to
        # them, the model server that sends to it, and the explainer that calls the model server.
        Service("logger", 8091, "seismo.services.logger", "LoggerSettings", "elasticsearch", receives_events=True),
        Service("outlier", 8092, "seismo.services.outlier", "OutlierSettings", "model", gpu=True, receives_events=True),
        Service("drift", 8093, "seismo.services.drift", "DriftSettings", "model", receives_events=True),
        Service("metrics", 8094, "seismo.services.metrics", "MetricsSettings", "elasticsearch", receives_events=True),
        Service("broker", 8090, "seismo.services.broker", "BrokerSettings"),
        Service("model", 8080, "seismo.services.model", "ModelSettings", "model", grpc_port=8081, gpu=True),
        Service("explainer", 8095, "seismo.services.explainer", "ExplainerSettings", "explain"),
    )
}
SERVICE_PORTS: dict[str, int] = {name: service.port for name, service in SERVICES.items()}

CONFIG_DIR = Path(__file__).resolve().parent / "config"
"""The example config files shipped inside the package (triggers, metrics, explainer)."""


def _example_artifacts() -> Path:
    """SEISMO_EXAMPLE_ARTIFACTS when set; run from a source checkout (pyproject.toml and models/ beside the
    package), the checkout's models/artifacts, where `make model` trains; installed, <data dir>/artifacts.
    An installed package never looks outside itself and the data directory."""
    if configured := os.environ.get("SEISMO_EXAMPLE_ARTIFACTS"):
        return Path(configured)
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "models" / "__init__.py").is_file():
        return checkout / "models" / "artifacts"
    return data_dir() / "artifacts"


def data_dir() -> Path:
    """Where local state lives: SEISMO_DATA_DIR, default `.seismo/` in the working directory."""
    return Path(os.environ.get("SEISMO_DATA_DIR", ".seismo"))


EXAMPLE_ARTIFACTS = _example_artifacts()
"""What `make model` trains and fits: the example models and detectors."""
EXAMPLE_MODEL = EXAMPLE_ARTIFACTS / "image-classifier"
EXAMPLE_TABULAR_MODEL = EXAMPLE_ARTIFACTS / "tabular-classifier"
EXAMPLE_DETECTORS = EXAMPLE_ARTIFACTS / "detectors"


_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def expand_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """`${VAR}` and `${VAR:-default}` substituted from `env` (the process environment by default).

    The config files (triggers, explainer, metrics) use it so one file serves the local stack and compose;
    `${SEISMO_EXAMPLE_ARTIFACTS}` is the example artifacts' folder when the environment does not name one."""
    env = os.environ if env is None else env
    fallback = {"SEISMO_EXAMPLE_ARTIFACTS": str(EXAMPLE_ARTIFACTS)}
    return _ENV.sub(lambda m: env.get(m["name"], m["default"] if m["default"] is not None else fallback.get(m["name"], "")), text)
