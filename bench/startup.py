"""Seconds from process start until each service answers /readyz, and which ones import TensorFlow.

The broker and the logger must import no TensorFlow and be ready in under 2 s; the model server's
figure is dominated by importing TensorFlow and loading the model. Baseline in the same run: a bare
`python -c pass`, the interpreter's own start.

    python -m bench.startup [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import save
from seismo.local import LocalStack, free_ports


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    interpreter = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        interpreter.append(time.perf_counter() - started)
    seconds: dict[str, list[float]] = {"logger": [], "broker": [], "metrics": [], "outlier": [], "drift": [], "model": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for name in seconds:  # one at a time, so no service's start slows another's
                stack = LocalStack(Path(tmp) / str(run), ports=free_ports(), services=(name,))
                started = time.perf_counter()
                stack.start_service(name)
                stack.wait_ready(name)
                seconds[name].append(time.perf_counter() - started)
                stack.stop()
    imports = {}
    for name, module in (("broker", "seismo.services.broker"), ("logger", "seismo.services.logger"), ("model", "seismo.serving.runtimes")):
        code = f"import sys, {module}; print('tensorflow' in sys.modules)"
        imports[name] = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"
    save("startup", {
        "runs": args.runs,
        "python_start_s": round(statistics.median(interpreter), 3),
        "ready_s_median": {k: round(statistics.median(v), 2) for k, v in seconds.items()},
        "imports_tensorflow_at_startup": {"broker": imports["broker"], "logger": imports["logger"], "model": True},
    })


if __name__ == "__main__":
    main()
