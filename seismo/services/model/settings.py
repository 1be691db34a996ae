"""`seismo serve model`'s settings (environment prefix SEISMO_MODEL_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from seismo.config_files import one_of
from seismo.protocol.limits import DEFAULT_MAX_BODY_BYTES
from seismo.serving.runtimes import Engine
from seismo.topology import EXAMPLE_MODEL, SERVICE_PORTS

Framework = Literal["auto", "keras", "sklearn"]
LogMode = Literal["all", "request", "response"]
Overflow = Literal["drop_newest", "drop_oldest"]
OnClientError = Literal["drop", "retry"]


class ModelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_MODEL_", protected_namespaces=(), validate_by_name=True, validate_by_alias=True)

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = SERVICE_PORTS["model"]
    """Inference port."""
    grpc_port: int | None = Field(None, ge=0, le=65535)
    """Port of the Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`, KServe's
    8081 by convention; `seismo up`, compose and the manifests set it). Unset: REST only."""
    path: Path = EXAMPLE_MODEL
    """Model artifact: a folder with metadata.json, a .keras file, a SavedModel folder, or a .joblib file."""
    framework: Annotated[Framework, one_of("framework", Framework)] = "auto"
    """keras, sklearn, or auto (from metadata.json or the file name)."""
    name: str | None = None
    """Name the model is served under; default from its metadata."""
    engine: Annotated[Engine, one_of("engine", Engine)] = "auto"
    """What runs a Keras model's forward pass: tflite (TensorFlow Lite's interpreter, converted at start
    and checked against TensorFlow's outputs), tensorflow, or auto (tflite on a machine with no GPU when the
    check passes, else tensorflow). scikit-learn models ignore it."""
    embeddings: bool = True
    """Emit the model's embedding with each response event when its metadata.json configures one
    (`embedding`: layer, version, output name). Off: no embedding work at all."""
    embedding_layer: str | None = None
    """Keras layer to take the embedding from, overriding metadata.json (needs embedding_version too)."""
    embedding_version: str | None = None
    """`<model>/<space>@MAJOR.MINOR.PATCH` of that embedding, overriding metadata.json: bump it whenever the
    layer, the extraction or the weights change (`seismo embeddings check` says which part to bump)."""
    embedding_previous_path: Path | None = None
    """The artifact this model replaces: at start, both embed the previous one's probe set and a claimed
    patch (or an unchanged version) whose space moved stops the server with the check's verdict
    (`seismo embeddings check PREVIOUS PATH`)."""
    max_batch_size: int = 64
    """Most rows batched into one forward pass."""
    max_batch_wait_ms: float = 2.0
    """How long a request may wait for others to share its forward pass, under load only (when the last
    forward pass had company or requests queued behind it); an unloaded request runs at once."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body; bigger ones get 413. The broker's and the logger's event limits have the same default."""
    max_instances: int = 4096
    """Most instances (rows) in one request; more get 413."""
    max_event_bytes: int = DEFAULT_MAX_BODY_BYTES
    """The largest event the path to the store carries (the broker's and the logger's limit). With logging
    on, a request whose event would be larger once encoded for it (the broker's batches carry data in
    base64: 4/3 of the body, REST or gRPC alike) is refused up front with 413: what is answered is stored."""
    grpc_max_concurrent_rpcs: int = 16
    """gRPC calls served at once; past it a call is answered RESOURCE_EXHAUSTED at once (clients retry).
    A typed gRPC request is re-encoded as a V2 JSON body, a few times its message size in memory while it lasts."""
    sink_url: str | None = Field(default=None, validation_alias=AliasChoices("SEISMO_MODEL_SINK_URL", "K_SINK"))
    """Where request/response CloudEvents go (the broker). K_SINK works too. Unset: no logging."""
    log_mode: Annotated[LogMode, one_of("log_mode", LogMode)] = "all"
    """Which events to log: all, request or response."""
    log_queue_capacity: int = 10_000
    """Events held at most while the sink is slow or down; beyond that, drops are counted."""
    log_overflow: Annotated[Overflow, one_of("log_overflow", Overflow)] = "drop_newest"
    """When the queue is full: drop_newest or drop_oldest."""
    log_on_client_error: Annotated[OnClientError, one_of("log_on_client_error", OnClientError)] = "drop"
    """When the sink answers a 4xx (not 429): drop (counted) or retry."""
    log_concurrency: int = 16
    """Events sent at once."""
    log_batch_size: int = Field(1, ge=1, le=1000)
    """Events sent in one request at most. Above 1, events waiting in the queue go out together in
    CloudEvents' batched mode: only for Seismo's own broker (`seismo up` sets 64); Knative's broker
    ingress takes single events. A sink that refuses a batch gets single events from then on."""
    log_linger_seconds: float = Field(0.01, ge=0.0, le=1.0)
    """With batches (`log_batch_size` above 1): how long a sender waits for a batch to fill when fewer
    events are queued, so that at low load one request carries several predictions' events (0: never waits)."""
    event_source: str | None = None
    """ce-source of logged events; default http://<host>:<port>/."""
    namespace: str = "default"
    """ce-namespace of logged events."""
    endpoint: str = "default"
    """ce-endpoint of logged events."""
