"""A real Prometheus scrapes the local stack through a small version of the demo scenario: every
dashboard panel's query returns data, and the drift and accuracy alerts fire.

The stack is the session's shared one (tests/shared_stack.py: drift windows of 50, metrics refreshed
every second); this test runs first on it (`stack_first`), before the hostile cases flood its cohorts.

Prometheus comes from Debian's `prometheus` package (`.ci/run` installs it); without it this skips.
The alert rules are dashboards/alerts.yaml with every `for:` set to 0s, so the test need not wait
minutes for them; their timing is what dashboards/alerts.test.yaml checks.
"""

import asyncio
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from helpers import free_port, load_script, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.stack_first,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus not installed: `apt-get install prometheus` (Debian) provides it")]
DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
MODEL = "image-classifier"


def panel_queries():
    return load_script(DASHBOARDS / "build.py").queries()


def start_prometheus(tmp: Path, targets: list[str]) -> tuple[subprocess.Popen, str]:
    rules = yaml.safe_load((DASHBOARDS / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    (tmp / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yaml")],
        "scrape_configs": [{"job_name": "seismo", "static_configs": [{"targets": targets}]}],
    }))
    port = free_port()
    with (tmp / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ready(url), 60, message="prometheus ready")
    return process, url


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def predict_all(model_url: str, images: np.ndarray, cohort: str) -> list[tuple[str, int]]:
    async with httpx.AsyncClient(timeout=30) as client:
        async def one(image):
            r = await client.post(f"{model_url}/v1/models/{MODEL}:predict", json={"instances": [image.tolist()]},
                                  headers={"X-Seismo-Cohort": cohort})
            return r.headers["x-prediction-id"], int(np.argmax(r.json()["predictions"][0]))

        return await asyncio.gather(*(one(i) for i in images))


def test_dashboards_have_data_and_alerts_fire_on_the_demo_scenario(tmp_path, example_images, shared_stack):
    stack = shared_stack
    prometheus = None
    try:
        prometheus, prom = start_prometheus(tmp_path, [f"127.0.0.1:{port}" for port in stack.stack.ports.values()])
        model = stack.url("model")
        clean = asyncio.run(predict_all(model, example_images[:50], "web"))
        httpx.post(f"{model}/v1/models/{MODEL}:predict", json={"instances": [[1.0, 2.0]]})  # one 400
        shifted = 1.0 - example_images[50:100]  # inverted images: a window no detector can miss
        asyncio.run(predict_all(model, shifted, "mobile"))
        for i, (pid, predicted) in enumerate(clean):  # truth that agrees half the time: accuracy 0.5
            truth = predicted if i % 2 == 0 else (predicted + 1) % 10
            httpx.post(f"{stack.url('metrics')}/feedback", json={"prediction_id": pid, "truth": truth}).raise_for_status()
        row = np.load(Path(__file__).resolve().parents[2] / "models" / "artifacts" / "tabular-classifier" / "heldout.npy")[4]
        httpx.post(f"{stack.url('explainer')}/v1/models/tabular-classifier:explain", json={"instances": [row.tolist()]},
                   timeout=60).raise_for_status()
        # Well-formed but unlike the training rows: alcohol 100 times too high (the data-quality panels and counts).
        odd = row.copy()
        odd[0] *= 100
        answer = httpx.post(f"{stack.url('tabular')}/v1/models/tabular-classifier:predict", json={"instances": [odd.tolist()]},
                            timeout=30)
        answer.raise_for_status()
        odd_id = answer.headers["x-prediction-id"]

        def result(expr):
            answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
            assert answer["status"] == "success", answer
            return answer["data"]["result"]

        empty = list(panel_queries())

        def every_panel_has_data() -> bool:
            empty[:] = [q for q in empty if not result(q[2])]
            return not empty

        try:
            wait_until(every_panel_has_data, 90, 0.5, message="every panel's query to return data")
        except AssertionError:
            raise AssertionError(f"panels without data: {empty}") from None

        quality = result('seismo_data_quality_issues_total{model="tabular-classifier",issue="out_of_range"}')
        assert "0" in {q["metric"]["feature"] for q in quality}  # the first feature, 100 times its training range
        # ... and on its record: the metrics server's finding, through the broker, kept by the logger.
        record = wait_until(lambda: (r := httpx.get(f"{stack.url('logger')}/v1/records/{odd_id}", timeout=10).json()).get(
            "annotations", {}).get("quality") and r, 30, 0.5, "the odd request's quality annotation")
        assert {"feature": "0", "issue": "out_of_range", "instances": 1} in record["annotations"]["quality"]["issues"]

        def firing() -> set[str]:
            alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

        wait_until(lambda: {"SeismoDriftDetected", "SeismoAccuracyLow"} <= firing(), 60, message="drift and accuracy alerts")
        accuracy = result('seismo_performance_accuracy{cohort="all",group="all"}')
        assert float(accuracy[0]["value"][1]) == pytest.approx(0.5)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
