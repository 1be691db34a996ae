"""What every record store must do alike, run on each backend by its own test module."""

from seismo.protocol.types import EventKind
from seismo.store import RecordUpdate

REQ, RESP = "io.seldon.serving.inference.request", "io.seldon.serving.inference.response"


def drift_results_conflict_beside_each_other(store) -> None:
    """Before, the drift log was create-or-ignore on (model, window): a forged `is_drift: false` sent first
    kept the real result (p = 9.4e-53) out, silently."""
    forged = {"window": 0, "is_drift": False, "p_val": 0.9}
    real = {"window": 0, "is_drift": True, "p_val": 9.4e-53}
    assert store.add_drift_window("m", 0, forged) is True
    assert store.add_drift_window("m", 0, forged) is False  # a redelivery
    assert store.add_drift_window("m", 0, real) == "kept_aside"
    assert store.add_drift_window("m", 0, real) is False
    assert store.add_drift_window("m", 1, real | {"window": 1}) is True
    assert store.drift_windows("m") == [forged, {**real, "conflict": True}, real | {"window": 1}]


def listings_bounded_by_bytes(store) -> None:
    """`GET /v1/records?limit=10` over 23 MiB records answered 363 MiB; now a page stops at its byte budget."""
    body = b'{"x": "' + b"y" * 100_000 + b'"}'
    extensions = {"namespace": "seldon", "endpoint": "default"}
    store.apply([RecordUpdate(f"p{i}", EventKind.REQUEST, REQ, "m", 1.0, body, "application/json", extensions=extensions) for i in range(3)])
    store.apply([RecordUpdate(f"p{i}", EventKind.RESPONSE, RESP, "m", 1.0, b'{"predictions": [1]}', "application/json", extensions=extensions)
                 for i in range(3)])
    page = store.query(limit=10, max_bytes=250_000)
    assert [r.prediction_id for r in page] == ["p0", "p1"] and page.truncated
    whole = store.query(limit=10, max_bytes=None)
    assert len(whole) == 3 and not whole.truncated
    assert len(store.query(limit=10, max_bytes=10)) == 1  # one record at least: a listing always moves on
    assert all(r.request is None and r.response == b'{"predictions": [1]}' for r in store.query(limit=10, requests=False))
