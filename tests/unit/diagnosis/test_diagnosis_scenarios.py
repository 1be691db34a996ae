"""Each failure mode produced on purpose (bench.scenarios.wine for the wine model,
bench.scenarios.digits for the digits CNN) must be named right, healthy traffic must raise
nothing; then the same through the metrics server's HTTP API, its gauges and `seismo diagnose`.

One run (seed 0) of each scenario here: how often each is named right over ten seeds is the
benchmark's job (`python -m bench.diagnosis --runs 10`, figures on the docs' performance page).

Real parts: the example tabular and image models, a SQLite record store and the metrics server's ledger; the
scenario runs drive the metrics server's Tracker directly (no HTTP).
"""


import functools

import orjson
import pytest
from helpers import ServedApp, metric_sum, run_cli, wait_until
from prometheus_client import CollectorRegistry

from bench.scenarios.digits import GAIN_MODEL, IMAGE_MODEL, DigitsWorld, build_image, digits_config
from bench.scenarios.wine import MODEL, SCENARIOS, WineWorld, build, diagnose_scenario, replay_into, wine_config
from seismo.services.metrics import MetricsSettings, create_app
from seismo.store import SQLiteRecordStore
from seismo.topology import EXAMPLE_MODEL, EXAMPLE_TABULAR_MODEL

SEED = 0


def config_text() -> str:
    return wine_config()


@pytest.fixture(scope="module")
def world():
    if not (EXAMPLE_TABULAR_MODEL / "model.joblib").exists():
        pytest.fail("example tabular model missing: run `make model` (make test does it for you)")
    return WineWorld(EXAMPLE_TABULAR_MODEL)


@pytest.fixture(scope="module")
def digits():
    if not (EXAMPLE_MODEL / "reference_labels.npy").exists():
        pytest.fail("example image model missing: run `make model` (make test does it for you)")
    return DigitsWorld(EXAMPLE_MODEL)


@pytest.fixture(scope="module")
def wine_answer(world, tmp_path_factory):
    """Scenario name -> the diagnosis of its seed-0 run (each run once for the module)."""
    folder = tmp_path_factory.mktemp("wine")
    return functools.cache(lambda name: diagnose_scenario(build(world, name, SEED), wine_config(), folder, MODEL))


@pytest.fixture(scope="module")
def image_answer(digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    return functools.cache(lambda name: diagnose_scenario(build_image(digits, name, SEED), digits_config(), folder, IMAGE_MODEL))


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_failure_mode_is_named(wine_answer, name):
    assert wine_answer(name)["verdict"] == name, wine_answer(name)


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_failure_mode_of_the_image_model_is_named(image_answer, name):
    """The same six modes on the digits CNN, compared by its penultimate embedding (inputs: embedding)."""
    assert image_answer(name)["verdict"] == name, image_answer(name)


def test_the_image_evidence_says_why(image_answer):
    cascade = image_answer("upstream_cascade")
    assert cascade["culprit"]["model"] == GAIN_MODEL and cascade["culprit"]["version"] == "2"
    own = cascade["culprit"]["own_performance"]  # 5 % error instead of 15 %: better on its own terms
    assert own["metric"] == "relative_mae" and own["after"] < own["before"] / 2
    drift = image_answer("data_drift")["evidence"]
    assert drift["input_vs_first"]["p_value"] < 0.01 and drift["concentration"]["ratio"] > 2
    skew = image_answer("training_serving_skew")["evidence"]
    assert skew["input_vs_reference"]["p_value"] < 1e-6 and skew["first"]["error"] > 0.5


def test_the_evidence_says_why(wine_answer):
    cascade = wine_answer("upstream_cascade")
    assert cascade["culprit"]["model"] == "wine-assay" and cascade["culprit"]["version"] == "2"
    assert cascade["culprit"]["previous_version"] == "1"
    upstream = cascade["evidence"]["upstream"][0]
    assert upstream["model"] == "wine-assay" and upstream["version_changed"] and upstream["n_links"] > 500
    # the document's story: the upstream model got better on its own terms (v2 is 3x sharper) while this one fell
    own = cascade["culprit"]["own_performance"]
    assert own["metric"] == "relative_mae" and own["after"] < own["before"] / 2 and min(own["n_before"], own["n_after"]) > 100
    assert "on its own terms it improved" in cascade["reasons"][-1]
    drift = wine_answer("data_drift")["evidence"]
    assert drift["input_vs_first"]["p_value"] < 0.01 and drift["concentration"]["ratio"] > 2
    assert set(drift["input_vs_first"]["top_features"]) & {"flavanoids", "color_intensity", "proline"}
    skew = wine_answer("training_serving_skew")["evidence"]
    assert skew["input_vs_reference"]["p_value"] < 1e-6 and skew["input_vs_first"]["p_value"] > 0.01
    concept = wine_answer("concept_drift")["evidence"]
    assert concept["latest"]["error"] > concept["first"]["error"] + 0.1
    assert abs(concept["latest"]["estimated_error"] - concept["first"]["estimated_error"]) < 0.05


def test_the_metrics_server_answers_v1_diagnosis_exports_gauges_and_seismo_diagnose_prints_it(tmp_path, world):
    (tmp_path / "metrics.yaml").write_text(config_text())
    settings = MetricsSettings(config_file=tmp_path / "metrics.yaml", state_path=tmp_path / "metrics.db", sqlite_path=tmp_path / "records.db",
                               join_interval_seconds=0.05, scan_interval_seconds=0.1, scan_settle_seconds=0.0,
                               refresh_interval_seconds=0.2, diagnosis_interval_seconds=0.3, window="all")
    scenario = build(world, "data_drift", 3)
    store = SQLiteRecordStore(tmp_path / "records.db")

    class NoTracker:  # the served metrics server scans and joins by itself: write the records only
        models = {}

        def scan(self, **_):
            pass

        def process(self, _):
            pass

    replay_into(scenario, store, NoTracker())
    with ServedApp(create_app(settings, CollectorRegistry())) as client:
        for p in scenario.predictions:
            if p.truth is not None:
                r = client.post("/feedback", content=orjson.dumps({"prediction_id": p.prediction_id, "truth": p.truth}))
                assert r.status_code == 200, r.text
        def diagnosis() -> dict | None:  # the scan reads the records' inputs, then the diagnosis sees the drift
            answer = client.get("/v1/diagnosis", params={"model": MODEL})
            assert answer.status_code == 200, answer.text
            doc = answer.json()
            return doc if doc["cohorts"]["all"]["verdict"] == "data_drift" else None

        wait_until(diagnosis, 20, 0.1, message="the data_drift diagnosis")
        doc = diagnosis()
        assert doc["model"] == MODEL and doc["cohorts"]["all"]["verdict"] == "data_drift"
        assert 0 < doc["cohorts"]["all"]["confidence"] <= 1
        assert client.get("/v1/diagnosis", params={"model": MODEL, "since": "1s"}).json()["cohorts"]["all"]["verdict"] == "no_ground_truth"
        for params, status, message in [({"model": "nope"}, 404, "no metrics configuration"), ({"model": MODEL, "since": "yesterday"}, 400, "'since'"),
                                        ({"model": MODEL, "cohort": "bad cohort\n"}, 400, "cohort"), ({}, 400, "name a 'model'")]:
            r = client.get("/v1/diagnosis", params=params)
            assert r.status_code == status and message in r.json()["error"], r.text

        def gauge():
            return metric_sum(client.get("/metrics").text, "seismo_diagnosis_verdict", model=MODEL, cohort="all", verdict="data_drift")

        wait_until(lambda: gauge() == 1.0, 10, 0.1, message="the data_drift gauge")
        text = client.get("/metrics").text
        assert gauge() == 1.0 and metric_sum(text, "seismo_diagnosis_verdict", model=MODEL, cohort="all", verdict="healthy") == 0.0
        assert metric_sum(text, "seismo_diagnosis_confidence", model=MODEL, cohort="all") > 0
        cli = run_cli("diagnose", "--model", MODEL, "--metrics-url", str(client.base_url).rstrip("/"))
        assert cli.returncode == 0, cli.stderr
        assert "cohort all: data_drift" in cli.stdout and "errors on novel inputs" in cli.stdout
        missing = run_cli("diagnose", "--model", "nope", "--metrics-url", str(client.base_url).rstrip("/"))
        assert missing.returncode == 1 and "404 no metrics configuration for model 'nope'" in missing.stderr
    store.close()
