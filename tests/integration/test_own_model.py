"""A model the suite has never seen, put under watch exactly as docs/how-to/own-model.md says: its two
shell commands (`seismo init`, `seismo up -f seismo.yaml`) run as written, in a fresh folder; then stored
records, a drift window, outlier scores, performance from feedback and a diagnosis, with no manual step.
Also: what a declaration refuses, with the line it names."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import REPO, metric_sum, wait_until

from seismo.declaration import DeclarationError, load_declaration
from seismo.declared_stack import ports_for

DOC = REPO / "docs" / "how-to" / "own-model.md"
SEISMO = str(Path(sys.executable).parent / "seismo")


def documented_commands() -> list[list[str]]:
    """The `.venv/bin/seismo ...` lines of the page's shell blocks, as argument lists."""
    import shlex

    lines = [line for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S) for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith(".venv/bin/seismo ")]


def free_offset(declaration) -> int:
    """A port offset at which every port the declared stack needs is free (the suite's other stacks use
    ephemeral ports; a developer's own `seismo up` may hold the usual ones)."""
    for offset in range(21000, 30000, 700):
        ports = [*ports_for(declaration, offset).values(), 8082 + offset]
        try:
            for port in ports:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return offset
        except OSError:
            continue
    pytest.fail("no free port range for the declared stack")


@pytest.mark.integration
def test_a_new_model_under_watch_as_the_docs_say(tmp_path):
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    # A model and data the suite has never seen: another generator seed, another estimator than the docs'.
    X, y = make_classification(n_samples=1000, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=41)
    joblib.dump(LogisticRegression(max_iter=1000).fit(X[:700], y[:700]), tmp_path / "churn.joblib")
    np.savetxt(tmp_path / "train.csv", X[:700], delimiter=",", header="a,b,c,d,e", comments="")
    live, truth = X[700:], y[700:]

    init, up = documented_commands()
    assert init[0] == "init" and up[:2] == ["up", "-f"], (init, up)
    result = subprocess.run([SEISMO, *init], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    declaration = load_declaration(tmp_path / "seismo.yaml")
    model = declaration.models[0]
    assert (model.name, model.task, model.feature_names) == ("churn", "multiclass", ["a", "b", "c", "d", "e"])
    offset = free_offset(declaration)
    ports = ports_for(declaration, offset)
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEISMO_")}
    stack = subprocess.Popen([SEISMO, *up, "--port-offset", str(offset)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = []
        for line in stack.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Press Ctrl-C" in line or stack.poll() is not None:
                break
        output = "".join(lines)
        assert "Press Ctrl-C" in output, output
        assert "fitting its drift detector" in output and "fitting its outlier detector" in output
        client = stack_client = httpx.Client(timeout=30)
        ids = []
        for row in live[:150]:
            r = client.post(f"{url['model-churn']}/v1/models/churn:predict", json={"instances": [row.tolist()]})
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-prediction-id"])
        for pid, label in zip(ids[:100], truth[:100]):
            r = client.post(f"{url['metrics']}/feedback", json={"prediction_id": pid, "truth": int(label)})
            assert r.status_code in (200, 202), r.text
        record = wait_until(lambda: (r := client.get(f"{url['logger']}/v1/records/{ids[-1]}")).status_code == 200
                            and r.json().get("annotations", {}).get("outlier") and r.json(), 60, message="the last record, scored for outliers")
        assert record["response"] is not None and record["annotations"]["outlier"]["detector"] == "MahalanobisOutlier"
        windows = wait_until(lambda: client.get(f"{url['logger']}/v1/drift", params={"model": "churn"}).json()["windows"], 60,
                             message="a drift window")
        assert windows[0]["size"] == 100 and isinstance(windows[0]["is_drift"], bool)
        performance = wait_until(lambda: (p := client.get(f"{url['metrics']}/v1/performance", params={"model": "churn"}).json())
                                 .get("realized", {}).get("n", 0) >= 100 and p, 60, message="performance from 100 pieces of feedback")
        expected = float((np.asarray(joblib.load(tmp_path / "churn.joblib").predict(live[:100])) == truth[:100]).mean())
        assert abs(performance["realized"]["accuracy"] - expected) < 1e-9
        diagnosis = client.get(f"{url['metrics']}/v1/diagnosis", params={"model": "churn"}).json()
        assert diagnosis["cohorts"]["all"]["verdict"] in ("healthy", "concept_drift", "data_drift", "training_serving_skew")
        # Data quality from the declared reference's schema: a well-formed row far outside it is counted, by feature name.
        odd = live[0].copy()
        odd[1] = 1000 * (abs(odd[1]) + 1)
        answer = client.post(f"{url['model-churn']}/v1/models/churn:predict", json={"instances": [odd.tolist()]})
        assert answer.status_code == 200
        wait_until(lambda: metric_sum(client.get(f"{url['metrics']}/metrics").text, "seismo_data_quality_issues_total",
                                      model="churn", feature="b", issue="out_of_range") == 1, 60, message="the out-of-range value counted")
        # ... and kept on its record, by feature name, through the declared stack's broker and logger.
        odd_id = answer.headers["x-prediction-id"]
        quality = wait_until(lambda: client.get(f"{url['logger']}/v1/records/{odd_id}").json().get("annotations", {}).get("quality"), 30,
                             message="the finding on the odd request's record")
        assert {"feature": "b", "issue": "out_of_range", "instances": 1} in quality["issues"]
    finally:
        if "stack_client" in locals():
            stack_client.close()
        os.killpg(stack.pid, signal.SIGTERM)
        stack.communicate(timeout=60)  # drains and closes its output


def test_a_declaration_error_names_the_line(tmp_path):
    (tmp_path / "m.joblib").write_bytes(b"")
    (tmp_path / "r.npy").write_bytes(b"")
    bad = tmp_path / "seismo.yaml"
    bad.write_text("models:\n  - name: churn\n    artifact: m.joblib\n    task: classification\n    reference: r.npy\n    watch: [drift, vibes]\n")
    with pytest.raises(DeclarationError) as caught:
        load_declaration(bad)
    lines = str(caught.value).splitlines()
    assert any(line.startswith(f"{bad}:4: models[0].task:") for line in lines), lines
    assert any(line.startswith(f"{bad}:6: models[0].watch[1]:") for line in lines), lines
    bad.write_text("models:\n  - {name: churn, endpoint: http://churn, task: binary, reference: r.npy, embedding: true}\n")
    with pytest.raises(DeclarationError, match="needs the 'artifact'"):
        load_declaration(bad)
    bad.write_text("models:\n  - name: churn\n    task: binary\n    reference: r.npy\n")
    with pytest.raises(DeclarationError, match="exactly one of 'artifact'"):
        load_declaration(bad)
    bad.write_text("models:\n  - {name: a, artifact: m.joblib, task: binary, reference: r.npy}\n  - {name: a, artifact: m.joblib, task: binary, reference: r.npy}\n")
    with pytest.raises(DeclarationError, match="unique"):
        load_declaration(bad)
    bad.write_text("models:\n  - {name: a, artifact: gone.joblib, task: binary, reference: r.npy}\n")
    with pytest.raises(DeclarationError, match=r"seismo.yaml:2: model 'a': .*gone.joblib not found"):
        load_declaration(bad)
