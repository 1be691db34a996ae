"""Hostile inputs on the diagnosis's paths: stored records whose inputs cannot be read, 10,000 cohorts
named by feedback, and the lineage endpoint with ids it cannot know. Real SQLite store and ledger."""

import asyncio
import time

import orjson
from helpers import ServedApp, metric_sum
from prometheus_client import CollectorRegistry, generate_latest

from seismo.performance.tracker import Incoming
from seismo.protocol.feedback import parse_feedback
from seismo.protocol.types import KSERVE_REQUEST, KSERVE_RESPONSE, EventKind
from seismo.services.logger import LoggerSettings
from seismo.services.logger import create_app as create_logger
from seismo.services.metrics import MetricsService, MetricsSettings
from seismo.store import RecordUpdate, SQLiteRecordStore
from seismo.topology import EXAMPLE_TABULAR_MODEL

MODEL = "tabular-classifier"
PROBABILITIES = {"outputs": [{"name": "probabilities", "datatype": "FP64", "shape": [1, 3], "data": [0.8, 0.1, 0.1]}]}


def nested(depth) -> bytes:
    """A JSON array nested `depth` deep (orjson refuses to write one that deep)."""
    return b"[" * depth + b"1.0" + b"]" * depth


def request(data, shape):
    return {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": shape, "data": data}]}


def log(store, pid, body, at):
    store.apply([RecordUpdate(pid, EventKind.REQUEST, KSERVE_REQUEST, MODEL, at, body, "application/json"),
                 RecordUpdate(pid, EventKind.RESPONSE, KSERVE_RESPONSE, MODEL, at, orjson.dumps(PROBABILITIES), "application/json", 200)])


def test_unreadable_inputs_and_ten_thousand_cohorts_neither_stop_nor_flood_the_diagnosis(tmp_path):
    (tmp_path / "metrics.yaml").write_text(f"models:\n  {MODEL}:\n    type: multiclass-onehot\n    diagnosis:\n"
                                           f"      reference: {EXAMPLE_TABULAR_MODEL / 'reference.npy'}\n")
    settings = MetricsSettings(config_file=tmp_path / "metrics.yaml", state_path=tmp_path / "metrics.db", sqlite_path=tmp_path / "records.db",
                               diagnosis_interval_seconds=0, window="all")
    store = SQLiteRecordStore(tmp_path / "records.db")
    now = time.time() - 100
    bad = {"nested-300": b'{"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 1], "data": ' + nested(300) + b"}]}",
           "strings": orjson.dumps({"instances": [["a"] * 13]}),
           "wide-10000": orjson.dumps(request([0.5] * 10_000, [1, 10_000])),
           "beyond-fp32": orjson.dumps(request([1e39] * 13, [1, 13])),
           "not-json": b"\x00\xff{"}
    for i, (pid, body) in enumerate(bad.items()):
        log(store, pid, body, now + i)
    for i in range(120):  # good traffic after the bad records, so a stuck scan would show
        log(store, f"good-{i}", orjson.dumps(request([13.0, 2.0, 2.4, 19.0, 100.0, 2.3, 2.0, 0.4, 1.6, 5.0, 1.0, 2.6, 750.0], [1, 13])),
            now + 10 + i * 0.1)
    registry = CollectorRegistry()
    core = MetricsService(settings, registry)

    async def scenario():
        await core.start()
        try:
            added = await core.batcher.call(lambda: core.tracker.scan(settle=0.0, lookback=3600))
            # 10,000 distinct cohorts named by feedback, one labelled instance each, on good predictions
            items = [Incoming(parse_feedback({"prediction_id": f"good-{i % 120}", "truth": 0, "cohort": f"junk-{i}"}), time.time())
                     for i in range(10_000)]
            for start in range(0, len(items), 500):
                await core.batcher.call(core.tracker.process, items[start:start + 500])
            started = time.monotonic()
            doc = await core.diagnose(MODEL, None, None)
            await core.batcher.call(core._diagnose_all)  # the periodic loop's body
            seconds = time.monotonic() - started
            # The gauges' refresh computes windows only for cohorts with gauges ("all"), not for 10,000 junk ones.
            windows = []
            scored_rows = core.tracker.ledger.scored_rows
            core.tracker.ledger.scored_rows = lambda model, cohort, *rest: windows.append(cohort) or scored_rows(model, cohort, *rest)
            await core.batcher.call(core.tracker.refresh_gauges, core.default_window)
            assert windows == ["all", "all"]  # its "model" group and both groups together (no holdout feedback here)
            return added, doc, seconds
        finally:
            await core.stop()

    added, doc, seconds = asyncio.run(scenario())
    store.close()
    text = generate_latest(registry).decode()
    assert added == 125  # every record's scores were read, the bad ones' inputs refused one by one
    assert metric_sum(text, "seismo_metrics_feedback_rejected_total", model=MODEL, reason="unreadable_inputs") == 4  # nested, strings, wide, not JSON
    assert len(doc["cohorts"]) == 51 and "all" in doc["cohorts"]  # all + the 50 largest, not 10,000
    notes = doc["cohorts"]["all"]["evidence"]["notes"]
    assert any("1 instances' inputs left out" in n for n in notes)  # the one beyond FP32's range, finite no more
    # No verdict gauge for cohorts that are not label values: junk cohorts share no 'other' series either.
    cohorts = {line.split('cohort="')[1].split('"')[0] for line in text.splitlines() if line.startswith("seismo_diagnosis_verdict{")}
    assert cohorts == {"all"}
    assert seconds < 120  # generous: this is a bound on work, not a speed goal


def test_lineage_of_ids_it_cannot_know_is_a_404_naming_them(tmp_path):
    with ServedApp(create_logger(LoggerSettings(sqlite_path=tmp_path / "records.db"), CollectorRegistry())) as client:
        for pid in ("a%0Ab", "x" * 5000, "%F0%9F%92%A5"):
            r = client.get(f"/v1/records/{pid}/lineage")
            assert r.status_code == 404 and "no record for prediction id" in r.json()["error"], r.text
