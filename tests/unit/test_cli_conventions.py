"""The command line's conventions: --version, each command's --help lists the environment it reads, a bad
setting is one line naming the variable (never a traceback), TensorFlow's log noise is silenced."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import seismo
from seismo.cli import ENVIRONMENT, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def seismo_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([str(Path(sys.executable).parent / "seismo"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"seismo {seismo.__version__}"


@pytest.mark.parametrize("command", sorted(ENVIRONMENT))
def test_every_command_help_lists_its_environment(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = sub.choices[command].format_help()  # type: ignore[attr-defined]
    assert "environment:" in text and "docs/reference/configuration.md" in text
    assert all(line in text for line in ENVIRONMENT[command])


def test_the_named_variables_exist():
    """Every variable a --help names is one Seismo reads: in the configuration reference or the CLI's code."""
    import re

    documented = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    code = "".join(p.read_text() for p in (ROOT / "seismo").rglob("*.py"))
    for lines in ENVIRONMENT.values():
        for name in re.findall(r"SEISMO_[A-Z_]*[A-Z]", " ".join(lines)):
            if name.endswith("_") or name in ("SEISMO_SERVICE",):
                continue
            assert f"`{name}" in documented or f'"{name}"' in code, name


def test_a_bad_setting_is_one_line_naming_it(tmp_path):
    result = seismo_cli("replay", "--model", "m", "--detector", str(tmp_path), env={"SEISMO_DRIFT_WINDOW_SIZE": "abc"})
    assert result.returncode == 2 and result.stderr.strip() == "seismo: SEISMO_DRIFT_WINDOW_SIZE='abc' is not a whole number"
    result = seismo_cli("replay", "--model", "m", "--detector", str(tmp_path), env={"SEISMO_LOGGER_ELASTICSEARCH_VERIFY_CERTS": "lots"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("seismo: SEISMO_LOGGER_ELASTICSEARCH_VERIFY_CERTS='lots': ") and len(result.stderr.strip().splitlines()) == 1


def test_a_bad_service_setting_names_the_variable(capsys):
    import os

    os.environ["SEISMO_DRIFT_WINDOW_SIZE"] = "abc"
    try:
        assert main(["serve", "drift"]) == 2
    finally:
        del os.environ["SEISMO_DRIFT_WINDOW_SIZE"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("seismo: invalid configuration for drift: SEISMO_DRIFT_WINDOW_SIZE='abc': ")


def test_tensorflow_is_quiet(tmp_path):
    """`seismo embeddings check` loads two Keras models: nothing but its own output on stderr."""
    model = ROOT / "models" / "artifacts" / "image-classifier"
    if not (model / "metadata.json").exists():
        pytest.skip("the example image classifier is not trained (make model)")
    result = seismo_cli("embeddings", "check", str(model), str(model))
    assert result.returncode == 0, result.stderr[-2000:]
    # TFLite's C++ logger prints one line per interpreter whatever the settings: the one line let through.
    noisy = [line for line in result.stderr.splitlines() if ("tensorflow" in line.lower() or "oneDNN" in line or "absl" in line
                                                            or "cuda" in line.lower() or " INFO " in line) and "XNNPACK delegate" not in line]
    assert noisy == []


def test_commands_that_read_the_store_never_make_an_empty_one(tmp_path, monkeypatch, capsys):
    """`replay` and `fit --from-store` read the stack's store: where there is none they say where they
    looked and how to name it, and create nothing (they used to make an empty store and print 0 records)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEISMO_DATA_DIR", raising=False)
    detector = tmp_path / "detector"
    assert main(["replay", "--model", "m", "--detector", str(detector), "--data-dir", "nowhere"]) == 2
    assert main(["fit", "outlier", "--from-store", "--model", "m", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no record store at .seismo/records.db" in err and "--data-dir DIR" in err
    assert not (tmp_path / ".seismo").exists() and not (tmp_path / "nowhere").exists()


def test_fit_warns_on_a_reference_too_small_to_trust(tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "small.npy", np.random.default_rng(0).normal(size=(50, 4)))
    assert main(["fit", "drift", "--reference", str(tmp_path / "small.npy"), "--out", str(tmp_path / "d")]) == 0
    assert "warning: 50 instances is a small reference for 4 features" in capsys.readouterr().err
    np.save(tmp_path / "enough.npy", np.random.default_rng(0).normal(size=(400, 4)))
    assert main(["fit", "drift", "--reference", str(tmp_path / "enough.npy"), "--out", str(tmp_path / "e")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_plain_up_warns_about_a_served_model_nothing_watches(tmp_path):
    from seismo.local import unwatched_warnings

    assert unwatched_warnings({}) == []  # the examples: every part watches the image classifier
    warnings = unwatched_warnings({"SEISMO_MODEL_NAME": "iris"})
    assert len(warnings) == 3 and all("'iris'" in w for w in warnings)
    assert "SEISMO_DRIFT_MODEL" in warnings[0] and "SEISMO_OUTLIER_MODEL" in warnings[1] and "metrics configuration" in warnings[2]
    config = tmp_path / "metrics.yaml"
    config.write_text("models:\n  iris: {type: multiclass-onehot}\n")
    assert unwatched_warnings({"SEISMO_MODEL_NAME": "iris", "SEISMO_DRIFT_MODEL": "iris", "SEISMO_OUTLIER_MODEL": "iris",
                               "SEISMO_METRICS_CONFIG_FILE": str(config)}) == []


def test_a_reference_that_is_no_array_is_one_line(tmp_path, capsys):
    (tmp_path / "empty.npy").write_bytes(b"")
    assert main(["fit", "drift", "--reference", str(tmp_path / "empty.npy"), "--out", str(tmp_path / "d")]) == 2
    assert "not a readable .npy array" in capsys.readouterr().err


def test_a_declaration_of_too_many_models_is_refused(tmp_path):
    from seismo.declaration import MAX_MODELS, DeclarationError, load_declaration

    (tmp_path / "r.npy").write_bytes(b"")
    (tmp_path / "seismo.yaml").write_text("models:\n" + "".join(
        f"- {{name: m{i}, endpoint: http://m, task: binary, reference: r.npy}}\n" for i in range(MAX_MODELS + 1)))
    with pytest.raises(DeclarationError, match=f"at most {MAX_MODELS}"):
        load_declaration(tmp_path / "seismo.yaml")
