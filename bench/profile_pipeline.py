"""Where the CPU goes under load: py-spy samples the model server, broker and logger (with `--all`,
the outlier and drift services too, as under `seismo up`) while the throughput benchmark's load
runs, and the busiest functions of each are printed (self time, and total time by module). Flame
graphs land in bench/results/ as collapsed stacks (`*.folded`, for speedscope or flamegraph.pl).

    python -m bench.profile_pipeline [--seconds 15] [--batch-size 64] [--all] [--encoding json|binary] [--model image|tabular]

Needs py-spy (`.venv/bin/pip install py-spy`; not a dependency: no test needs it) and permission to ptrace the
services (root here).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from bench.common import closed_loop, example_bodies
from bench.throughput import tabular_bodies
from seismo.local import LocalStack, free_ports

RESULTS = Path(__file__).resolve().parent / "results"


def summarize(folded: Path, top: int) -> dict:
    """Self time per function and total time per top-level Seismo module, as shares of samples."""
    self_time: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        self_time[frames[-1]] += count
        seen = {f.split("(")[1].split(":")[0].split("/site-packages/")[-1].split("/seismo/")[-1] for f in frames if "(" in f}
        for module in seen:
            modules[module] += count
    return {
        "samples": total,
        "self": [(name, round(100 * n / total, 1)) for name, n in self_time.most_common(top)],
        "inclusive_by_file": [(name, round(100 * n / total, 1)) for name, n in modules.most_common(top)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--all", action="store_true", help="run and profile the detectors too (every consumer of `seismo up`)")
    parser.add_argument("--encoding", choices=("json", "binary"), default="json")
    parser.add_argument("--model", choices=("image", "tabular"), default="image",
                        help="the image model (V1/V2 JSON or binary bodies) or the tabular example (one row per request)")
    args = parser.parse_args()
    if shutil.which("py-spy") is None and not (Path(".venv/bin/py-spy")).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    spy = shutil.which("py-spy") or ".venv/bin/py-spy"
    RESULTS.mkdir(exist_ok=True)
    model_service = "model" if args.model == "image" else "tabular"
    bodies = example_bodies(20000, args.encoding) if args.model == "image" else tabular_bodies(20000)
    profiled = (model_service, "broker", "logger", "outlier", "drift") if args.all else (model_service, "broker", "logger")
    services = ("logger", "outlier", "drift", "metrics", "broker", model_service) if args.all else ("logger", "broker", model_service)
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp) / "stack", ports=free_ports(), services=services,
                           env={"SEISMO_MODEL_LOG_BATCH_SIZE": str(args.batch_size)})
        stack.start()
        try:
            asyncio.run(closed_loop(stack.url(model_service), bodies[:200], args.concurrency))  # warm-up
            stop = threading.Event()

            def load() -> None:
                while not stop.is_set():
                    asyncio.run(closed_loop(stack.url(model_service), bodies[:2000], args.concurrency))

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            spies = {}
            for name in profiled:
                out = RESULTS / f"profile-{args.model}-{name}-batch{args.batch_size}.folded"
                pid = stack.processes[name].process.pid
                spies[name] = (out, subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(args.seconds),
                                                      "--format", "raw", "--output", str(out), "--nonblocking", "--rate", "200"],
                                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for _, process in spies.values():
                process.wait()
            stop.set()
            loader.join(120)
        finally:
            stack.stop()
    for name, (out, _) in spies.items():
        summary = summarize(out, args.top)
        print(f"\n== {name}: {summary['samples']} samples ({out.name})")
        print("  self time:")
        for function, share in summary["self"]:
            print(f"    {share:5.1f}%  {function[:150]}")
        print("  inclusive, by file:")
        for file, share in summary["inclusive_by_file"]:
            print(f"    {share:5.1f}%  {file}")


if __name__ == "__main__":
    main()
