"""The Elasticsearch store against the documented REST contract (what only it does: indices, retries,
bulk requests, optimistic concurrency; the semantics every store shares are in test_record_store.py).

With SEISMO_TEST_ELASTICSEARCH_URL set (e.g. http://localhost:9200, credentials in
SEISMO_TEST_ELASTICSEARCH_USERNAME / _PASSWORD), the same tests run against that real cluster, each in
its own index prefix. Otherwise they run against tests/fake_elasticsearch.py.
"""

import os
import uuid

import pytest

pytest.importorskip("elasticsearch")

from fake_elasticsearch import FakeElasticsearch  # noqa: E402
from helpers import ThreadServer  # noqa: E402

from seismo.protocol.types import EventKind  # noqa: E402
from seismo.store import Record, RecordUpdate, record_to_json  # noqa: E402
from seismo.store.elasticsearch import ElasticsearchConfig, ElasticsearchRecordStore, index_name  # noqa: E402

REAL = os.environ.get("SEISMO_TEST_ELASTICSEARCH_URL")
REQ, RESP = "io.seldon.serving.inference.request", "io.seldon.serving.inference.response"


@pytest.fixture(scope="module")
def fake():
    if REAL:
        yield None
        return
    es = FakeElasticsearch()
    with ThreadServer(es.app()) as server:
        es.url = server.url
        yield es


@pytest.fixture
def store(fake):
    prefix = f"inference-log-test{uuid.uuid4().hex[:8]}"
    config = ElasticsearchConfig(
        url=REAL or fake.url,
        index_prefix=prefix,
        username=os.environ.get("SEISMO_TEST_ELASTICSEARCH_USERNAME"),
        password=os.environ.get("SEISMO_TEST_ELASTICSEARCH_PASSWORD"),
        backoff_seconds=0.01,
        max_retries=3,
    )
    s = ElasticsearchRecordStore(config, sleep=lambda s: sleeps.append(s))
    sleeps: list[float] = []
    s.sleeps = sleeps
    yield s
    s.close()


def upd(pid, kind, event_type, body=b'{"x": 1}', model="iris", **kw):
    return RecordUpdate(pid, kind, event_type, model, 1.0, body, "application/json",
                        extensions={"namespace": "seldon", "endpoint": "default"}, **kw)


def test_upsert_by_prediction_id_and_dedup(store, fake):
    assert store.apply([upd("p1", EventKind.REQUEST, REQ, body=b'{"data": {"ndarray": [[1]]}}')]) == [True]
    assert store.apply([upd("p1", EventKind.RESPONSE, RESP, body=b'{"data": {"ndarray": [[0.9]]}}')]) == [True]
    assert store.apply([upd("p1", EventKind.RESPONSE, RESP, body=b'{"data": {"ndarray": [[0.9]]}}')]) == [False]
    assert store.apply([upd("p1", EventKind.RESPONSE, RESP)]) == ["kept_aside"]  # another response for the id: not merged
    record = store.get("p1")
    assert record_to_json(record)["response"] == {"data": {"ndarray": [[0.9]]}}
    assert record.annotations["conflicts"][0]["payload"] == {"x": 1}
    assert record.event_types == (REQ, RESP)
    if fake is not None:
        assert fake.bad_headers == []
        # One document, in the Seldon-style index of its engine, namespace, model and endpoint.
        assert [i for i in fake.indices if i.startswith(store.config.index_prefix)] == [f"{store.config.index_prefix}-seldon-seldon-iris-default"]


def test_query_and_count(store):
    for i in range(3):
        store.apply([upd(f"q{i}", EventKind.REQUEST, REQ, model="a" if i < 2 else "b")])
    assert [r.prediction_id for r in store.query("a")] == ["q0", "q1"]
    assert store.count() == 3 and store.count("b") == 1
    assert store.query("a", limit=1)[0].prediction_id == "q0"
    assert store.get("missing") is None


@pytest.mark.skipif(bool(REAL), reason="needs the fake to inject failures")
def test_retries_429_and_503_with_backoff_then_gives_up_on_persistent_failure(store, fake):
    fake.fail_next = [429, 503]
    assert store.apply([upd("r1", EventKind.REQUEST, REQ)]) == [True]
    assert store.sleeps == [0.01, 0.02]  # exponential backoff between the attempts
    fake.fail_next = [503] * 10
    from elasticsearch import ApiError

    with pytest.raises(ApiError):
        store.get("r1")
    fake.fail_next = []


@pytest.mark.skipif(bool(REAL), reason="needs the fake to inject a concurrent write")
def test_concurrent_writer_conflict_is_resolved_by_re_merging(store, fake):
    store.apply([upd("c1", EventKind.REQUEST, REQ)])
    original_find = store._find_many

    def find_then_race(pids):
        found = original_find(pids)
        if found and not getattr(find_then_race, "raced", False):
            find_then_race.raced = True
            other = ElasticsearchRecordStore(store.config)  # another logger replica adds a reply first
            other.apply([upd("c1", EventKind.OUTLIER, "org.kubeflow.serving.inference.outlier", body=b'{"is_outlier": [0]}')])
        return found

    store._find_many = find_then_race
    assert store.apply([upd("c1", EventKind.RESPONSE, RESP)]) == [True]
    record = store.get("c1")
    assert set(record.event_types) == {REQ, RESP, "org.kubeflow.serving.inference.outlier"}
    assert record.annotations == {"outlier": {"is_outlier": [0]}}


@pytest.mark.skipif(bool(REAL), reason="needs the fake to hold a write before its refresh")
def test_a_record_another_replica_created_but_search_cannot_see_yet_is_found_by_a_realtime_get(store, fake):
    """Request and response events reach different logger replicas. The loser of the create got 409, looked
    the record up by search, which cannot see the winner's document until a refresh, created again, got
    409 again, and gave up after ten rounds (a 503 to the broker). Now a 409 is followed by a realtime get."""
    store.apply([upd("seed", EventKind.REQUEST, REQ)])  # the record's index exists and is searchable
    index = store.index_for(Record("r1", "iris", extensions={"namespace": "seldon", "endpoint": "default"}, event_types=(REQ,)))
    winner = {"prediction_id": "r1", "model": "iris", "created_at": 1.0, "updated_at": 1.0, "request_time": 1.0,
              "request_base64": "eyJ4IjogMX0=", "request_content_type": "application/json",
              "extensions": {"namespace": "seldon", "endpoint": "default"}, "annotations": {}, "event_types": [REQ]}
    assert fake._write(index, "r1", winner, "create", None, None)[0] == 201  # stored, not yet refreshed
    assert store.get("r1") is None  # search cannot see it
    assert store.apply([upd("r1", EventKind.RESPONSE, RESP, body=b'{"predictions": [1]}', status=200)]) == [True]
    record = store.get("r1")
    assert record.event_types == (REQ, RESP) and record.request == b'{"x": 1}' and record.response == b'{"predictions": [1]}'


@pytest.mark.skipif(bool(REAL), reason="counts the fake's requests")
def test_a_batch_is_one_search_and_one_bulk_request_with_updates_to_one_id_folded(store, fake):
    before = len(fake.requests)
    batch = [upd(f"b{i}", EventKind.REQUEST, REQ) for i in range(50)] + [upd(f"b{i}", EventKind.RESPONSE, RESP) for i in range(50)]
    batch.append(upd("b0", EventKind.RESPONSE, RESP))  # a duplicate inside the batch
    assert store.apply(batch) == [True] * 100 + [False]
    prefix = store.config.index_prefix
    assert [path for _, path in fake.requests[before:]] == [f"/{prefix}-*,-{prefix}-drift,-{prefix}-dead-letters/_search", "/_bulk"]
    assert fake.bad_headers == []
    assert store.get("b49").event_types == (REQ, RESP) and store.count() == 50
    # The second batch for the same ids updates in place (index with if_seq_no), again in one bulk request.
    assert store.apply([upd(f"b{i}", EventKind.OUTLIER, "org.kubeflow.serving.inference.outlier", body=b'{"is_outlier": [1]}')
                        for i in range(50)]) == [True] * 50
    assert store.count() == 50 and store.get("b7").annotations == {"outlier": {"is_outlier": [1]}}


@pytest.mark.skipif(bool(REAL), reason="needs the fake to refuse bulk items")
def test_bulk_items_refused_for_now_are_retried_alone_and_a_permanent_refusal_names_the_record(store, fake):
    store.apply([upd("t0", EventKind.REQUEST, REQ)])  # t0 exists: its item is an index with if_seq_no
    bulk_before = sum(1 for _, path in fake.requests if path == "/_bulk")
    fake.fail_items = [429, 503]  # the first two items of the next bulk request are refused, transiently
    assert store.apply([upd(f"t{i}", EventKind.RESPONSE, RESP) for i in range(4)]) == [True] * 4
    assert sum(1 for _, path in fake.requests if path == "/_bulk") - bulk_before == 2 and store.sleeps == [0.01]
    assert all(store.get(f"t{i}").event_types[-1] == RESP for i in range(4))
    fake.fail_items = [400]
    with pytest.raises(RuntimeError, match="refused record t9: HTTP 400"):
        store.apply([upd("t9", EventKind.REQUEST, REQ)])
    assert fake.fail_items == []


def test_index_names_are_valid_and_seldon_compatible():
    record = Record("p", "My Model/v2", event_types=("org.kubeflow.serving.inference.request",), extensions={"namespace": "Prod"})
    assert index_name("inference-log", record) == "inference-log-inferenceservice-prod-my-model-v2-default"


def test_credentials_from_a_mounted_secret(tmp_path):
    (tmp_path / "username").write_text("elastic\n")
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    config = ElasticsearchConfig.with_secret_dir("https://es:9200", tmp_path)
    assert (config.username, config.password, config.ca_certs, config.verify_certs) == ("elastic", "s3cret", str(tmp_path / "ca.crt"), True)


def test_get_many_finds_existing_records_in_one_search(store):
    store.apply([upd(f"m{i}", EventKind.REQUEST, REQ) for i in range(3)])
    found = store.get_many(["m0", "m2", "absent"])
    assert sorted(found) == ["m0", "m2"] and found["m2"].prediction_id == "m2"


def test_embedding_versions_by_terms_aggregation(store):
    def response(pid, version, model="emb"):
        return RecordUpdate(pid, EventKind.RESPONSE, RESP, model, 1.0, b"{}", "application/json",
                            extensions={"namespace": "seldon", "endpoint": "default", "embeddingversion": version})

    store.apply([response("e1", "emb/pen@1.0.0"), response("e2", "emb/pen@1.0.0"), response("e3", "emb/pen@1.0.1"),
                 upd("e4", EventKind.REQUEST, REQ, model="emb")])
    rows = store.embedding_versions("emb")
    assert {r["version"]: r["count"] for r in rows} == {"emb/pen@1.0.0": 2, "emb/pen@1.0.1": 1}
    assert all(r["first"] <= r["last"] for r in rows)
    assert store.embedding_versions("other") == []



def test_indices_only_for_configured_models_and_never_more_than_the_budget(store, fake):
    """The index name comes from the event's model, namespace and endpoint: a client making up names made
    an index each (shard exhaustion on a shared cluster)."""
    store.models = frozenset({"iris"})
    store.config = type(store.config)(**{**store.config.__dict__, "max_indices": 2})
    prefix = store.config.index_prefix
    store.apply([upd("a", EventKind.REQUEST, REQ, model="iris")])
    store.apply([upd(f"x{i}", EventKind.REQUEST, REQ, model=f"made-up-{i}") for i in range(5)])
    store.apply([RecordUpdate("n", EventKind.REQUEST, REQ, "iris", 1.0, b"{}", "application/json",
                              extensions={"namespace": "other", "endpoint": "default"})])
    store.apply([RecordUpdate("m", EventKind.REQUEST, REQ, "iris", 1.0, b"{}", "application/json",
                              extensions={"namespace": "third", "endpoint": "default"})])
    assert store.get("x3").model == "made-up-3" and store.get("m") is not None  # stored and found all the same
    if fake is not None:
        assert sorted(i for i in fake.indices if i.startswith(prefix) and not i.endswith("-drift")) == [
            f"{prefix}-other", f"{prefix}-seldon-other-iris-default", f"{prefix}-seldon-seldon-iris-default"]


@pytest.mark.skipif(bool(REAL), reason="reads the fake's templates")
def test_the_store_maps_times_as_doubles_and_payloads_as_unindexed_binary(store, fake):
    """Dynamic mapping would make epoch seconds 32-bit floats (minutes apart) and payloads analysed text."""
    template = fake.templates[store.config.index_prefix]
    assert template["index_patterns"] == [f"{store.config.index_prefix}-*"]
    properties = template["template"]["mappings"]["properties"]
    assert {name for name, spec in properties.items() if spec["type"] == "double"} >= {"created_at", "request_time", "received_at"}
    assert {name for name, spec in properties.items() if spec["type"] == "binary"} == {"request_base64", "response_base64", "event_base64"}
