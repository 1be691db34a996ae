"""`python -m bench` (or `make bench`): every benchmark, results in bench/results/*.json."""

import subprocess
import sys

BENCHMARKS = ["bench.startup", "bench.model_server", "bench.logging_overhead", "bench.http_client", "bench.throughput", "bench.detector_speed", "bench.drift_quality", "bench.feedback_join", "bench.explainer_speed", "bench.adversarial", "bench.calibration", "bench.detection", "bench.embedding_null", "bench.cbpe_crosscheck", "bench.diagnosis", "bench.scale"]

for module in BENCHMARKS:
    print(f"== {module}", flush=True)
    subprocess.run([sys.executable, "-m", module], check=True)
