"""Run Seismo's services as separate local processes: what `seismo up`, the demo and the tests use.

Each service is `python -m seismo serve <name>` (exactly what a container runs), with its log in
`<data dir>/logs/<name>.log`. Start order follows the event flow backwards (logger and detectors,
then broker, then model),
so nothing is sent before its receiver listens; stop order follows it forwards, so the model server
drains its event queue into a broker that is still up.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from seismo.probes import free_port
from seismo.services.common import PortInUse, check_port_free
from seismo.topology import EXAMPLE_DETECTORS, EXAMPLE_TABULAR_MODEL, SERVICE_PORTS
from seismo.topology import SERVICES as DEPLOYED

# What pydantic reads as true in a boolean setting (the services' settings parse these variables).
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})

# The service table's start order, with the example tabular model as a second model server right after the first.
SERVICES = tuple(name for service in DEPLOYED for name in ((service, "tabular") if service == "model" else (service,)))

# Local services that run another service's command: the example tabular model is a second model server.
TABULAR_MODEL = EXAMPLE_TABULAR_MODEL
COMMANDS = {"tabular": ["model", "--model-path", str(TABULAR_MODEL), "--model-name", "tabular-classifier"]}
LOCAL_PORTS = {"tabular": 8081}
LOCAL_GRPC_PORT = 8082
"""The image model server's gRPC port under `seismo up` (8081, KServe's convention and the manifests', is
the tabular model server's REST port here)."""


def free_ports(names: tuple[str, ...] = SERVICES) -> dict[str, int]:
    """A free loopback port for each service (tests, benchmarks, several stacks side by side)."""
    return {name: free_port() for name in names}


def configured_ports() -> dict[str, int]:
    """Each service's port: SEISMO_<SERVICE>_PORT when set (as `seismo serve` reads it), else its default."""
    ports = {**SERVICE_PORTS, **LOCAL_PORTS}
    return {name: int(os.environ.get(f"SEISMO_{name.upper()}_PORT", port)) for name, port in ports.items()}


EXAMPLE_NAME = "image-classifier"
"""The example model the embedding defaults belong to."""

class StartupError(RuntimeError):
    pass


REPLICABLE = ("logger", "outlier", "drift", "metrics")
"""Services `seismo up --replicas` may run several of; the stateful ones (all but outlier) need PostgreSQL."""
SHARED_STATE = ("logger", "drift", "metrics")


def parse_replicas(text: str | None) -> dict[str, int]:
    """`drift=3,metrics=2` -> {"drift": 3, "metrics": 2}; ValueError naming what is wrong."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, count = part.partition("=")
        if name not in REPLICABLE:
            raise ValueError(f"--replicas {part!r}: the services that may have replicas are {', '.join(REPLICABLE)}")
        if not count.isdigit() or not 1 <= int(count) <= 16:
            raise ValueError(f"--replicas {part!r}: a count from 1 to 16 after '='")
        counts[name] = int(count)
    return counts


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux), so no service outlives `seismo up`."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: stop() still stops them on a normal exit


@dataclass
class ServiceProcess:
    name: str
    port: int
    host: str
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class LocalStack:
    data_dir: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=configured_ports)
    services: tuple[str, ...] = SERVICES
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 180.0
    grpc_port: int | None = None
    """The image model server's gRPC port (`seismo up`: SEISMO_MODEL_GRPC_PORT or 8082); None: REST only."""
    grpc_service: str = "model"
    """Which model server gets the gRPC port."""
    commands: dict[str, list[str]] = field(default_factory=dict)
    """`seismo serve` arguments per service, where they are not the service's own name (a declared stack)."""
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Settings for one service only (a declared stack's detector for one model)."""
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    _senders: str = ""

    def add_replicas(self, counts: dict[str, int], postgres_url: str | None) -> None:
        """Run `counts[name]` processes of each named service instead of one, each on a free port with a data
        directory of its own (nothing shared but the database); the broker spreads deliveries over them.
        The stateful services' replicas share `postgres_url` (ValueError without one)."""
        needs = sorted(name for name, n in counts.items() if n > 1 and name in SHARED_STATE)
        if needs and not postgres_url:
            raise ValueError(f"replicas of {', '.join(needs)} share their state in PostgreSQL: give --postgres postgresql://...")
        if postgres_url:
            for name in SHARED_STATE:
                self.env[f"SEISMO_{name.upper()}_POSTGRES_URL"] = postgres_url
        spread = []
        services = list(self.services)
        for name, count in counts.items():
            if name not in services or count < 2:
                continue
            extras = [f"{name}-{k}" for k in range(2, count + 1)]
            for extra in extras:
                self.ports[extra] = free_port()
                self.commands[extra] = self.commands.get(name) or COMMANDS.get(name, [name])
                self.service_env[extra] = {**self.service_env.get(name, {}), "SEISMO_DATA_DIR": str(self.data_dir / "replicas" / extra)}
            services[services.index(name) + 1:services.index(name) + 1] = extras
            spread.append(f"{self.url(name)}=" + ",".join(self.url(extra) for extra in extras))
        self.services = tuple(services)
        if spread:
            self.env["SEISMO_BROKER_REPLICAS"] = ";".join(spread)

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.ports[name]}"

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(SEISMO_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
        # where the broker's triggers deliver, and where the explainer finds the model servers
        for name in (*(s.name for s in DEPLOYED.values() if s.receives_events), "model", "tabular"):
            if name in self.ports:
                env[f"SEISMO_{name.upper()}_URL"] = self.url(name)
        if "broker" in self.ports:
            env["SEISMO_MODEL_SINK_URL"] = env["SEISMO_DRIFT_SINK_URL"] = env["SEISMO_METRICS_SINK_URL"] = self.url("broker") + "/"
            # Seismo's broker takes batched requests: fewer HTTP exchanges per prediction under load
            env.setdefault("SEISMO_MODEL_LOG_BATCH_SIZE", "64")
        # embedding drift on the example classifier's penultimate layer, when `make model` fitted its detector
        # and the drift service watches that model (another model's responses carry no such embedding: every
        # one would be refused). An empty value turns the embedding detector off.
        given = {**env, **self.env}  # what the caller's environment and this stack's own settings name
        if (EXAMPLE_DETECTORS / "embedding" / "config.json").exists() and given.get("SEISMO_DRIFT_MODEL", EXAMPLE_NAME) == EXAMPLE_NAME:
            env.setdefault("SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH", str(EXAMPLE_DETECTORS / "embedding"))
            if given.get("SEISMO_MODEL_NAME", EXAMPLE_NAME) == EXAMPLE_NAME:
                env.setdefault("SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH", str(EXAMPLE_DETECTORS / "embedding"))
        # the example models keep their names as metric labels; other names are bounded (seismo.labels)
        env.setdefault("SEISMO_LOGGER_MODELS", "image-classifier,tabular-classifier")
        env.update(self.env)
        for name in ("SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH", "SEISMO_LOGGER_EMBEDDING_REFERENCE_PATH"):
            if env.get(name) == "":
                del env[name]
        # While the broker sends the detectors no requests, their input detectors (the example's VAE and
        # autoencoder) are not loaded: no TensorFlow in those two processes. A declared stack's detectors say
        # their own (seismo.declared_stack).
        if env.get("SEISMO_BROKER_INPUT_DETECTORS", "").strip().lower() not in TRUE_WORDS:
            if env.get("SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH"):
                env.setdefault("SEISMO_DRIFT_INPUT_DETECTOR", "false")
            if env.get("SEISMO_OUTLIER_ADVERSARIAL", "true").strip().lower() in TRUE_WORDS:
                env.setdefault("SEISMO_OUTLIER_INPUT_DETECTOR", "false")
        # Auth on: the services send their events with sender tokens of their own (seismo.services.senders),
        # made up for this stack unless the caller names them.
        if (env.get("SEISMO_AUTH_TOKENS") or env.get("SEISMO_AUTH_TOKENS_FILE")) and not (
                env.get("SEISMO_AUTH_SENDERS") or env.get("SEISMO_AUTH_SENDERS_FILE")):
            if not self._senders:
                self._senders = ",".join(f"{who}={secrets.token_urlsafe(24)}" for who in ("model", "broker", "drift", "outlier", "feedback", "metrics"))
            env["SEISMO_AUTH_SENDERS"] = self._senders
        return env

    def start(self, progress=None) -> None:
        for name in self.services:
            check_port_free(self.host, self.ports[name], name)  # all before any starts: one clear error
        if self.grpc_port is not None and self.grpc_service in self.services:
            check_port_free(self.host, self.grpc_port, "model (gRPC)")
        try:
            for name in self.services:
                self.start_service(name)
            for name in self.services:
                self.wait_ready(name, progress)
        except BaseException:
            self.stop()
            raise

    def start_service(self, name: str, arguments: list[str] | None = None) -> ServiceProcess:
        """Start one service: `arguments` to `seismo serve` (default: the service's own), on `ports[name]`."""
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
        serve = arguments or self.commands.get(name) or COMMANDS.get(name, [name])
        command = [sys.executable, "-m", "seismo", "serve", *serve, "--host", self.host, "--port", str(self.ports[name])]
        env = self.child_env()
        env.update(self.service_env.get(name, {}))
        env.pop("SEISMO_MODEL_GRPC_PORT", None)  # only the image model server gets one (the tabular one runs the same command)
        if name == self.grpc_service and self.grpc_port is not None:
            env["SEISMO_MODEL_GRPC_PORT"] = str(self.grpc_port)
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True, preexec_fn=_die_with_parent)
        log_file.close()
        self.processes[name] = ServiceProcess(name, self.ports[name], self.host, process, log_path)
        return self.processes[name]

    def wait_ready(self, name: str, progress=None, timeout: float | None = None) -> float:
        """Seconds until /readyz answered 200; StartupError with the log tail if the process died."""
        service = self.processes[name]
        started = time.perf_counter()
        deadline = started + (timeout or self.ready_timeout)
        while time.perf_counter() < deadline:
            if service.process.poll() is not None:
                raise StartupError(f"{name} exited with code {service.process.returncode}; its log ends:\n{service.log_tail()}")
            try:
                if httpx.get(f"{service.url}/readyz", timeout=1.0).status_code == 200:
                    if progress:
                        progress(name)
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise StartupError(f"{name} was not ready within {timeout or self.ready_timeout:.0f}s; its log ends:\n{service.log_tail()}")

    def stop_service(self, name: str, timeout: float = 20.0) -> None:
        service = self.processes.pop(name, None)
        if service is None or service.process.poll() is not None:
            return
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()

    def kill_service(self, name: str) -> None:
        """SIGKILL: a crash, for tests of what survives one."""
        service = self.processes.pop(name)
        service.process.kill()
        service.process.wait()

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop_service(name)

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def unwatched_warnings(env: dict[str, str] | None = None) -> list[str]:
    """What plain `seismo up` serves that nothing watches: the drift and outlier services and the metrics
    server each follow one configured set of models, and a model outside it is served and stored with no
    word (`seismo up -f` declares both sides at once)."""
    import yaml

    from seismo.topology import CONFIG_DIR

    env = dict(os.environ) if env is None else env
    served = env.get("SEISMO_MODEL_NAME") or EXAMPLE_NAME
    watched = {"the drift service": env.get("SEISMO_DRIFT_MODEL") or EXAMPLE_NAME,
               "the outlier service": env.get("SEISMO_OUTLIER_MODEL") or EXAMPLE_NAME}
    warnings = [f"model {served!r} is served but {who} watches {model!r} (set SEISMO_{who.split()[1].upper()}_MODEL, or use `seismo up -f`)"
                for who, model in watched.items() if model != served]
    config = Path(env.get("SEISMO_METRICS_CONFIG_FILE") or CONFIG_DIR / "metrics.yaml")
    try:
        configured = (yaml.safe_load(config.read_text()) or {}).get("models") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        configured = {}
    if served not in configured:
        warnings.append(f"model {served!r} has no entry in the metrics configuration {config}: feedback for it is refused and it gets "
                        "no performance or diagnosis (add one, or use `seismo up -f`)")
    return warnings


def table(stack: LocalStack) -> str:
    rows = [("service", "url", "metrics", "log")]
    for name in stack.services:
        rows.append((name, stack.url(name), f"{stack.url(name)}/metrics", str(stack.data_dir / "logs" / f"{name}.log")))
        if name == stack.grpc_service and stack.grpc_port is not None:
            rows.append((f"{name} (gRPC)", f"{stack.host}:{stack.grpc_port}", "", "(same log)"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


__all__ = ["LocalStack", "PortInUse", "StartupError", "free_ports", "parse_replicas", "table"]
