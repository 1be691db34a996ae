"""What `seismo up -f seismo.yaml` runs: the declaration turned into detectors, configuration and processes.

For each declared model: its model server (when Seismo serves it), a drift and an outlier service that
watch only it, fitted on its reference unless a fit newer than the reference is already in the data
directory, and broker triggers that send them exactly its events; one logger, metrics server and broker
for all. The generated files (triggers, metrics configuration, detectors) live under
`<data dir>/declared/`, so a restart reuses them.

Ports: the first model keeps the service table's (and the model server's gRPC port under `seismo up`);
the n-th model after it gets 8100 + 10 (n - 1) for its model server, +1 outlier, +2 drift. `--port-offset`
moves every port.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from seismo.declaration import METRIC_TYPES, Declaration, ModelDeclaration
from seismo.local import LOCAL_GRPC_PORT
from seismo.topology import SERVICE_PORTS

CORE = ("logger", "metrics", "broker")
FIRST_PORTS = {name: SERVICE_PORTS[name] for name in ("model", "outlier", "drift")}
GRPC_PORT = LOCAL_GRPC_PORT
TRIGGERS = Path(__file__).resolve().parent / "config" / "triggers.yaml"
MAX_QUALITY_FEATURES = 1000
"""A declared model whose inputs have at most this many values gets data-quality counts unless it says `quality: false`
(an image's pixels would make every request's JSON parsed in the metrics server for little: its embedding checks watch it)."""


@dataclass
class DeclaredStack:
    """The LocalStack arguments for a declaration, and what to tell the user before it starts."""

    services: tuple[str, ...]
    ports: dict[str, int]
    commands: dict[str, list[str]]
    service_env: dict[str, dict[str, str]]
    env: dict[str, str]
    grpc_service: str | None
    warnings: list[str] = field(default_factory=list)


def ports_for(declaration: Declaration, offset: int = 0) -> dict[str, int]:
    ports = {name: SERVICE_PORTS[name] + offset for name in CORE}
    for i, model in enumerate(declaration.models):
        for j, role in enumerate(("model", "outlier", "drift")):
            ports[f"{role}-{model.name}"] = (FIRST_PORTS[role] if i == 0 else 8100 + 10 * (i - 1) + j) + offset
    return ports


def _fresh(folder: Path, reference: Path) -> bool:
    config = folder / "config.json"
    return config.exists() and config.stat().st_mtime >= reference.stat().st_mtime


def embedding_configured(model: ModelDeclaration) -> bool:
    """Whether the drift service watches the model's own embedding: as declared (`embedding:`), else when
    Seismo serves it from an artifact whose metadata.json names an embedding output (its responses then
    carry the embedding)."""
    if model.embedding is not None:
        return model.embedding
    metadata = model.artifact / "metadata.json" if model.artifact is not None and model.artifact.is_dir() else None
    if metadata is None or not metadata.exists():
        return False
    try:
        return bool(json.loads(metadata.read_text()).get("embedding"))
    except (OSError, ValueError):
        return False


def fit_detectors(model: ModelDeclaration, folder: Path, step: Callable[[str], None]) -> np.ndarray:
    """The model's reference as an array, with its drift and outlier detectors fitted into `folder` when
    missing or older than the reference (images: through a 32-dimensional untrained autoencoder), and
    an embedding drift detector when the model has an embedding output."""
    from seismo.fit import fit_and_save, read_reference

    folder.mkdir(parents=True, exist_ok=True)
    data = read_reference(model.reference)
    np.save(folder / "reference.npy", data)  # the diagnosis compares production with it
    images = data.ndim > 2
    for what, watch in (("drift", "drift"), ("outlier", "outliers")):
        if watch not in model.watches():
            continue
        if _fresh(folder / what, model.reference):
            step(f"{model.name}: {what} detector up to date in {folder / what}")
            continue
        step(f"{model.name}: fitting its {what} detector on {model.reference} ({len(data)} rows)")
        fit_and_save(what, model.reference, folder / what, preprocess="uae:32" if images else ("pca:32" if what == "outlier" and data.ndim == 2
                                                                                              and data.shape[1] > 64 else "none"))
    if "drift" in model.watches() and embedding_configured(model):
        if _fresh(folder / "embedding", model.reference):
            step(f"{model.name}: embedding drift detector up to date in {folder / 'embedding'}")
        else:
            step(f"{model.name}: embedding the reference with its own embedding output, fitting embedding drift")
            fit_and_save("embedding", model.reference, folder / "embedding", model=model.artifact)
    return data


def metrics_config(declaration: Declaration, folders: dict[str, Path]) -> dict:
    models = {}
    for model in declaration.models:
        if not {"performance", "diagnosis"} & set(model.watches()):
            continue
        spec: dict = {"type": METRIC_TYPES[model.task]}
        if model.feature_names:
            spec["features"] = model.feature_names
        if model.cohorts:
            spec["cohorts"] = [c.model_dump() for c in model.cohorts]
        if model.business is not None:
            spec["business"] = model.business.model_dump(exclude_none=True)
        # Relative to metrics.yaml's folder, as the metrics server reads its paths (the data directory's own path,
        # relative to the working directory, was read as declared/.seismo/declared/...: no reference found).
        reference = f"{model.name}/reference.npy"
        if "diagnosis" in model.watches():
            spec["diagnosis"] = {"reference": reference}
        quality = model.quality
        if quality is None:  # tabular inputs: each request's values against the reference's schema
            quality = int(np.prod(np.load(folders[model.name] / "reference.npy", mmap_mode="r").shape[1:])) <= MAX_QUALITY_FEATURES
        if quality:
            spec["quality"] = {"reference": reference}
        models[model.name] = spec
    return {"models": models}


def triggers(declaration: Declaration, urls: dict[str, str]) -> dict:
    """The default triggers to the logger and the metrics server, and per model: its request events to its
    outlier and drift services (their replies go back through the broker to the logger)."""
    shared = [t for t in yaml.safe_load(TRIGGERS.read_text())["triggers"]
              if not any(f"SEISMO_{role}_URL" in t["subscriber"]["uri"] for role in ("OUTLIER", "DRIFT"))]
    per_model = []
    for model in declaration.models:
        for role, watch, timeout in (("outlier", "outliers", "PT30S"), ("drift", "drift", "PT60S")):
            if watch not in model.watches():
                continue
            events = [("kserve", "org.kubeflow.serving.inference.request"), ("seldon", "io.seldon.serving.inference.request")]
            if role == "drift" and embedding_configured(model):  # its responses carry the embedding the drift service watches
                events += [("kserve-response", "org.kubeflow.serving.inference.response"),
                           ("seldon-response", "io.seldon.serving.inference.response")]
            for engine, event_type in events:
                per_model.append({
                    "name": f"{role}-{model.name}-{engine}" + ("" if engine.endswith("response") else "-request"),
                    "filter": {"attributes": {"type": event_type, "inferenceservicename": model.name}},
                    "subscriber": {"uri": urls[f"{role}-{model.name}"] + "/"},
                    "delivery": {"retry": 6, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S", "timeout": timeout},
                    "batch": 64, "replies": role})
    return {"triggers": shared + per_model}


def prepare(declaration: Declaration, data_dir: Path, host: str = "127.0.0.1", offset: int = 0,
            step: Callable[[str], None] = print) -> DeclaredStack:
    """Fit what is missing and write the configuration; the processes to start and their settings."""
    ports = ports_for(declaration, offset)
    urls = {name: f"http://{host}:{port}" for name, port in ports.items()}
    root = data_dir / "declared"
    folders = {m.name: root / m.name for m in declaration.models}
    for model in declaration.models:
        fit_detectors(model, folders[model.name], step)
    (root / "metrics.yaml").write_text(yaml.safe_dump(metrics_config(declaration, folders), sort_keys=False))
    (root / "triggers.yaml").write_text(yaml.safe_dump(triggers(declaration, urls), sort_keys=False))

    services: list[str] = ["logger"]
    commands: dict[str, list[str]] = {}
    service_env: dict[str, dict[str, str]] = {}
    warnings = []
    for model in declaration.models:
        watched = model.watches()
        if not watched:
            warnings.append(f"model {model.name!r} is declared with an empty watch list: its events are stored, nothing else watches it")
        if "outliers" in watched:
            name = f"outlier-{model.name}"
            services.append(name)
            commands[name] = ["outlier", "--detector-path", str(folders[model.name] / "outlier")]
            service_env[name] = {"SEISMO_OUTLIER_MODEL": model.name, "SEISMO_OUTLIER_INPUT_DETECTOR": "true"}
        if "drift" in watched:
            name = f"drift-{model.name}"
            services.append(name)
            commands[name] = ["drift", "--detector-path", str(folders[model.name] / "drift")]
            # the broker sends a declared model's requests to its detectors whatever SEISMO_BROKER_INPUT_DETECTORS says
            service_env[name] = {"SEISMO_DRIFT_MODEL": model.name, "SEISMO_DRIFT_WINDOW_SIZE": str(model.window),
                                 "SEISMO_DRIFT_INPUT_DETECTOR": "true"}
            if embedding_configured(model):
                service_env[name]["SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH"] = str(folders[model.name] / "embedding")
        if model.endpoint is not None:
            warnings.append(f"model {model.name!r} is served at {model.endpoint}: its server must log its events to the broker, "
                            f"{urls['broker']}/ (KServe: spec.predictor.logger.url; Seldon: the executor's request logger)")
    services += ["metrics", "broker"]
    grpc_service = None
    for model in declaration.models:
        if model.served_here:
            name = f"model-{model.name}"
            services.append(name)
            commands[name] = ["model", "--model-path", str(model.artifact), "--model-name", model.name]
            grpc_service = grpc_service or name
    for name in [n for n in ports if n not in services]:
        del ports[name]
    env = {"SEISMO_LOGGER_MODELS": ",".join(m.name for m in declaration.models),
           "SEISMO_METRICS_CONFIG_FILE": str(root / "metrics.yaml"), "SEISMO_BROKER_TRIGGERS_FILE": str(root / "triggers.yaml"),
           # the example's embedding detector and clusters belong to the example model, not to these
           "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH": "", "SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH": ""}
    return DeclaredStack(tuple(services), ports, commands, service_env, env, grpc_service, warnings)
