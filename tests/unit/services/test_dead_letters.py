"""Dead letters end to end: the broker gives up on a subscriber, the logger (its dead-letter sink)
keeps the event whole in the store, and `seismo dead-letters replay` delivers it once the subscriber
is fixed. Broker and logger in process on real loopback ports, the command through its parser."""

import orjson
from helpers import RecordingSink, ServedApp, ThreadServer, metric_sum, run_cli, wait_until
from prometheus_client import CollectorRegistry

from seismo.broker.triggers import Delivery, Trigger
from seismo.services.broker import BrokerSettings
from seismo.services.broker import create_app as broker_app
from seismo.services.logger import LoggerSettings
from seismo.services.logger import create_app as logger_app

REQUEST = "org.kubeflow.serving.inference.request"
BODY = orjson.dumps({"instances": [[1.0, 2.0, 3.0]]})


def event(i: int) -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": f"pred-{i}", "ce-source": "http://model/", "ce-type": REQUEST,
            "ce-inferenceservicename": "iris", "ce-requestid": f"pred-{i}", "content-type": "application/json"}


def test_a_dead_letter_is_kept_whole_listed_and_replayed_to_its_subscriber(tmp_path):
    db = tmp_path / "records.db"
    subscriber = RecordingSink(always_status=500)
    with ThreadServer(subscriber.app()) as sub, ServedApp(logger_app(LoggerSettings(sqlite_path=db), CollectorRegistry())) as logger:
        sink = f"{logger.base_url}/v1/dead-letters"
        delivery = Delivery(retry=1, backoff_policy="linear", backoff_delay=0.01, timeout=5.0, dead_letter_uri=sink)
        triggers = [Trigger("drift", sub.url + "/", {"type": REQUEST}, delivery)]
        broker_settings = BrokerSettings(journal_path=tmp_path / "broker.db", poll_interval_seconds=0.02)
        with ServedApp(broker_app(broker_settings, CollectorRegistry(), triggers)) as broker:
            for i in range(3):
                assert broker.post("/", headers=event(i), content=BODY).status_code == 202
            wait_until(lambda: len(logger.get("/v1/dead-letters").json()["dead_letters"]) == 3, 15, message="three dead letters")
            # the sink's own retry of one of them: kept once, counted once
            letters = logger.get("/v1/dead-letters").json()["dead_letters"]
            assert {d["code"] for d in letters} == {"500"} and {d["destination"] for d in letters} == {sub.url + "/"}
            assert [d["id"] for d in letters] == ["pred-0", "pred-1", "pred-2"]
            assert metric_sum(logger.get("/metrics").text, "seismo_logger_dead_letters_total", code="500") == 3

        listed = run_cli("dead-letters", "list", "--sqlite", db)
        assert listed.returncode == 0 and listed.stdout.count("code=500") == 3 and "3 dead letter(s)" in listed.stderr
        dry = run_cli("dead-letters", "replay", "--sqlite", db, "--dry-run")
        assert dry.returncode == 0 and subscriber.received == []

        still_down = run_cli("dead-letters", "replay", "--sqlite", db, "--limit", "1")
        assert still_down.returncode == 1 and "1 refused 500" in still_down.stdout
        subscriber.always_status = None  # the subscriber is fixed
        replayed = run_cli("dead-letters", "replay", "--sqlite", db, "--key", letters[1]["key"])
        assert replayed.returncode == 0 and replayed.stdout.strip() == "1 replayed"
        replayed = run_cli("dead-letters", "replay", "--sqlite", db)
        assert replayed.returncode == 0 and replayed.stdout.strip() == "2 replayed"
        assert logger.get("/v1/dead-letters").json()["dead_letters"] == []
        assert run_cli("dead-letters", "replay", "--sqlite", db).stdout.strip() == "nothing to replay"

    # each event arrived as the subscriber first got it: same attributes and bytes, no knativeerror* extensions
    got = sorted(subscriber.received, key=lambda r: r.headers["ce-id"])
    assert [r.headers["ce-id"] for r in got] == ["pred-0", "pred-1", "pred-2"]
    assert all(r.body == BODY and r.headers["ce-inferenceservicename"] == "iris" and r.headers["content-type"] == "application/json"
               for r in got)
    assert not any(name.startswith("ce-knativeerror") for r in got for name in r.headers)


def test_the_sink_keeps_a_redelivered_dead_letter_once_and_refuses_what_it_cannot_keep(tmp_path):
    settings = LoggerSettings(sqlite_path=tmp_path / "records.db")
    with ServedApp(logger_app(settings, CollectorRegistry())) as logger:
        letter = event(7) | {"ce-knativeerrorcode": "503", "ce-knativeerrordest": "http://drift/"}
        first = logger.post("/v1/dead-letters", headers=letter, content=BODY)
        again = logger.post("/v1/dead-letters", headers=letter, content=BODY)
        assert (first.status_code, first.json()) == (202, {"counted": True, "kept": True})
        assert (again.status_code, again.json()) == (202, {"counted": False, "kept": True})
        assert metric_sum(logger.get("/metrics").text, "seismo_logger_dead_letters_total") == 1
        assert logger.get("/v1/dead-letters", params={"model": "other"}).json() == {"dead_letters": []}
        assert logger.get("/v1/dead-letters", params={"limit": "0"}).status_code == 400
    # the store gone: the sink answers 503 (the broker retries it) instead of claiming it kept the event
    app = logger_app(settings, CollectorRegistry())
    with ServedApp(app) as logger:
        app.state.logger._store().close()
        answer = logger.post("/v1/dead-letters", headers=event(8) | {"ce-knativeerrordest": "http://drift/"}, content=BODY)
        assert answer.status_code == 503 and "store unavailable" in answer.json()["error"]


def test_dead_letter_labels_stay_few_whatever_codes_and_types_arrive(tmp_path):
    """Models, types and subscriber codes come from the event: thousands of distinct ones make a handful of series."""
    with ServedApp(logger_app(LoggerSettings(sqlite_path=tmp_path / "records.db"), CollectorRegistry())) as logger:
        for i in range(1000):
            headers = event(i) | {"ce-type": f"made.up.{i}", "ce-inferenceservicename": f"model-{i}", "ce-knativeerrorcode": str(100 + i)}
            assert logger.post("/v1/dead-letters", headers=headers, content=BODY).status_code == 202
        series = [line for line in logger.get("/metrics").text.splitlines() if line.startswith("seismo_logger_dead_letters_total{")]
        assert len(series) <= 20 and metric_sum(logger.get("/metrics").text, "seismo_logger_dead_letters_total") == 1000
        assert len(logger.get("/v1/dead-letters", params={"limit": 1000}).json()["dead_letters"]) == 1000  # every one kept


def test_replay_skips_what_it_cannot_send_and_carries_on(tmp_path):
    """A forged destination, a destination that is no URL, a stored event that does not parse: counted, kept, the rest sent."""
    from seismo.dead_letters import replay
    from seismo.store import SQLiteRecordStore
    from seismo.store.base import DeadLetter

    store = SQLiteRecordStore(tmp_path / "records.db")
    good = b'{"specversion": "1.0", "id": "ok", "source": "s", "type": "t", "data": {"x": 1}}'
    letters = [DeadLetter(f"k{i}", f"e{i}", "t", "m", float(i), "500", dest, event) for i, (dest, event) in enumerate([
        ("file:///etc/passwd", good), ("http://[not a url", good), ("http://sink/", b"{not json"), (None, good), ("http://sink/", good)])]
    for letter in letters:
        store.add_dead_letter(letter)
    sent = []
    outcomes = replay(store, lambda url, headers, body: sent.append((url, headers["ce-id"])) or 202, store.dead_letters())
    assert dict(outcomes) == {"bad destination": 1, "unreadable": 1, "no destination": 1, "replayed": 2}
    assert sent == [("http://[not a url", "ok"), ("http://sink/", "ok")]  # the sender decides what a URL is
    assert [d.key for d in store.dead_letters()] == ["k0", "k2", "k3"]  # what was not taken stays
    store.close()
