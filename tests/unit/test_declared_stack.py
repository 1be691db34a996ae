"""`seismo up -f`'s plan, without starting anything: what a declaration of the example image model fits
and configures (its own embedding output watched too), and the ports of several models."""

from __future__ import annotations

import pytest
import yaml

from seismo.declaration import load_declaration
from seismo.declared_stack import ports_for, prepare
from seismo.performance.config import model_config
from seismo.topology import EXAMPLE_MODEL


def test_an_image_model_with_an_embedding_output_gets_embedding_drift(tmp_path, example_model):
    (tmp_path / "seismo.yaml").write_text(
        f"models:\n- name: digits\n  artifact: {EXAMPLE_MODEL}\n  task: multiclass\n  reference: {EXAMPLE_MODEL / 'reference.npy'}\n"
        f"- name: other\n  endpoint: http://other.models\n  task: regression\n  reference: {EXAMPLE_MODEL / 'reference.npy'}\n"
        "  watch: [performance]\n")
    declaration = load_declaration(tmp_path / "seismo.yaml")
    said: list[str] = []
    plan = prepare(declaration, tmp_path / "data", step=said.append)
    folder = tmp_path / "data" / "declared" / "digits"
    assert all((folder / kind / "config.json").exists() for kind in ("drift", "outlier", "embedding"))
    assert plan.service_env["drift-digits"]["SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH"] == str(folder / "embedding")
    assert plan.services == ("logger", "outlier-digits", "drift-digits", "metrics", "broker", "model-digits")
    triggers = {t["name"]: t for t in yaml.safe_load((tmp_path / "data" / "declared" / "triggers.yaml").read_text())["triggers"]}
    assert triggers["drift-digits-kserve-response"]["filter"]["attributes"] == {
        "type": "org.kubeflow.serving.inference.response", "inferenceservicename": "digits"}
    assert triggers["drift-digits-kserve-request"]["subscriber"]["uri"] == f"http://127.0.0.1:{plan.ports['drift-digits']}/"
    assert not any(name.startswith(("drift-other", "outlier-other")) for name in triggers)
    assert any("'other' is served at http://other.models" in w for w in plan.warnings)
    metrics = yaml.safe_load((tmp_path / "data" / "declared" / "metrics.yaml").read_text())["models"]
    for name, spec in metrics.items():
        loaded = model_config(name, spec, tmp_path / "data" / "declared")  # what the metrics server will load, paths beside the file
        assert loaded.diagnosis.reference is None or loaded.diagnosis.reference.exists(), name
    assert metrics["other"] == {"type": "regression"}
    assert "quality" not in metrics["digits"]  # 3,072 pixel values: its embedding checks watch it, not a per-value schema
    # `embedding: false` turns it off, whatever the metadata says.
    off = tmp_path / "off.yaml"
    off.write_text((tmp_path / "seismo.yaml").read_text().replace("  task: multiclass\n", "  task: multiclass\n  embedding: false\n"
                                                                                           "  quality: true\n", 1))
    plan_off = prepare(load_declaration(off), tmp_path / "data-off", step=lambda _: None)
    assert "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH" not in plan_off.service_env["drift-digits"]
    # `quality: true` checks even 3,072 pixel values per request.
    said = yaml.safe_load((tmp_path / "data-off" / "declared" / "metrics.yaml").read_text())["models"]["digits"]
    assert said["quality"] == {"reference": "digits/reference.npy"}
    assert model_config("digits", said, tmp_path / "data-off" / "declared").quality is not None
    assert not (tmp_path / "data-off" / "declared" / "digits" / "embedding").exists()
    # A second run reuses what the first fitted.
    again: list[str] = []
    prepare(declaration, tmp_path / "data", step=again.append)
    assert all("up to date" in line for line in again), again


def test_ports_first_model_usual_then_from_8100(tmp_path):
    (tmp_path / "r.npy").write_bytes(b"")
    (tmp_path / "seismo.yaml").write_text("models:\n" + "".join(
        f"- {{name: m{i}, endpoint: http://m{i}, task: binary, reference: r.npy}}\n" for i in range(3)))
    ports = ports_for(load_declaration(tmp_path / "seismo.yaml"), offset=5)
    assert (ports["model-m0"], ports["outlier-m0"], ports["drift-m0"]) == (8085, 8097, 8098)
    assert (ports["model-m1"], ports["drift-m2"]) == (8105, 8117)
    assert len(set(ports.values())) == len(ports)


@pytest.mark.parametrize(("replicas", "message"), [
    ("drift=2", "replicas of drift share their state in PostgreSQL: give --postgres"),
    ("model=2", "the services that may have replicas are logger, outlier, drift, metrics"),
    ("drift=0", "a count from 1 to 16"),
])
def test_up_refuses_replicas_it_cannot_run_before_starting_anything(tmp_path, replicas, message):
    from helpers import run_cli

    done = run_cli("up", "--data-dir", tmp_path, "--replicas", replicas)
    assert done.returncode == 2 and message in done.stderr and not (tmp_path / "logs").exists()


def test_replicas_get_their_own_ports_and_data_directories_and_the_broker_spreads_over_them(tmp_path):
    from seismo.local import LocalStack, free_ports

    stack = LocalStack(tmp_path, ports=free_ports(("logger", "outlier", "broker")), services=("logger", "outlier", "broker"))
    stack.add_replicas({"outlier": 3}, None)  # stateless: no database needed
    assert stack.services == ("logger", "outlier", "outlier-2", "outlier-3", "broker")
    assert len({stack.ports[name] for name in stack.services}) == 5
    assert stack.service_env["outlier-3"]["SEISMO_DATA_DIR"] == str(tmp_path / "replicas" / "outlier-3")
    assert stack.env["SEISMO_BROKER_REPLICAS"] == f"{stack.url('outlier')}={stack.url('outlier-2')},{stack.url('outlier-3')}"
    assert "SEISMO_LOGGER_POSTGRES_URL" not in stack.env
