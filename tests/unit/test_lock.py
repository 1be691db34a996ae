"""uv.lock is what every install uses (`make demo`, `make test`, `.ci/run`, the Dockerfiles): it must agree
with pyproject.toml, and the uv that checks it must be the one the Makefile and the images install."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"


def uv(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    if not UV.exists():
        pytest.fail(f"{UV} missing: `make test` installs the dev extra, which brings uv")
    return subprocess.run([str(UV), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_lock_agrees_with_pyproject():
    result = uv("lock", "--check", "--offline")
    assert result.returncode == 0, f"uv.lock is stale: run `make lock`\n{result.stderr}"


def test_a_changed_requirement_is_caught(tmp_path):
    """The check above can fail: the same files with one floor raised do not pass it."""
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    assert uv("lock", "--check", "--offline", cwd=tmp_path).returncode == 0  # the copy itself passes
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert '"pyyaml>=6"' in pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('"pyyaml>=6"', '"pyyaml>=6.0.1"'))
    # Offline, uv cannot re-resolve, so it says so instead of "needs to be updated": either way, not 0.
    result = uv("lock", "--check", "--offline", cwd=tmp_path)
    assert result.returncode != 0, result.stderr


def test_one_uv_version_everywhere():
    makefile = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)[1]
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"] if p["name"] == "uv"}
    assert f"uv=={makefile}" in dev and locked == {"uv": makefile}
    assert uv("--version").stdout.split()[1] == makefile


def test_every_extra_is_locked_and_installs_pin_from_the_lock():
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    seismo = next(p for p in lock["package"] if p["name"] == "seismo")
    assert set(seismo["optional-dependencies"]) == extras
    makefile = (REPO / "Makefile").read_text()
    assert "uv sync --frozen" in makefile.replace("$(UV) sync", "uv sync") and "pip install -e" not in makefile
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci and "pip install" not in ci
    for dockerfile in (REPO / "services").glob("*/Dockerfile*"):
        text = dockerfile.read_text()
        assert "COPY pyproject.toml uv.lock" in text and "uv sync --frozen" in text and "pip install -r" not in text, dockerfile


def test_the_alibi_environment_is_locked_with_hashes():
    """`make alibi` installs requirements/alibi.txt (compiled by `make lock` from alibi.in) and nothing else."""
    folder = REPO / "requirements"
    wanted = {re.split(r"[\[<>=!~ ]", line.strip())[0].lower() for line in (folder / "alibi.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    text = (folder / "alibi.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M))
    assert wanted <= {name.lower() for name in pins} and pins["alibi-detect"] == "0.13.0" and pins["numpy"].startswith("1.")
    assert text.count("--hash=sha256:") >= len(pins)  # every pin carries its hashes
    makefile = (REPO / "Makefile").read_text()
    assert "--require-hashes requirements/alibi.txt" in makefile and "pip install \"alibi" not in makefile
