"""`seismo up | serve | demo`: the command line. Nothing runs at import."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

SERVICE_NAMES = ("model", "broker", "logger")


def _settings_for(name: str, overrides: dict):
    """The service's settings from SEISMO_<SERVICE>_* variables, with command-line flags on top."""
    if name == "model":
        from seismo.services.model import ModelSettings as Settings
    elif name == "broker":
        from seismo.services.broker import BrokerSettings as Settings
    else:
        from seismo.services.logger import LoggerSettings as Settings
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _create_app(name: str, settings, registry):
    if name == "model":
        from seismo.services.model import create_app
    elif name == "broker":
        from seismo.services.broker import create_app
    else:
        from seismo.services.logger import create_app
    return create_app(settings, registry)


def cmd_serve(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry
    from pydantic import ValidationError

    from seismo.services.common import PortInUse, run_server

    overrides = {"host": args.host, "port": args.port}
    if args.name == "model":
        overrides.update(path=args.model_path, name=args.model_name)
    elif args.name == "broker":
        overrides.update(triggers_file=args.triggers)
    try:
        settings = _settings_for(args.name, overrides)
        app = _create_app(args.name, settings, CollectorRegistry())
        run_server(app, settings.host, settings.port, args.name)
    except PortInUse as exc:
        print(f"seismo: {exc}", file=sys.stderr)
        return 2
    except (ValidationError, ValueError) as exc:
        print(f"seismo: invalid configuration for {args.name}: {exc}", file=sys.stderr)
        return 2
    return 0


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("SEISMO_DATA_DIR") or ".seismo")


def cmd_up(args: argparse.Namespace) -> int:
    from seismo.local import LocalStack, PortInUse, StartupError, table

    stack = LocalStack(_data_dir(args), host=args.host)
    print(f"starting Seismo (data in {stack.data_dir}) ...", flush=True)
    try:
        stack.start(progress=lambda name: print(f"  {name} ready", flush=True))
    except (PortInUse, StartupError) as exc:
        print(f"seismo: {exc}", file=sys.stderr)
        return 2
    print("\n" + table(stack) + "\n\nPress Ctrl-C to stop.", flush=True)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stopping:
            for service in list(stack.processes.values()):
                if service.process.poll() is not None:
                    print(f"seismo: {service.name} exited with code {service.process.returncode}; its log ends:\n{service.log_tail()}", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from seismo.demo import run_demo

    return run_demo(_data_dir(args), predictions=args.predictions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seismo", description="Monitoring for models in production.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start every service locally and print where each one is")
    up.add_argument("--data-dir", help="local state (default $SEISMO_DATA_DIR or .seismo/)")
    up.add_argument("--host", default="127.0.0.1")
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run one service in the foreground (what a container runs)")
    serve.add_argument("name", choices=SERVICE_NAMES)
    serve.add_argument("--port", type=int, help="default: the service's own (model 8080, broker 8090, logger 8091)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--model-path", type=Path, help="model: artifact to serve (default: the example image classifier)")
    serve.add_argument("--model-name", help="model: name to serve it under")
    serve.add_argument("--triggers", type=Path, help="broker: trigger file")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="start the stack, send predictions, show what was logged, stop")
    demo.add_argument("--data-dir", help="local state (default $SEISMO_DATA_DIR or .seismo/)")
    demo.add_argument("--predictions", type=int, default=300)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SEISMO_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: one line per event delivered would drown the services' own.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return args.func(args)
