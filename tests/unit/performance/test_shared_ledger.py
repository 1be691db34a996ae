"""The metrics server's ledger on SQLite and on a real PostgreSQL server, and two metrics server replicas
sharing one PostgreSQL: the same answers from both, feedback delivered to both counted once, pending
feedback joined by one of them."""

import threading
import time

import orjson
import pytest
from helpers import ServedApp, metric_sum
from prometheus_client import CollectorRegistry

from seismo.performance.ledger import Ledger, Lookback, ScoredItem
from seismo.protocol.types import EventKind
from seismo.services.metrics import MetricsSettings, create_app
from seismo.store import RecordUpdate

REQ, RESP = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    return tmp_path / "ledger.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def item(key: str, truth: float, predicted: float = 1.0, at: float = 100.0) -> ScoredItem:
    return ScoredItem(key, key.split("#")[0], "model", at, at - 1, predicted, truth, (0.2, 0.8), ("all",))


def test_scored_rows_count_once_and_a_later_truth_replaces(target):
    ledger = Ledger(target)
    with ledger.transaction():
        assert ledger.add_scored("m", [item("a#0", 1.0), item("b#0", 0.0)]) == ["new", "new"]
    with ledger.transaction():
        assert ledger.add_scored("m", [item("a#0", 1.0), item("b#0", 1.0)]) == ["duplicate", "replaced"]
        ledger.bump("m", "received", 4)
    rows = ledger.scored_rows("m", "all", None, Lookback(), now=200.0)
    assert sorted(rows.truth.tolist()) == [1.0, 1.0] and ledger.counts("m")["received"] == 4
    assert ledger.outcomes("m", ["a", "b", "absent"]) == {"a": [(1.0, 1.0)], "b": [(1.0, 1.0)]}
    assert len(ledger.scored_series("m", "all", None)) == 2
    ledger.close()


def test_pending_feedback_is_claimed_once(target):
    first, second = Ledger(target), Ledger(target)  # two replicas (on SQLite: two connections to one file)
    with first.transaction():
        assert first.add_pending("p1", "m", 10.0, b'{"truth": 1}') is True
        assert first.add_pending("p1", "m", 11.0, b'{"truth": 2}') is False  # the later truth replaces it
    assert first.pending_batch(now=20.0) == [("p1", "m", 11.0, b'{"truth": 2}')]
    with first.transaction():
        assert first.claim_pending(["p1"]) == [("p1", "m", 11.0, b'{"truth": 2}')]
    with second.transaction():
        assert second.claim_pending(["p1"]) == []  # already claimed: nobody joins it twice
    assert first.pending_count() == 0
    first.close()
    second.close()


def prediction(pid: str, predicted_class: int) -> list[RecordUpdate]:
    scores = [0.1, 0.1, 0.1]
    scores[predicted_class] = 0.8
    return [RecordUpdate(pid, EventKind.REQUEST, REQ, "iris", 1.0, b'{"instances": [[1, 2, 3, 4]]}', "application/json"),
            RecordUpdate(pid, EventKind.RESPONSE, RESP, "iris", 1.0, orjson.dumps({"predictions": [scores]}), "application/json")]


def test_two_metrics_replicas_on_one_postgres_answer_alike_and_count_once(postgres_url, tmp_path):
    from seismo.store.postgres import PostgresRecordStore

    store = PostgresRecordStore(postgres_url)
    for i in range(40):
        store.apply(prediction(f"p{i}", i % 3))
    (tmp_path / "m.yaml").write_text("models:\n  iris:\n    type: multiclass-onehot\n")

    def replica(name: str) -> MetricsSettings:
        return MetricsSettings(config_file=tmp_path / "m.yaml", state_path=tmp_path / f"{name}.db", postgres_url=postgres_url,
                               scan_interval_seconds=3600, join_interval_seconds=3600, diagnosis_interval_seconds=0)

    apps = [create_app(replica(name), CollectorRegistry()) for name in "ab"]
    with ServedApp(apps[0]) as a, ServedApp(apps[1]) as b:
        # Every piece of truth reaches both replicas (a redelivery through another pod), from two threads at once.
        feedback = [{"prediction_id": f"p{i}", "truth": 0} for i in range(40)] + [{"prediction_id": "later", "truth": 1}]

        def send(client) -> None:
            for start in range(0, len(feedback), 10):
                assert client.post("/feedback", content=orjson.dumps(feedback[start:start + 10])).status_code in (200, 202)

        threads = [threading.Thread(target=send, args=(client,)) for client in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        answers = [client.get("/v1/performance?window=all").json() for client in (a, b)]
        assert answers[0]["realized"] == answers[1]["realized"]
        assert answers[0]["realized"]["n"] == 40 and answers[0]["realized"]["accuracy"] == pytest.approx(14 / 40)
        # Deliveries are counted (as on one replica: a redelivery is received and joined again, scored once);
        # the feedback for the prediction not stored yet waits once, under its one id.
        assert answers[0]["counts"]["received"] == 80 and answers[0]["counts"]["pending_now"] == 1
        # Counters sum across pods: each instance scored by one replica, its second delivery a duplicate at the other.
        scraped = [client.get("/metrics").text for client in (a, b)]
        assert sum(metric_sum(text, "seismo_metrics_instances_scored_total", cohort="all") for text in scraped) == 40
        assert sum(metric_sum(text, "seismo_metrics_feedback_duplicate_total") for text in scraped) == 40
        # The prediction arrives; both replicas look for pending feedback at once: one joins it.
        store.apply(prediction("later", 1))
        trackers = [app.state.metrics.tracker for app in apps]
        results: list[dict] = []
        threads = [threading.Thread(target=lambda t=t: results.append(t.join_pending())) for t in trackers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(r["joined"] for r in results) == 1
        after = [client.get("/v1/performance?window=all").json() for client in (a, b)]
        assert after[0]["realized"] == after[1]["realized"] and after[0]["realized"]["n"] == 41
        assert after[0]["counts"]["joined"] == 81 and after[0]["counts"]["pending_now"] == 0
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_response_stored_after_the_scan_read_its_request_still_counts(backend, request, tmp_path):
    """The scan reads records in creation order once they settle; one whose response came later is looked
    up again until it has one, or is given up (counted) once it is older than the wait."""
    from seismo.store import SQLiteRecordStore

    if backend == "postgres":
        from seismo.store.postgres import PostgresRecordStore

        url = request.getfixturevalue("postgres_url")
        store, extra = PostgresRecordStore(url), {"postgres_url": url}
    else:
        store, extra = SQLiteRecordStore(tmp_path / "records.db"), {"sqlite_path": tmp_path / "records.db"}
    (tmp_path / "m.yaml").write_text("models:\n  iris:\n    type: multiclass-onehot\n")
    settings = MetricsSettings(config_file=tmp_path / "m.yaml", state_path=tmp_path / "ledger.db", scan_interval_seconds=3600,
                               join_interval_seconds=3600, diagnosis_interval_seconds=0, **extra)
    app = create_app(settings, CollectorRegistry())
    with ServedApp(app) as client:
        tracker = app.state.metrics.tracker
        on_time, late, never = prediction("on-time", 0), prediction("late", 1), prediction("never", 2)
        store.apply([on_time[0], on_time[1], late[0], never[0]])  # two requests still without their response
        assert tracker.scan(settle=0.0, wait=300.0) == 1
        assert [pid for pid, _ in tracker.ledger.unanswered("iris", 10)] in (["late", "never"], ["never", "late"])
        store.apply([late[1]])
        assert tracker.scan(settle=0.0, wait=300.0) == 1  # the late response, found by the recheck
        assert [pid for pid, _ in tracker.ledger.unanswered("iris", 10)] == ["never"]
        assert tracker.scan(now=time.time() + 301, settle=0.0, wait=300.0) == 0  # waited long enough: given up, counted
        assert tracker.ledger.unanswered("iris", 10) == []
        assert metric_sum(client.get("/metrics").text, "seismo_metrics_feedback_rejected_total", reason="no_response") == 1
        assert metric_sum(client.get("/metrics").text, "seismo_metrics_predictions_seen_total", model="iris") == 2
    store.close()


def test_a_postgres_ledger_made_before_a_table_was_added_gets_it(postgres_url):
    ledger = Ledger(postgres_url)
    ledger.sql.execute("DROP TABLE unanswered")  # as a ledger written by the Seismo before it
    ledger.close()
    ledger = Ledger(postgres_url)
    with ledger.transaction():
        assert ledger.add_unanswered("m", [("p", 1.0)], 10) == 0
    assert ledger.unanswered("m", 10) == [("p", 1.0)]
    indexes = ledger.sql.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'unanswered'").fetchall()
    assert ("unanswered_created",) in indexes
    ledger.close()


def test_a_failing_recheck_does_not_hold_up_reading_new_predictions(tmp_path):
    from seismo.store import SQLiteRecordStore

    store = SQLiteRecordStore(tmp_path / "records.db")
    (tmp_path / "m.yaml").write_text("models:\n  iris:\n    type: multiclass-onehot\n")
    settings = MetricsSettings(config_file=tmp_path / "m.yaml", state_path=tmp_path / "ledger.db", sqlite_path=tmp_path / "records.db",
                               scan_interval_seconds=3600, join_interval_seconds=3600, diagnosis_interval_seconds=0)
    app = create_app(settings, CollectorRegistry())
    with ServedApp(app) as client:
        tracker = app.state.metrics.tracker
        store.apply([prediction("waiting", 0)[0]])
        assert tracker.scan(settle=0.0) == 0 and len(tracker.ledger.unanswered("iris", 10)) == 1

        def broken(ids):
            raise OSError("store unreachable for lookups")

        tracker.store.get_many = broken
        store.apply(prediction("new", 1))
        assert tracker.scan(settle=0.0) == 1  # the new prediction is read all the same
        assert metric_sum(client.get("/metrics").text, "seismo_metrics_feedback_rejected_total", reason="recheck_failed") == 1
    store.close()
