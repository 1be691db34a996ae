"""What every record store must do alike, on each backend: SQLite (a file), PostgreSQL (a real throwaway
server, bench/postgres_server.py) and Elasticsearch (the contract fake with near-real-time search, or a
real cluster when SEISMO_TEST_ELASTICSEARCH_URL names one)."""

import os
import threading
import time
import uuid

import contract
import pytest

from seismo.protocol.types import EventKind
from seismo.store import RecordUpdate, SQLiteRecordStore, record_to_json
from seismo.store.base import KEPT_ASIDE, MAX_CONFLICT_PAYLOAD, MAX_CONFLICTS

REQ, RESP = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"
ELASTICSEARCH = os.environ.get("SEISMO_TEST_ELASTICSEARCH_URL")


def update(pid, kind, event_type, model="m", t=100.0, body=b'{"x": 1}', **kw):
    return RecordUpdate(pid, kind, event_type, model, t, body, "application/json", **kw)


@pytest.fixture(scope="module")
def elasticsearch_url():
    if ELASTICSEARCH:
        yield ELASTICSEARCH
        return
    pytest.importorskip("elasticsearch")
    from fake_elasticsearch import FakeElasticsearch
    from helpers import ThreadServer

    with ThreadServer(FakeElasticsearch().app()) as server:
        yield server.url


def open_backend(backend: str, request, tmp_path, prefix: str):
    """A store on `backend`; called again in the same test, another replica's view of the same data (the
    fixtures' values are the same within a test)."""
    if backend == "sqlite":
        return SQLiteRecordStore(tmp_path / "records.db")
    if backend == "postgres":
        from seismo.store.postgres import PostgresRecordStore

        return PostgresRecordStore(request.getfixturevalue("postgres_url"))
    from seismo.store.elasticsearch import ElasticsearchConfig, ElasticsearchRecordStore

    config = ElasticsearchConfig(url=request.getfixturevalue("elasticsearch_url"), index_prefix=prefix, backoff_seconds=0.01, max_retries=3,
                                 username=os.environ.get("SEISMO_TEST_ELASTICSEARCH_USERNAME"),
                                 password=os.environ.get("SEISMO_TEST_ELASTICSEARCH_PASSWORD"))
    return ElasticsearchRecordStore(config)


@pytest.fixture(params=["sqlite", "postgres", "elasticsearch"])
def backend(request):
    return request.param


@pytest.fixture
def replicas(backend, request, tmp_path):
    """`replicas(n)`: n stores over the same data, as n logger replicas see it."""
    prefix = f"inference-log-test{uuid.uuid4().hex[:8]}"
    opened = []

    def open_(n: int = 1):
        for _ in range(n):
            opened.append(open_backend(backend, request, tmp_path, prefix))
        return opened[-n:]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(replicas):
    (one,) = replicas(1)
    return one


def test_request_and_response_fold_into_one_record_in_any_order(store):
    assert store.apply([update("p1", EventKind.RESPONSE, RESP, body=b'{"predictions": [1]}', status=200)]) == [True]
    assert store.apply([update("p1", EventKind.REQUEST, REQ, body=b'{"instances": [[1]]}',
                               extensions={"inferenceservicename": "m"}, model_version="3")]) == [True]
    record = store.get("p1")
    assert record.request == b'{"instances": [[1]]}' and record.response == b'{"predictions": [1]}'
    assert record.status == 200 and record.model_version == "3"
    as_json = record_to_json(record)
    assert as_json["request"] == {"instances": [[1]]} and as_json["response"] == {"predictions": [1]}
    assert as_json["extensions"] == {"inferenceservicename": "m"}


def test_duplicate_delivery_changes_nothing(store):
    first = update("p1", EventKind.REQUEST, REQ, body=b'{"a": 1}')
    assert store.apply([first]) == [True]
    before = store.get("p1")
    assert store.apply([first, first]) == [False, False]  # the broker is at-least-once
    assert store.get("p1") == before


def test_a_conflicting_duplicate_is_kept_aside_not_merged_or_dropped(store):
    """The first request of an id stays the record's; another with other bytes (a forgery sent first, or two
    servers sharing ids) used to be dropped as a duplicate, silently. Now it is kept aside and reported."""
    store.apply([update("p1", EventKind.REQUEST, REQ, body=b'{"a": 1}')])
    other = update("p1", EventKind.REQUEST, REQ, body=b'{"a": 2}')
    assert store.apply([other, other]) == [KEPT_ASIDE, False]  # kept once
    record = store.get("p1")
    assert record.request == b'{"a": 1}' and record.event_types == (REQ,)
    (conflict,) = record.annotations["conflicts"]
    assert conflict["payload"] == {"a": 2} and conflict["event_type"] == REQ and conflict["bytes"] == 8
    big = update("p1", EventKind.REQUEST, REQ, body=b'{"a": "' + b"x" * (MAX_CONFLICT_PAYLOAD + 1) + b'"}')
    assert store.apply([big]) == [KEPT_ASIDE]
    assert store.get("p1").annotations["conflicts"][1]["payload"] is None  # only its digest and size
    flood = [update("p1", EventKind.REQUEST, REQ, body=b'{"a": %d}' % i) for i in range(3, 20)]
    assert store.apply(flood).count(KEPT_ASIDE) == MAX_CONFLICTS - 2  # bounded per record
    assert len(store.get("p1").annotations["conflicts"]) == MAX_CONFLICTS


def test_one_batch_can_hold_both_events_of_a_prediction(store):
    assert store.apply([update("p", EventKind.REQUEST, REQ), update("p", EventKind.RESPONSE, RESP), update("p", EventKind.REQUEST, REQ)]) == [True, True, False]
    assert store.get("p").event_types == (REQ, RESP)


def test_error_status_and_detector_annotation(store):
    store.apply([update("p", EventKind.RESPONSE, RESP, body=b'{"error": "bad"}', status=400)])
    store.apply([update("p", EventKind.OUTLIER, "org.kubeflow.serving.inference.outlier", body=b'{"is_outlier": [1]}')])
    record = store.get("p")
    assert record.status == 400
    assert record.annotations == {"outlier": {"is_outlier": [1]}}


def test_query_by_model_time_and_limit(store):
    for i in range(5):
        store.apply([update(f"a{i}", EventKind.REQUEST, REQ, model="a")])
        time.sleep(0.002)
    middle = store.get("a2").created_at
    store.apply([update("b0", EventKind.REQUEST, REQ, model="b")])
    assert [r.prediction_id for r in store.query("a")] == ["a0", "a1", "a2", "a3", "a4"]
    assert [r.prediction_id for r in store.query("a", since=middle)] == ["a2", "a3", "a4"]
    assert [r.prediction_id for r in store.query("a", until=middle)] == ["a0", "a1"]
    assert [r.prediction_id for r in store.query("a", limit=2)] == ["a0", "a1"]
    assert store.count() == 6 and store.count("b") == 1
    assert store.get("nope") is None


def test_non_json_payloads_are_shown_as_text_or_base64(store):
    store.apply([update("p", EventKind.REQUEST, REQ, body=b"plain text"), update("p", EventKind.RESPONSE, RESP, body=b"\xff\x00")])
    as_json = record_to_json(store.get("p"))
    assert as_json["request"] == "plain text"
    assert as_json["response"]["base64"] == "/wA="


def test_get_many_finds_existing_records_across_chunks(store):
    store.apply([update(f"g{i}", EventKind.REQUEST, REQ) for i in range(1200)])
    wanted = [f"g{i}" for i in range(0, 1200, 2)] + ["absent"]
    found = store.get_many(wanted)
    assert len(found) == 600 and "absent" not in found and found["g1198"].prediction_id == "g1198"


def test_embedding_versions_with_counts_and_time_ranges(store):
    def response(pid, version, t, model="emb"):
        return update(pid, EventKind.RESPONSE, RESP, model=model, t=t, extensions={"embeddingversion": version})

    store.apply([response("e1", "emb/pen@1.0.0", 10.0), response("e2", "emb/pen@1.0.0", 11.0), response("e3", "emb/pen@1.0.1", 12.0),
                 response("o1", "other/pen@3.0.0", 13.0, model="other"), update("r1", EventKind.REQUEST, REQ, model="emb")])
    rows = store.embedding_versions("emb")
    assert [(r["version"], r["count"]) for r in rows] == [("emb/pen@1.0.0", 2), ("emb/pen@1.0.1", 1)]
    assert rows[0]["first"] <= rows[0]["last"]
    assert len(store.embedding_versions()) == 3



def test_a_different_drift_result_for_a_window_is_kept_beside_the_first(store):
    contract.drift_results_conflict_beside_each_other(store)
    assert store.expire(time.time() + 1)["drift_windows"] == 3

def test_listings_are_bounded_by_bytes_and_can_leave_requests_out(store):
    contract.listings_bounded_by_bytes(store)


def test_replicas_folding_the_same_predictions_at_once_lose_nothing(replicas):
    """Request and response events of one prediction reach different logger replicas: both must end up in
    the record (no overwrite of one merge by another, no give-up on a conflict)."""
    first, second = replicas(2)
    ids = [f"c{i}" for i in range(120)]
    errors: list[BaseException] = []

    def write(store, kind, event_type):
        try:
            for start in range(0, len(ids), 20):
                store.apply([update(pid, kind, event_type, body=b'{"k": "%s"}' % kind.value.encode()) for pid in ids[start:start + 20]])
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(first, EventKind.REQUEST, REQ)),
               threading.Thread(target=write, args=(second, EventKind.RESPONSE, RESP))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    found = first.get_many(ids)
    assert len(found) == len(ids) and first.count() == len(ids)
    assert all(set(r.event_types) == {REQ, RESP} and r.request and r.response for r in found.values())



@pytest.mark.parametrize("backend", ["postgres", "elasticsearch"])
def test_the_metrics_server_joins_feedback_through_a_shared_store(replicas, backend, tmp_path):
    """The metrics server reads the records the logger wrote, from the database every replica shares."""
    import orjson
    from helpers import ServedApp
    from prometheus_client import CollectorRegistry

    from seismo.services.metrics import MetricsSettings, create_app

    (store,) = replicas(1)
    (tmp_path / "m.yaml").write_text("models:\n  iris:\n    type: multiclass-onehot\n")
    store.apply([update("sh-1", EventKind.REQUEST, REQ, model="iris", body=b'{"instances": [[1, 2, 3, 4]]}'),
                 update("sh-1", EventKind.RESPONSE, RESP, model="iris", body=b'{"predictions": [[0.1, 0.8, 0.1]]}')])
    where = ({"postgres_url": store.url} if backend == "postgres" else
             {"elasticsearch_url": store.config.url, "elasticsearch_index_prefix": store.config.index_prefix,
              "elasticsearch_username": store.config.username, "elasticsearch_password": store.config.password})
    settings = MetricsSettings(config_file=tmp_path / "m.yaml", state_path=tmp_path / "metrics.db", scan_interval_seconds=3600, **where)
    with ServedApp(create_app(settings, CollectorRegistry())) as client:
        r = client.post("/feedback", content=orjson.dumps({"prediction_id": "sh-1", "truth": 1}))
        assert r.status_code == 200 and r.json()["model"] == "iris", r.text
        assert client.get("/v1/performance").json()["realized"]["accuracy"] == 1.0


def dead_letter(event_id, model="m", received_at=100.0, destination="http://drift/", event=b'{"id": "x"}'):
    from seismo.store.base import DeadLetter

    return DeadLetter(DeadLetter.key_of("src", event_id, destination), event_id, REQ, model, received_at, "500", destination, event)


def test_dead_letters_are_kept_whole_once_listed_in_pages_and_removed(replicas):
    first, second = replicas(2)
    payload = bytes(range(256)) * 40  # the event's bytes come back exactly
    letters = [dead_letter(f"e{i}", model="a" if i % 2 else "b", received_at=100.0 + i // 2, event=payload + bytes([i])) for i in range(7)]
    assert [first.add_dead_letter(letter) for letter in letters] == [True] * 7
    # the sink's retry, or the same letter at another replica: kept once
    assert second.add_dead_letter(letters[3]) is False
    assert second.add_dead_letter(dead_letter("e3", destination="http://metrics/")) is True  # another subscriber's refusal
    listed = second.dead_letters(limit=100)
    assert len(listed) == 8 and [(d.received_at, d.key) for d in listed] == sorted((d.received_at, d.key) for d in listed)
    assert {d.key: d.event for d in listed}[letters[5].key] == payload + bytes([5])
    assert [d.event_id for d in second.dead_letters(model="a")] == ["e1", "e3", "e5"]
    pages, after = [], None  # paging by the (received_at, key) cursor visits each once
    while page := second.dead_letters(limit=3, after=after):
        pages.append(page)
        after = (page[-1].received_at, page[-1].key)
    assert [d.key for p in pages for d in p] == [d.key for d in listed] and len(pages) == 3
    assert first.remove_dead_letter(letters[0].key) is True and second.remove_dead_letter(letters[0].key) is False
    assert len(second.dead_letters()) == 7
    assert first.expire(102.5)["dead_letters"] == 6  # all but e6, received at 103: retention counts them apart
    assert [d.event_id for d in second.dead_letters()] == ["e6"]


def test_a_prediction_id_shaped_like_a_drift_window_finds_no_drift_result(store):
    """The drift log's ids are `model:window`: a client may use that as a prediction id."""
    assert store.add_drift_window("m", 0, {"is_drift": False, "window": 0}) is True
    assert store.get("m:0") is None
    assert store.apply([update("m:0", EventKind.REQUEST, REQ)]) == [True]
    assert store.get("m:0").prediction_id == "m:0" and store.count() == 1


def test_a_version_1_postgres_database_is_brought_up_to_date(postgres_url):
    """A database a Seismo before dead letters made: the next store adds their table and says version 2."""
    from seismo.sql import connect_kwargs
    from seismo.store.postgres import SCHEMA_VERSION, PostgresRecordStore

    PostgresRecordStore(postgres_url).close()
    import pg8000.dbapi

    db = pg8000.dbapi.connect(**connect_kwargs(postgres_url))
    db.autocommit = True
    try:
        cursor = db.cursor()
        cursor.execute("DROP TABLE seismo_dead_letters")
        cursor.execute("DELETE FROM seismo_schema WHERE version > 1")
        store = PostgresRecordStore(postgres_url)
        try:
            assert store.add_dead_letter(dead_letter("old-db")) is True and len(store.dead_letters()) == 1
        finally:
            store.close()
        cursor.execute("SELECT max(version) FROM seismo_schema")
        assert cursor.fetchone()[0] == SCHEMA_VERSION == 2
    finally:
        db.close()
