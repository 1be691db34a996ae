"""Dockerfiles and docker-compose.yml, checked without a Docker engine (none runs here): they name only
files, extras, services, settings and commands that exist."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import load_script

from seismo.cli import build_parser
from seismo.topology import SERVICES

REPO = Path(__file__).resolve().parents[2]


def services_build():
    return load_script(REPO / "services" / "build.py")


DOCKERFILES = sorted((REPO / "services").glob("*/Dockerfile*"))


def test_committed_dockerfiles_are_what_build_py_writes():
    rendered = services_build().render()
    committed = {str(p.relative_to(REPO / "services")): p.read_text() for p in DOCKERFILES}
    assert committed == rendered, "services/*/Dockerfile is stale: run `python services/build.py`"
    assert {p.parent.name for p in DOCKERFILES} == set(SERVICES)  # one image per `seismo serve` service
    assert {p.parent.name for p in DOCKERFILES if p.name == "Dockerfile.gpu"} == {"model", "outlier"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_copies_what_exists_and_runs_a_real_service(dockerfile):
    text = dockerfile.read_text()
    assert text.startswith("# syntax=docker/dockerfile:1")
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _ = shlex.split(line)[1:]
            for source in sources:
                assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"
    entrypoint = re.search(r'^ENTRYPOINT \["seismo", "serve", "(\w+)"\]$', text, re.M)
    assert entrypoint and entrypoint.group(1) == dockerfile.parent.name
    assert re.search(r"^USER 10001$", text, re.M)  # never root
    build_parser().parse_args(["serve", entrypoint.group(1)])


def requirements_of(dockerfile: Path) -> list[str]:
    """What the Dockerfile's `uv sync` installs: the lock exported for the extras it names."""
    extras = re.search(r"^RUN uv sync --frozen --no-install-project(.*)$", dockerfile.read_text(), re.M).group(1).split()
    result = subprocess.run([str(Path(sys.executable).parent / "uv"), "export", "--frozen", "--offline", "--no-hashes", "--no-emit-project",
                             "--no-header", "--no-annotate", *extras], cwd=REPO, capture_output=True, text=True, check=True)
    return [line.split(";")[0].strip() for line in result.stdout.splitlines() if line and not line.startswith("#")]


def test_each_image_installs_only_the_extras_its_service_needs():
    folder = REPO / "services"
    broker = requirements_of(folder / "broker" / "Dockerfile")
    assert broker and not any("tensorflow" in r or "scikit" in r for r in broker)  # the broker image has no TensorFlow
    assert any(r.startswith("starlette==") for r in broker)  # pinned exactly, as the lock has it
    assert any(r.startswith("tensorflow-cpu==") for r in requirements_of(folder / "model" / "Dockerfile"))
    gpu = requirements_of(folder / "model" / "Dockerfile.gpu")
    assert any(r.startswith("tensorflow==") for r in gpu) and any(r.startswith("nvidia-") for r in gpu)
    assert not any("tensorflow-cpu" in r for r in gpu)
    assert any(r.startswith("shap==") for r in requirements_of(folder / "explainer" / "Dockerfile"))
    assert not any("tensorflow" in r for r in requirements_of(folder / "logger" / "Dockerfile"))
    assert all("==" in r for r in broker + gpu), "every requirement an image installs is pinned"


def settings_fields(service: str) -> set[str]:
    import importlib

    module_name, class_name = SERVICES[service].module, SERVICES[service].settings
    settings = getattr(importlib.import_module(module_name), class_name)
    prefix = settings.model_config["env_prefix"]
    return {f"{prefix}{name.upper()}" for name in settings.model_fields}


def test_compose_names_only_what_exists():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    referenced_vars = (REPO / "seismo" / "config" / "triggers.yaml").read_text() + (REPO / "services" / "explainer" / "compose.yaml").read_text()
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists() or source == "./models/artifacts", f"{name}: mounts missing {source}"
        if "build" not in spec:
            continue
        dockerfile = REPO / spec["build"]["dockerfile"]
        assert dockerfile.exists(), f"{name}: {dockerfile} missing"
        served = re.search(r'"serve", "(\w+)"', dockerfile.read_text()).group(1)
        build_parser().parse_args(["serve", served, *spec.get("command", [])])  # exits on an unknown flag
        fields = settings_fields(served)
        for variable in spec.get("environment", {}):
            assert variable in fields or f"${{{variable}:-" in referenced_vars, f"{name}: {variable} is read by nothing"
    prometheus = yaml.safe_load((REPO / "dashboards" / "prometheus.yml").read_text())
    targets = {t.split(":")[0] for t in prometheus["scrape_configs"][0]["static_configs"][0]["targets"]}
    assert targets == {n for n, s in services.items() if "build" in s}  # Prometheus scrapes every Seismo container


def test_compose_explainer_config_loads():
    from seismo.explain.config import load_models

    models = load_models(REPO / "services" / "explainer" / "compose.yaml")
    assert {m.kind for m in models.values()} == {"tabular", "image"}


def test_compose_publishes_ports_on_loopback_only():
    """Auth is off by default: nothing may be reachable from other machines unless the user says so."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    published = [(name, port) for name, service in compose["services"].items() for port in service.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for _, port in published), published
