"""`seismo up | serve | demo`: the command line. Nothing runs at import."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

import seismo
from seismo.cli_errors import SettingError, env_int, settings_error_lines
from seismo.topology import EXAMPLE_DETECTORS, SERVICE_PORTS, SERVICES, data_dir

SERVICE_NAMES = tuple(SERVICES)


def _service(name: str):
    import importlib

    module_name, settings_name = SERVICES[name].module, SERVICES[name].settings
    module = importlib.import_module(module_name)
    return module, getattr(module, settings_name)


def cmd_serve(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry
    from pydantic import ValidationError

    from seismo.services.common import PortInUse, run_server

    overrides = {"host": args.host, "port": args.port}
    if args.name == "model":
        overrides.update(path=args.model_path, name=args.model_name)
    elif args.name == "broker":
        overrides.update(triggers_file=args.triggers)
    elif args.name in ("outlier", "drift"):
        overrides.update(detector_path=args.detector_path)
    try:
        module, settings_class = _service(args.name)
        settings = settings_class(**{k: v for k, v in overrides.items() if v is not None})
        app = module.create_app(settings, CollectorRegistry())
        run_server(app, settings.host, settings.port, args.name)
    except PortInUse as exc:
        print(f"seismo: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        for line in settings_error_lines(exc):
            print(f"seismo: invalid configuration for {args.name}: {line}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"seismo: invalid configuration for {args.name}: {exc}", file=sys.stderr)
        return 2
    return 0


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir) if args.data_dir else data_dir()


def _declared_stack(args: argparse.Namespace, grpc_port: int):
    """The LocalStack for `seismo up -f FILE`, its detectors fitted and configuration written; None after
    printing what is wrong with the declaration."""
    from seismo.declaration import DeclarationError, load_declaration
    from seismo.declared_stack import prepare
    from seismo.fit import FitError
    from seismo.local import LocalStack

    try:
        declaration = load_declaration(Path(args.file))
        print(f"preparing {len(declaration.models)} declared model(s) from {args.file}", flush=True)
        plan = prepare(declaration, _data_dir(args), args.host, args.port_offset, step=lambda line: print(f"  {line}", flush=True))
    except (DeclarationError, FitError) as exc:
        for line in str(exc).splitlines():
            print(f"seismo: {line}", file=sys.stderr)
        return None
    for warning in plan.warnings:
        print(f"seismo: warning: {warning}", file=sys.stderr)
    return LocalStack(_data_dir(args), host=args.host, ports=plan.ports, services=plan.services, env=plan.env, commands=plan.commands,
                      service_env=plan.service_env, grpc_service=plan.grpc_service or "", grpc_port=grpc_port + args.port_offset)


def cmd_init(args: argparse.Namespace) -> int:
    from seismo.init import InitError, write_declaration

    try:
        written = write_declaration(Path(args.model), Path(args.reference), args.task, args.name, Path(args.out), args.window, args.force)
    except InitError as exc:
        print(f"seismo init: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written}: start it with `seismo up -f {written}`")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from seismo.local import LOCAL_GRPC_PORT, LocalStack, PortInUse, StartupError, parse_replicas, table

    grpc_port = env_int("SEISMO_MODEL_GRPC_PORT", LOCAL_GRPC_PORT, minimum=1)
    if args.prepare_only and args.file is None:
        print("seismo up: --prepare-only prepares a declaration: give -f seismo.yaml", file=sys.stderr)
        return 2
    if args.file is not None:
        stack = _declared_stack(args, grpc_port)
        if stack is None:
            return 2
        if args.prepare_only:
            print(f"prepared {stack.data_dir / 'declared'}: copy it to the models volume as declared/ (docs/kubernetes.md)")
            return 0
    else:
        from seismo.local import unwatched_warnings

        stack = LocalStack(_data_dir(args), host=args.host, grpc_port=grpc_port)
        for warning in unwatched_warnings():
            print(f"seismo: warning: {warning}", file=sys.stderr)
    if args.input_detectors is not None:  # else the broker's default (off) or SEISMO_BROKER_INPUT_DETECTORS from the environment
        stack.env["SEISMO_BROKER_INPUT_DETECTORS"] = "true" if args.input_detectors else "false"
    try:
        stack.add_replicas(parse_replicas(args.replicas), args.postgres)
    except ValueError as exc:
        print(f"seismo up: {exc}", file=sys.stderr)
        return 2
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


def cmd_fit(args: argparse.Namespace) -> int:
    from seismo.fit import FitError, fit_and_save

    from_store = None
    if args.from_store:
        from seismo.times import parse_timestamp

        if args.reference is not None or args.model is None:
            print("seismo fit: --from-store reads the reference from the store: give --model NAME (the served model) and no --reference",
                  file=sys.stderr)
            return 2
        try:
            from_store = {"model": str(args.model), "since": parse_timestamp(args.since) if args.since else None,
                          "until": parse_timestamp(args.until) if args.until else None,
                          "sqlite": args.sqlite or (Path(args.data_dir) / "records.db" if args.data_dir else None), "store": args.store}
        except ValueError as exc:
            print(f"seismo fit: {exc}", file=sys.stderr)
            return 2
    elif args.reference is None:
        print("seismo fit: pass --reference FILE (or --from-store --model NAME)", file=sys.stderr)
        return 2
    try:
        fit_and_save(args.what, args.reference, args.out, method=args.method, preprocess=args.preprocess, p_val=args.p_val,
                     correction=args.correction, threshold_percentile=args.threshold_percentile, seed=args.seed,
                     model=None if args.from_store else args.model, version=args.embedding_version, from_store=from_store,
                     calibration=args.calibration, calibration_fraction=args.calibration_fraction, effect_floor=args.effect_floor)
    except FitError as exc:
        print(f"seismo fit: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_embeddings(args: argparse.Namespace) -> int:
    from seismo.embeddings.cli import run

    return run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from seismo.embeddings.report import write_report

    try:
        write_report(args.out, args.logger_url, args.model, args.reference, args.since, args.limit, args.metrics_url)
    except (ValueError, OSError) as exc:
        print(f"seismo report embeddings: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from seismo.demo import run_demo

    return run_demo(_data_dir(args), predictions=args.predictions, window=args.window, detection=not args.no_detection)


SERVICE_SETTINGS = "every service's settings: SEISMO_<SERVICE>_* (MODEL, BROKER, LOGGER, OUTLIER, DRIFT, METRICS, EXPLAINER), SEISMO_AUTH_*"
STORE = ("the store: SEISMO_LOGGER_POSTGRES_URL or SEISMO_LOGGER_ELASTICSEARCH_URL (and _*) when set, else SEISMO_LOGGER_SQLITE_PATH "
         "(default $SEISMO_DATA_DIR/records.db)")
ENVIRONMENT = {
    "init": ["none: everything comes from its arguments"],
    "up": ["SEISMO_DATA_DIR (default .seismo/)", "SEISMO_<SERVICE>_PORT (each service's port), SEISMO_MODEL_GRPC_PORT", SERVICE_SETTINGS,
           "SEISMO_LOG_LEVEL"],
    "serve": [SERVICE_SETTINGS, "SEISMO_DATA_DIR", "OTEL_* (tracing, off unless set)", "SEISMO_LOG_LEVEL"],
    "fit": [STORE + " (--from-store)"],
    "embeddings": ["SEISMO_LOGGER_URL (versions: the logger to ask)"],
    "report": ["SEISMO_LOGGER_URL (the logger to ask)", "SEISMO_METRICS_URL (correctness from its joined feedback)"],
    "replay": [STORE, "SEISMO_DRIFT_WINDOW_SIZE (the default --window)"],
    "diagnose": ["SEISMO_METRICS_URL (the metrics server to ask)", "SEISMO_TOKEN (sent as a bearer token when auth is on)"],
    "dead-letters": [STORE, "SEISMO_TOKEN (replay: sent as a bearer token; with auth on, the broker's, whose deliveries subscribers take)"],
    "demo": ["SEISMO_DATA_DIR", SERVICE_SETTINGS],
}
"""The environment each command reads, shown by its --help (the full list: docs/reference/configuration.md)."""


OFFLINE_COMMANDS = ("init", "fit", "embeddings", "report", "replay", "diagnose", "dead-letters")
"""Commands that print a result and exit: their own output only (log level WARNING unless SEISMO_LOG_LEVEL)."""


def _epilog(command: str) -> str:
    lines = "\n".join(f"  {line}" for line in ENVIRONMENT[command])
    return f"environment:\n{lines}\n\nevery setting: docs/reference/configuration.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seismo", description="Monitoring for models in production.")
    parser.add_argument("--version", action="version", version=f"seismo {seismo.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, epilog=_epilog(name), formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    up = command("up", help="start every service locally and print where each one is")
    up.add_argument("--data-dir", help="local state (default $SEISMO_DATA_DIR or .seismo/)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("-f", "--file", help="a declaration of the models to serve and watch (seismo.yaml, `seismo init` writes one); "
                                         "default: the example models")
    up.add_argument("--port-offset", type=int, default=0, help="-f: add this to every port (two stacks side by side)")
    up.add_argument("--prepare-only", action="store_true", help="-f: fit the detectors and write the configuration under "
                                                                 "<data dir>/declared/, then exit (what a Kubernetes models volume takes)")
    up.add_argument("--replicas", help="run several processes of a service, each with its own data directory, the broker spreading "
                                       "deliveries over them: e.g. drift=3,metrics=2,logger=2,outlier=2 (logger, drift and metrics need --postgres)")
    up.add_argument("--input-detectors", dest="input_detectors", action=argparse.BooleanOptionalAction, default=None,
                    help="also send the watched model's requests to the outlier and drift services' input detectors (for the example "
                         "image model: a VAE and an autoencoder + KS on its pixels, several times the model's CPU). Off by default: "
                         "the detectors read the embedding on its responses")
    up.add_argument("--postgres", metavar="URL", help="PostgreSQL for the records, the metrics ledger and the drift windows "
                                                     "(postgresql://user:password@host:5432/db), shared by every replica")
    up.set_defaults(func=cmd_up)

    init = command("init", help="write seismo.yaml, the declaration `seismo up -f` serves and watches, for one model")
    init.add_argument("--model", required=True, help="the model artifact: a .joblib file, a .keras file or a folder with metadata.json")
    init.add_argument("--reference", required=True, help="reference data like the model's inputs: .npy, .csv (optional header) or .parquet")
    init.add_argument("--task", choices=("binary", "multiclass", "regression"), help="default: read from the model (scikit-learn)")
    init.add_argument("--name", help="the model's name (default: the artifact's file name)")
    init.add_argument("--window", type=int, default=1000, help="drift: instances per window (default 1000)")
    init.add_argument("--out", default="seismo.yaml", help="the file to write (default seismo.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)

    serve = command("serve", help="run one service in the foreground (what a container runs)")
    serve.add_argument("name", choices=SERVICE_NAMES)
    serve.add_argument("--port", type=int, help="default: the service's own (" + ", ".join(f"{n} {p}" for n, p in SERVICE_PORTS.items()) + ")")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--model-path", type=Path, help="model: artifact to serve (default: the example image classifier)")
    serve.add_argument("--model-name", help="model: name to serve it under")
    serve.add_argument("--triggers", type=Path, help="broker: trigger file")
    serve.add_argument("--detector-path", type=Path, help="outlier, drift: a saved detector folder (seismo fit)")
    serve.set_defaults(func=cmd_serve)

    fit = command("fit", help="fit a drift or outlier detector on reference data and save it")
    fit.add_argument("what", choices=("drift", "outlier", "embedding"))
    fit.add_argument("--reference", type=Path, help="reference data: .npy, .csv (numeric, optional header) or .parquet")
    fit.add_argument("--from-store", action="store_true", help="drift, outlier: fit on stored production requests of --model NAME "
                     "(the logger's store; --since/--until pick the time range); the detector records which data and model versions")
    fit.add_argument("--since", help="--from-store: records created at or after (epoch seconds or ISO-8601)")
    fit.add_argument("--until", help="--from-store: records created before (epoch seconds or ISO-8601)")
    fit.add_argument("--data-dir", help="--from-store: the data directory `seismo up` used (default $SEISMO_DATA_DIR or .seismo/)")
    fit.add_argument("--sqlite", type=Path, help="--from-store: the SQLite store to read (default: the logger's, from SEISMO_LOGGER_* settings)")
    fit.add_argument("--store", help="--from-store: the record store to read, a SQLite file, a PostgreSQL URL (postgresql://...) or an Elasticsearch URL (http(s)://...); "
                                     "over --sqlite and --data-dir")
    fit.add_argument("--out", type=Path, required=True, help="folder to save the detector in")
    fit.add_argument("--method", help="drift: ks (default), chi2, mmd, classifier, prediction; outlier: mahalanobis (default), "
                     "iforest, vae; embedding: euclidean (default), cosine, ks, mmd")
    fit.add_argument("--model", type=Path, help="embedding: embed the reference (model inputs) with this artifact's embedding layer; "
                     "with --from-store: the served model's name")
    fit.add_argument("--embedding-version", help="embedding: the reference's version <model>/<space>@X.Y.Z (default: the --model's)")
    fit.add_argument("--preprocess", default="none", help="none (default), pca:N, uae:N (untrained autoencoder, images), layer:MODEL_PATH:LAYER")
    fit.add_argument("--p-val", type=float, default=0.05, help="drift: significance level")
    fit.add_argument("--effect-floor", type=float, help="drift, embedding: the effect size (KS gap: a share of probability mass) a "
                     "significant window must reach to count as drift (default 0.05; 0: the test alone)")
    fit.add_argument("--correction", default="bonferroni", help="ks, chi2: bonferroni or fdr")
    fit.add_argument("--threshold-percentile", type=float, default=95.0,
                     help="outlier: the threshold's percentile of scores on data the detector was not fitted on (95: 5 %% false positives)")
    fit.add_argument("--calibration", type=Path, help="outlier: data (.npy, .csv, .parquet) the threshold comes from, fitted on by neither "
                     "the detector nor the model (default: --calibration-fraction of the reference, held out of the fit)")
    fit.add_argument("--calibration-fraction", type=float, default=0.3,
                     help="outlier: share of the reference held out for the threshold when no --calibration is given (0: in-sample)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=cmd_fit)

    embeddings = command("embeddings", help="embedding versions: check a bump between two models, list versions seen")
    esub = embeddings.add_subparsers(dest="action", required=True)
    check = esub.add_parser("check", help="embed a probe set with OLD and NEW and say whether the claimed version bump is honest")
    check.add_argument("old", type=Path, help="the model artifact now in production")
    check.add_argument("new", type=Path, help="the model artifact about to replace it")
    check.add_argument("--probe", type=Path, help="probe inputs (.npy); default: OLD's shipped reference.npy")
    check.add_argument("--json", action="store_true", help="print the measures as JSON")
    versions = esub.add_parser("versions", help="embedding versions seen in the store, with counts and time ranges")
    versions.add_argument("--model", help="only this model's")
    versions.add_argument("--logger-url", default=os.environ.get("SEISMO_LOGGER_URL", f"http://127.0.0.1:{SERVICE_PORTS['logger']}"),
                          help="the logger (default $SEISMO_LOGGER_URL or the local one)")
    embeddings.set_defaults(func=cmd_embeddings)

    report = command("report", help="write a self-contained HTML report")
    rsub = report.add_subparsers(dest="what", required=True)
    emb = rsub.add_parser("embeddings", help="UMAP of reference and production embeddings, clusters, drift over time")
    emb.add_argument("--model", required=True, help="the model whose stored embeddings to show")
    emb.add_argument("--since", help="only records created since (epoch seconds or ISO-8601)")
    emb.add_argument("--out", type=Path, default=Path("embeddings-report.html"), help="the HTML file to write")
    emb.add_argument("--limit", type=int, default=500, help="production embeddings to show at most (default 500)")
    emb.add_argument("--reference", type=Path, default=EXAMPLE_DETECTORS / "embedding",
                     help="the EmbeddingDrift folder holding the reference (default: the example's)")
    emb.add_argument("--logger-url", default=os.environ.get("SEISMO_LOGGER_URL", f"http://127.0.0.1:{SERVICE_PORTS['logger']}"))
    emb.add_argument("--metrics-url", default=os.environ.get("SEISMO_METRICS_URL", f"http://127.0.0.1:{SERVICE_PORTS['metrics']}"),
                     help="the metrics server whose joined feedback colours correctness (default $SEISMO_METRICS_URL or the local one)")
    report.set_defaults(func=cmd_report)

    replay = command("replay", help="run a saved drift detector over stored records in their original order and windows")
    replay.add_argument("--model", required=True, help="the model whose stored requests to replay")
    replay.add_argument("--detector", type=Path, required=True, help="a saved drift detector folder (seismo fit drift)")
    replay.add_argument("--since", help="records created at or after (epoch seconds or ISO-8601); default: the first")
    replay.add_argument("--until", help="records created before (epoch seconds or ISO-8601); default: the last")
    replay.add_argument("--window", type=int, default=None,
                        help="instances per count window (default $SEISMO_DRIFT_WINDOW_SIZE or 1000, the drift service's)")
    replay.add_argument("--data-dir", help="the data directory `seismo up` used (default $SEISMO_DATA_DIR or .seismo/): its records.db")
    replay.add_argument("--sqlite", type=Path, help="the SQLite store to read (default: the logger's, from SEISMO_LOGGER_* settings)")
    replay.add_argument("--store", help="the record store to read, a SQLite file, a PostgreSQL URL (postgresql://...) or an Elasticsearch URL (http(s)://...); over --sqlite and --data-dir")
    replay.add_argument("--out", type=Path, help="also save the windows' results as JSON lines here")
    replay.set_defaults(func=lambda args: __import__("seismo.replay", fromlist=["run"]).run(args))

    diagnose = command("diagnose", help="which failure mode a model suffers (asks the metrics server's /v1/diagnosis)")
    diagnose.add_argument("--model", required=True, help="the model to diagnose")
    diagnose.add_argument("--since", help="an RFC 3339 time, epoch seconds or a duration meaning that long ago (7d); default: all kept")
    diagnose.add_argument("--cohort", help="one cohort only (default: all and every cohort with data)")
    diagnose.add_argument("--metrics-url", default=os.environ.get("SEISMO_METRICS_URL", f"http://127.0.0.1:{SERVICE_PORTS['metrics']}"),
                          help="the metrics server (default $SEISMO_METRICS_URL or the local one); $SEISMO_TOKEN is sent as bearer token")
    diagnose.add_argument("--json", action="store_true", help="print the answer as JSON")
    diagnose.set_defaults(func=lambda args: __import__("seismo.diagnosis.cli", fromlist=["run"]).run(args))

    from seismo.dead_letters import add_parser as add_dead_letters

    add_dead_letters(command)

    demo = command("demo", help="start the stack, send predictions, show what was logged, stop")
    demo.add_argument("--data-dir", help="local state (default $SEISMO_DATA_DIR or .seismo/)")
    demo.add_argument("--predictions", type=int, default=300)
    demo.add_argument("--window", type=int, default=300, help="drift window size for the demo (the service's default is 1000)")
    demo.add_argument("--no-detection", action="store_true", help="only the logging part")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ and Python logs (oneDNN notices, CUDA probing, retracing advice) are not Seismo's
    # output: errors only, in this process and the services it starts. A value already set is kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    offline = args.command in OFFLINE_COMMANDS
    if offline:
        # oneDNN announces itself on every TensorFlow import whatever the log level; the offline tools print
        # their own results, so they do without it (the services keep oneDNN's speed: their logs go to files).
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    logging.basicConfig(
        level=os.environ.get("SEISMO_LOG_LEVEL", "WARNING" if offline else "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: one line per event delivered would drown the services' own.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for noisy in ("tensorflow", "absl", "h5py", "numba"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from pydantic import ValidationError

    try:
        return args.func(args)
    except SettingError as exc:
        print(f"seismo: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a settings class read from the environment: one line per variable
        if not exc.title.endswith("Settings"):
            raise
        for line in settings_error_lines(exc):
            print(f"seismo: {line}", file=sys.stderr)
        return 2
