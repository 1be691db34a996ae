"""What only the SQLite store does (its file, its size cap); the semantics every store shares are in
test_record_store.py."""

from pathlib import Path

import pytest

from seismo.protocol.types import EventKind
from seismo.store import RecordUpdate, SQLiteRecordStore


def update(pid, kind, event_type, model="m", t=100.0, body=b'{"x": 1}', **kw):
    return RecordUpdate(pid, kind, event_type, model, t, body, "application/json", **kw)


REQ, RESP = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteRecordStore(tmp_path / "records.db")
    yield s
    s.close()


def test_records_survive_reopening(tmp_path):
    s = SQLiteRecordStore(tmp_path / "r.db")
    s.apply([update("p", EventKind.REQUEST, REQ)])
    s.close()
    s2 = SQLiteRecordStore(tmp_path / "r.db")
    assert s2.get("p").request == b'{"x": 1}'
    s2.close()


def test_a_store_over_its_size_cap_sheds_its_oldest_records(store):
    from seismo.database import bytes_in_use

    body = b'{"x": "' + b"y" * 100_000 + b'"}'
    for i in range(40):  # ~4 MB of requests
        store.apply([update(f"p{i:02d}", EventKind.REQUEST, REQ, body=body)])
    removed = store.shrink_to(2_000_000, step=5)
    assert 15 <= removed <= 30
    assert bytes_in_use(store._db) <= 2_000_000
    kept = [r.prediction_id for r in store.query(limit=100)]
    assert kept == [f"p{i:02d}" for i in range(removed, 40)]  # the oldest went first
    assert store.shrink_to(2_000_000) == 0
