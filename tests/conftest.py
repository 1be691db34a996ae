from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seismo.topology import EXAMPLE_MODEL  # noqa: E402

TESTS = Path(__file__).resolve().parent
PROCESS_FOLDERS = {"integration", "hostile"}
"""Every test in these folders starts real Seismo processes: `integration`, whether or not its module says so."""


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.path.resolve()
        parts = path.relative_to(TESTS).parts if path.is_relative_to(TESTS) else ()
        if parts and parts[0] in PROCESS_FOLDERS and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
    # Readers of the shared stack's aggregate metrics first, before the hostile cases flood it (stable sort).
    items.sort(key=lambda item: item.get_closest_marker("stack_first") is None)


_shared: dict = {}


def pytest_collection_finish(session):
    users = [item.nodeid for item in session.items if "shared_stack" in getattr(item, "fixturenames", ())]
    _shared["last_user"] = users[-1] if users else None


@pytest.hookimpl(trylast=True)  # after the test's own fixtures were torn down
def pytest_runtest_teardown(item, nextitem):
    """The shared stack stops right after its last user: eight idle services should not sit beside the
    rest of the suite (memory, and their timers' CPU under tests that measure latency)."""
    if item.nodeid == _shared.get("last_user") and "stack" in _shared:
        _shared.pop("stack").stop()


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory, example_images):
    """One real local stack of every service for the session (tests/shared_stack.py)."""
    from shared_stack import Stack

    stack = Stack(tmp_path_factory.mktemp("shared-stack"), example_images[0]).start()
    _shared["stack"] = stack
    try:
        yield stack
    finally:
        _shared.pop("stack", None)
        stack.stop()


@pytest.fixture(scope="session")
def example_model() -> Path:
    """The one trained example artifact every test shares (`make test` trains it if missing)."""
    if not (EXAMPLE_MODEL / "metadata.json").exists():
        pytest.fail(f"example model missing at {EXAMPLE_MODEL}: run `make model` (make test does it for you)")
    return EXAMPLE_MODEL


@pytest.fixture(scope="session")
def example_images(example_model: Path) -> np.ndarray:
    return np.load(example_model / "reference.npy")


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of one real PostgreSQL server for the session (bench/postgres_server.py); skips, saying
    why, on a machine without the server."""
    from bench.postgres_server import REAL, PostgresServer

    if REAL:
        yield REAL
        return
    try:
        server = PostgresServer().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh database of its own for one test."""
    from bench.postgres_server import new_database

    return new_database(postgres_server)
