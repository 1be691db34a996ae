"""docker/Dockerfile and docker-compose.yml, checked without a Docker engine (none runs here): they name only
files, extras, services, settings and commands that exist."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import load_script

from seismo.cli import build_parser
from seismo.topology import SERVICES

REPO = Path(__file__).resolve().parents[2]


DOCKERFILE = REPO / "docker" / "Dockerfile"


def docker_build():
    return load_script(REPO / "docker" / "build.py")


def test_one_dockerfile_builds_every_service_of_the_table():
    text = DOCKERFILE.read_text()
    assert text.startswith("# syntax=docker/dockerfile:1")
    assert list((REPO / "docker").glob("Dockerfile*")) == [DOCKERFILE] and not (REPO / "services").exists()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _ = shlex.split(line)[1:]
            for source in sources:
                assert (REPO / source).exists(), f"docker/Dockerfile: COPY {source} does not exist"
    assert re.search(r'^CMD exec seismo serve "\$SEISMO_SERVICE" --host 0\.0\.0\.0$', text, re.M)
    assert re.search(r"^ENV .*SEISMO_SERVICE=\$\{SERVICE\}", text, re.M)
    assert re.search(r"^USER 10001$", text, re.M)  # never root
    uv = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)[1]
    assert f"ARG UV_VERSION={uv}" in text  # the images lock-install with the uv the Makefile installs
    images = docker_build().images()
    assert {name for name, *_ in images} == set(SERVICES)  # one image per `seismo serve` service
    assert {name for name, suffix, *_ in images if suffix == "-gpu"} == {"model", "outlier"}
    for name, _, extras, _ in images:
        build_parser().parse_args(["serve", name, "--host", "0.0.0.0"])
        assert extras in ("", "gpu") or f"\n{extras} = [" in (REPO / "pyproject.toml").read_text(), f"{name}: no extra {extras!r}"


def requirements_of(extras: str) -> list[str]:
    """What the Dockerfile's `uv sync` installs for an image: the lock exported for its extra."""
    flags = ["--extra", extras] if extras else []
    result = subprocess.run([str(Path(sys.executable).parent / "uv"), "export", "--frozen", "--offline", "--no-hashes", "--no-emit-project",
                             "--no-header", "--no-annotate", *flags], cwd=REPO, capture_output=True, text=True, check=True)
    return [line.split(";")[0].strip() for line in result.stdout.splitlines() if line and not line.startswith("#")]


def test_each_image_installs_only_the_extras_its_service_needs():
    extras = {(name, suffix): e for name, suffix, e, _ in docker_build().images()}
    broker = requirements_of(extras[("broker", "")])
    assert broker and not any("tensorflow" in r or "scikit" in r for r in broker)  # the broker image has no TensorFlow
    assert any(r.startswith("starlette==") for r in broker)  # pinned exactly, as the lock has it
    assert any(r.startswith("tensorflow-cpu==") for r in requirements_of(extras[("model", "")]))
    gpu = requirements_of(extras[("model", "-gpu")])
    assert any(r.startswith("tensorflow==") for r in gpu) and any(r.startswith("nvidia-") for r in gpu)
    assert not any("tensorflow-cpu" in r for r in gpu)
    assert any(r.startswith("shap==") for r in requirements_of(extras[("explainer", "")]))
    assert not any("tensorflow" in r for r in requirements_of(extras[("logger", "")]))
    assert all("==" in r for r in broker + gpu), "every requirement an image installs is pinned"


def test_compose_is_what_docker_build_writes():
    assert (REPO / "docker-compose.yml").read_text() == docker_build().render(), "docker-compose.yml is stale: run `python docker/build.py`"


def settings_fields(service: str) -> set[str]:
    import importlib

    module_name, class_name = SERVICES[service].module, SERVICES[service].settings
    settings = getattr(importlib.import_module(module_name), class_name)
    prefix = settings.model_config["env_prefix"]
    return {f"{prefix}{name.upper()}" for name in settings.model_fields}


def test_compose_names_only_what_exists():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    referenced_vars = (REPO / "seismo" / "config" / "triggers.yaml").read_text() + (REPO / "docker" / "explainer.yaml").read_text()
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists() or source == "./models/artifacts", f"{name}: mounts missing {source}"
        if "build" not in spec:
            continue
        assert (REPO / spec["build"]["dockerfile"]).exists(), f"{name}: {spec['build']['dockerfile']} missing"
        served = spec["build"]["args"]["SERVICE"]
        command = spec.get("command", ["seismo", "serve", served])
        assert command[:3] == ["seismo", "serve", served], f"{name}: runs {command[:3]}, not its image's service"
        build_parser().parse_args(command[1:])  # exits on an unknown flag
        fields = settings_fields(served)
        for variable in spec.get("environment", {}):
            assert variable in fields or f"${{{variable}:-" in referenced_vars, f"{name}: {variable} is read by nothing"
    prometheus = yaml.safe_load((REPO / "dashboards" / "prometheus.yml").read_text())
    targets = {t.split(":")[0] for t in prometheus["scrape_configs"][0]["static_configs"][0]["targets"]}
    assert targets == {n for n, s in services.items() if "build" in s}  # Prometheus scrapes every Seismo container


def test_compose_explainer_config_loads():
    from seismo.explain.config import load_models

    models = load_models(REPO / "docker" / "explainer.yaml")
    assert {m.kind for m in models.values()} == {"tabular", "image"}


def test_compose_publishes_ports_on_loopback_only():
    """Auth is off by default: nothing may be reachable from other machines unless the user says so."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    published = [(name, port) for name, service in compose["services"].items() for port in service.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for _, port in published), published
