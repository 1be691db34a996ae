"""`seismo replay` gives the results the live drift service gave, from the stored records and the saved
detector alone: a real stack (model, broker, logger, drift) on free ports, small windows, clean and
corrupted traffic; then the command (in this process: the same parser and code) over the logger's SQLite store."""

import json

import httpx
import numpy as np
import pytest
from helpers import metric_sum, run_cli, wait_until

from seismo.detect.saving import load_detector
from seismo.local import LocalStack, free_ports
from seismo.topology import EXAMPLE_DETECTORS

pytestmark = pytest.mark.integration

MODEL = "image-classifier"
WINDOW = 20
SERVICES = ("logger", "drift", "broker", "model")


def test_replay_matches_the_live_drift_services_windows(tmp_path, example_images):
    rng = np.random.default_rng(3)
    clean = example_images[:30]
    noisy = np.clip(example_images[30:60] + rng.normal(0, 0.5, example_images[30:60].shape), 0, 1).astype(np.float32)
    # 70 instances in order: 2 requests of 2 instances (an event may straddle windows), then singles.
    sends = [clean[0:2], clean[2:4]] + [clean[i:i + 1] for i in range(4, 30)] + [noisy[i:i + 1] for i in range(30)] + \
        [clean[i:i + 1] for i in range(10)]
    ports = free_ports(SERVICES)
    env = {"SEISMO_DRIFT_WINDOW_SIZE": str(WINDOW), "SEISMO_BROKER_INPUT_DETECTORS": "true"}  # windows of the request inputs
    with LocalStack(tmp_path / "stack", ports=ports, services=SERVICES, env=env) as stack:
        with httpx.Client(timeout=30) as client:
            sent = 0
            for rows in sends:
                r = client.post(f"{stack.url('model')}/v1/models/{MODEL}:predict", json={"instances": rows.tolist()})
                assert r.status_code == 200
                sent += len(rows)
                # One at a time through to the drift service: the broker delivers in parallel, so under load
                # the live windows could otherwise take events in another order than the store keeps.
                wait_until(lambda n=sent: metric_sum(client.get(f"{stack.url('drift')}/metrics").text, "seismo_drift_instances_total") == n,
                           60, 0.02, f"the drift service to hold {sent} instances")
            live = wait_until(lambda: (w := client.get(f"{stack.url('logger')}/v1/drift", params={"model": MODEL}).json()["windows"])
                              and len(w) == 3 and w, 90, 0.5, "three drift windows in the logger's drift log")
            wait_until(lambda: len(client.get(f"{stack.url('logger')}/v1/records", params={"model": MODEL, "limit": 1000}).json()["records"])
                       == len(sends), 60, 0.5, "every record stored")
    assert not live[0]["is_drift"] and live[2]["is_drift"]  # clean, then the noisy part drifted

    out = tmp_path / "replay.jsonl"
    command = ["replay", "--model", MODEL, "--detector", str(EXAMPLE_DETECTORS / "drift"),
               "--window", str(WINDOW), "--sqlite", str(tmp_path / "stack" / "records.db"), "--out", str(out)]
    result = run_cli(*command)
    assert result.returncode == 0, result.stderr
    assert f"{len(sends)} records, 70 instances, 3 windows; 10 instances after the last" in result.stdout
    replayed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["window"] for r in replayed] == [w["window"] for w in live]
    for mine, theirs in zip(replayed, live):
        assert mine["is_drift"] == theirs["is_drift"]
        assert mine["p_val"] == pytest.approx(theirs["p_val"], rel=1e-9, abs=1e-12)
        assert mine["distance"] == pytest.approx(theirs["distance"], rel=1e-9)
        assert mine["threshold"] == theirs["threshold"] and mine["size"] == theirs["size"] == WINDOW
        assert mine["feature_p_vals"] == pytest.approx(theirs["feature_p_vals"], rel=1e-9, abs=1e-12)
        assert mine["detector_version"] == theirs["detector_version"] == load_detector(EXAMPLE_DETECTORS / "drift").detector_version

    # Refit on that stored traffic: the detector says which data and model version it came from, and the
    # windows a replay tests with it carry its version.
    refit = tmp_path / "refit"
    fit = run_cli("fit", "drift", "--from-store", "--model", MODEL, "--sqlite", str(tmp_path / "stack" / "records.db"),
                  "--preprocess", "pca:4", "--out", str(refit))
    assert fit.returncode == 0, fit.stderr
    config = json.loads((refit / "config.json").read_text())
    provenance = config["provenance"]
    assert provenance["source"] == "store" and provenance["model"] == MODEL and provenance["records"] == len(sends)
    assert provenance["instances"] == 70 and provenance["model_versions"] == ["1"] or provenance["model_versions"]
    assert provenance["first_prediction_id"] == replayed[0]["first_prediction_id"]
    again = run_cli(*command[:command.index("--detector") + 1], str(refit), *command[command.index("--detector") + 2:])
    assert again.returncode == 0, again.stderr
    assert {json.loads(line)["detector_version"] for line in out.read_text().splitlines()} == {config["detector_version"]}


def test_replay_refuses_what_it_cannot_do(tmp_path):
    base = ["replay", "--model", MODEL, "--sqlite", str(tmp_path / "none.db")]
    bad_window = run_cli(*base, "--detector", str(EXAMPLE_DETECTORS / "drift"), "--window", "1")
    assert bad_window.returncode == 2 and "--window must be at least 2" in bad_window.stderr
    no_detector = run_cli(*base, "--detector", str(tmp_path))
    assert no_detector.returncode == 2 and "cannot load the detector" in no_detector.stderr
    bad_time = run_cli(*base, "--detector", str(EXAMPLE_DETECTORS / "drift"), "--since", "yesterday-ish")
    assert bad_time.returncode == 2 and "seismo replay:" in bad_time.stderr
