"""Real HTTP peers for tests: servers on free loopback ports, run in a thread or as processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo import probes

REPO = Path(__file__).resolve().parents[1]
free_port = probes.free_port
metric_values = probes.metric_values
scrape = probes.scrape_text


class ThreadServer:
    """uvicorn serving an ASGI app in a background thread, on a real socket."""

    def __init__(self, app, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"test server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def __enter__(self) -> ThreadServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingSink:
    """A CloudEvents sink that records what it gets; it can fail its first N requests, or all."""

    fail_first: int = 0
    fail_status: int = 503
    always_status: int | None = None
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    attempts: int = 0

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            body = await request.body()
            self.attempts += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.always_status is not None:
                return Response(status_code=self.always_status, content=b"refused by test sink")
            if self.attempts <= self.fail_first:
                return Response(status_code=self.fail_status, content=b"failing on purpose")
            self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
            return Response(status_code=202)

        return Starlette(routes=[Route("/", handle, methods=["POST"]), Route("/{path:path}", handle, methods=["POST"])])


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    return probes.wait_until(predicate, timeout, interval, message, error=AssertionError)


def metric_sum(text: str, name: str, **labels: str) -> float:
    return sum(v for k, v in metric_values(text, name).items() if all((key, val) in k for key, val in labels.items()))


def start_service(name: str, port: int, env: dict[str, str], log_path: Path, extra: list[str] | None = None) -> subprocess.Popen:
    """`python -m seismo serve NAME` as a real process, with its output in log_path."""
    import os

    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "seismo", "serve", name, "--port", str(port), *(extra or [])],
            stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=REPO,
        )


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 120.0, log_path: Path | None = None) -> None:
    def ready() -> bool:
        if process is not None and process.poll() is not None:
            tail = log_path.read_text()[-3000:] if log_path else ""
            raise AssertionError(f"service at {url} exited with {process.returncode}:\n{tail}")
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout, message=f"{url}/readyz")


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServedApp:
    """An app on a real loopback socket with a sync client: `with ServedApp(app) as client: ...`."""

    def __init__(self, app):
        self.server = ThreadServer(app)

    def __enter__(self) -> httpx.Client:
        self.server.start()
        self.client = httpx.Client(base_url=self.server.url, timeout=30)
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.stop()


def run_cli(*args) -> subprocess.CompletedProcess:
    """`seismo ARGS` in this process: the same parser, command, output and exit code as the installed
    command, without a new interpreter importing TensorFlow (seconds each). For tests where the process
    boundary is not what is tested (tests/integration/test_cli.py starts the real command)."""
    import contextlib
    import io

    from seismo.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse's errors, and commands that exit with a message
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return subprocess.CompletedProcess(["seismo", *map(str, args)], code, out.getvalue(), err.getvalue())


def load_script(path: Path):
    """A repository script that is not in a package (dashboards/build.py, manifests/build.py, ...) as a module."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"script_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (dashboards/build.py's Spec) look their module up there
    spec.loader.exec_module(module)
    return module


def service_at(port: int) -> str:
    """The service `seismo up` runs on a default port (the tabular model server is a model server)."""
    from seismo.local import LOCAL_PORTS
    from seismo.topology import SERVICE_PORTS

    by_port = {p: name for name, p in {**SERVICE_PORTS, **LOCAL_PORTS}.items()}
    return "model" if by_port[port] == "tabular" else by_port[port]


def doc_pages() -> list[Path]:
    """The README, then every page of the docs site in its nav order (mkdocs.yml): where examples live."""
    import re

    root = Path(__file__).resolve().parents[1]
    nav = re.findall(r":\s*(\S+\.md)\s*$", (root / "mkdocs.yml").read_text(), re.M)
    return [root / "README.md", *(root / "docs" / page for page in nav)]


def doc_curls() -> list[tuple[str, str, str | None]]:
    """(url, method, body or None) of each curl command in the shell blocks of the README and the docs
    (in that order), `<prediction id>` written as PREDICTION_ID."""
    import re
    import shlex

    commands = []
    for page in doc_pages():
        for block in re.findall(r"```sh\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if "curl " not in line:
                    continue
                line = line.replace("<prediction id>", "PREDICTION_ID")
                words = shlex.split(line[line.index("curl "):].split(" | ")[0], comments=True)
                url = next(w for w in words[1:] if "localhost:" in w)
                data = words[words.index("-d") + 1] if "-d" in words else None
                method = words[words.index("-X") + 1] if "-X" in words else ("POST" if data is not None else "GET")
                commands.append((url, method, data))
    return commands


def operation_for(doc: dict, method: str, path: str) -> dict:
    """The operation of an OpenAPI document that serves `method path` (a concrete path); AssertionError if none."""
    import re

    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            return ops[method.lower()]
    raise AssertionError(f"{method} {path} is not in the document")
