"""The shape every service shares (docs/concepts/architecture.md, "How a service is built"), checked on
the tree: the same three modules, cores without the web framework, no import circle, short routes, one
service table, no tracked file a byte copy of another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from seismo.topology import SERVICES

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "seismo"
MAX_ROUTE_LINES = 40


def test_every_service_is_the_same_three_modules():
    for name, service in SERVICES.items():
        folder = PACKAGE / "services" / name
        assert service.module == f"seismo.services.{name}"
        assert sorted(p.name for p in folder.glob("*.py")) == ["__init__.py", "core.py", "http.py", "settings.py"], name
    packages = {p.parent.name for p in (PACKAGE / "services").glob("*/core.py")}
    assert packages == set(SERVICES), "a service package the table does not list"


def test_no_core_loads_starlette():
    """Importing a core (and its settings) leaves the web framework unloaded: the cores are the domain."""
    code = "\n".join([
        "import sys",
        *[f"import seismo.services.{name}.core, seismo.services.{name}.settings\n"
          f"assert not [m for m in sys.modules if m.startswith('starlette')], 'seismo.services.{name}.core loads starlette'"
          for name in SERVICES],
        "import seismo.serving.dataplane",
        "assert not [m for m in sys.modules if m.startswith('starlette')], 'the data plane loads starlette'",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package `path` imports anywhere: at module level, under TYPE_CHECKING, or inside a
    function (a lazy import still ties the two modules together)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(n for n in names if n in modules)
            if node.module in modules and not all(n in modules for n in names):
                found.add(node.module)
    return found


def test_the_package_has_no_import_circle():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "proto" not in p.parts}
    graph = {name: _imports(path, set(files)) for name, path in files.items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_routes_and_create_app_are_short():
    """A route parses, calls the core and answers: anything longer is domain logic in the wrong room."""
    long = []
    for path in [*(PACKAGE / "services").glob("*/http.py"), PACKAGE / "services" / "event_http.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_ROUTE_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_services_use_the_one_base_and_build_app():
    import importlib
    import inspect

    from seismo.services.base import Service

    for name in SERVICES:
        module = importlib.import_module(f"seismo.services.{name}.core")
        cores = [c for _, c in inspect.getmembers(module, inspect.isclass) if issubclass(c, Service) and c.__module__ == module.__name__]
        assert len(cores) == 1 and cores[0].name == name, (name, cores)
        http = (PACKAGE / "services" / name / "http.py").read_text()
        assert "build_app(" in http and "lifespan" not in http and "Starlette(" not in http, name
        assert f'Tracing("{name}")' in http, f"{name}: create_app hands the core its tracer"
    assert "asynccontextmanager" not in "".join(p.read_text() for p in (PACKAGE / "services").rglob("*.py") if p.name != "app.py")


def test_one_service_table():
    """Ports and service lists come from seismo/topology.py: no other tracked Python file spells a service port."""
    ports = {str(s.port) for s in SERVICES.values()} - {"8080"}  # 8080 is every web server's favourite, not a fact of ours
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    spelled = []
    for file in tracked:
        if file == "seismo/topology.py" or not (REPO / file).exists():
            continue
        for number, line in enumerate((REPO / file).read_text().splitlines(), 1):
            code = line.split("#")[0]
            if any(f"{port}" in code for port in ports) and "url" not in code.lower() and "uri" not in code.lower():
                spelled.append(f"{file}:{number}: {line.strip()[:100]}")
    assert not spelled, "service ports outside the table:\n" + "\n".join(spelled)


def test_no_tracked_file_is_a_byte_copy_of_another():
    """One source per fact: a copy drifts. Helm reads files only inside the chart, so the chart links to
    the sources (git keeps links as links) instead of carrying copies."""
    listing = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    by_blob: dict[str, list[str]] = {}
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        mode, blob, _ = meta.split()
        if mode != "120000" and (REPO / path).exists():  # a link is not a copy
            by_blob.setdefault(blob, []).append(path)
    copies = [paths for paths in by_blob.values() if len(paths) > 1]
    assert not copies, copies
