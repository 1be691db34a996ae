"""Data quality of well-formed requests: the schema from a reference, the counts by hand, and the metrics
server counting logged requests once each through a real SQLite record store."""

import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from helpers import ServedApp, metric_sum, wait_until
from prometheus_client import CollectorRegistry

from seismo.performance.config import ConfigError, model_config
from seismo.performance.quality import MAX_LABELLED_FEATURES, schema_from_reference
from seismo.protocol.types import KSERVE_REQUEST, KSERVE_RESPONSE, EventKind
from seismo.services.metrics import MetricsSettings, create_app
from seismo.store import RecordUpdate, SQLiteRecordStore

# income in [20, 120] (not whole numbers: numeric), a grade among 1, 2, 3 (whole numbers: categorical), a ratio in [0, 1]
REFERENCE = np.array([[20.0, 1, 0.0], [120.0, 2, 1.0], [70.5, 3, 0.5], [50.25, 1, 0.25]] * 10)


def test_the_schema_counts_missing_out_of_range_and_unseen_values_by_hand():
    schema = schema_from_reference(REFERENCE, ("income", "grade", "ratio"), margin=0.1, max_categories=5)
    assert schema.low[0] == pytest.approx(10.0) and schema.high[0] == pytest.approx(130.0)  # 10 % of the range of 100
    assert schema.categories[1].tolist() == [1, 2, 3] and schema.categories[0] is None and schema.categories[2] is None
    rows = np.array([
        [125.0, 2, 0.5],      # inside the margin: fine
        [131.0, 4, 0.5],      # income out of range, grade unseen
        [np.nan, 1, -0.2],    # income missing, ratio out of range (margin 0.1 of a range of 1)
        [5.0, np.nan, 1.05],  # income out of range, grade missing, ratio inside the margin
    ])
    assert dict(schema.check(rows, 4)) == {("income", "out_of_range"): 2, ("grade", "unseen_category"): 1,
                                           ("income", "missing"): 1, ("ratio", "out_of_range"): 1, ("grade", "missing"): 1}
    assert dict(schema.check(np.ones((3, 2)), 3)) == {("*", "shape"): 3}
    assert dict(schema.check(None, 2)) == {("*", "type"): 2}
    wide = schema_from_reference(np.zeros((5, MAX_LABELLED_FEATURES + 3)))
    assert wide.labels[0] == "0" and wide.labels[-1] == "other"  # labels stay bounded whatever the width


def test_the_config_reads_the_reference_and_refuses_what_it_cannot_use(tmp_path):
    np.save(tmp_path / "reference.npy", REFERENCE)
    config = model_config("m", {"type": "binary", "features": ["income", "grade", "ratio"],
                                "diagnosis": {"reference": "reference.npy"}, "quality": {"margin": 0.2}}, tmp_path)
    assert config.quality is not None and config.quality.labels == ("income", "grade", "ratio")
    assert config.quality.high[0] == pytest.approx(140.0)
    assert model_config("m", {"type": "binary", "quality": {"reference": "missing.npy"}}, tmp_path).quality is None  # warned, not fatal
    with pytest.raises(ConfigError, match="quality needs a reference"):
        model_config("m", {"type": "binary", "quality": {}}, tmp_path)
    with pytest.raises(ConfigError, match="margin"):
        model_config("m", {"type": "binary", "quality": {"reference": "reference.npy", "margin": -1}}, tmp_path)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ConfigError, match="quality reference"):
        model_config("m", {"type": "binary", "quality": {"reference": "empty.npy"}}, tmp_path)


def scanning(tmp_path: Path, **more) -> MetricsSettings:
    """A metrics server on tmp_path's metrics.yaml that scans tmp_path/records.db every 50 ms."""
    return MetricsSettings(config_file=tmp_path / "metrics.yaml", state_path=tmp_path / "metrics.db", sqlite_path=tmp_path / "records.db",
                           scan_interval_seconds=0.05, scan_settle_seconds=0.0, refresh_interval_seconds=0.1, window="all", **more)


def log_prediction(store: SQLiteRecordStore, pid: str, request: dict, scores: list) -> None:
    """A logged prediction of model `credit`: its request and response records, as the logger stores them."""
    at = time.time()
    store.apply([RecordUpdate(pid, EventKind.REQUEST, KSERVE_REQUEST, "credit", at, orjson.dumps(request), "application/json"),
                 RecordUpdate(pid, EventKind.RESPONSE, KSERVE_RESPONSE, "credit", at, orjson.dumps({"predictions": scores}),
                              "application/json", status=200)])


def test_the_metrics_server_counts_each_logged_request_once(tmp_path):
    np.save(tmp_path / "reference.npy", REFERENCE)
    (tmp_path / "metrics.yaml").write_text("models:\n  credit:\n    type: binary\n    features: [income, grade, ratio]\n"
                                           "    quality: {reference: reference.npy, max_categories: 5}\n")
    settings = scanning(tmp_path)
    store = SQLiteRecordStore(tmp_path / "records.db")

    def log(pid: str, request: dict, scores: list) -> None:
        log_prediction(store, pid, request, scores)

    try:
        with ServedApp(create_app(settings, CollectorRegistry())) as client:
            log("a", {"instances": [[70.0, 2, 0.5], [500.0, 9, 0.5]]}, [0.2, 0.9])   # one income out of range, one grade unseen
            log("b", {"instances": [[None, 1, 0.5]]}, [0.4])                          # income missing (JSON null)
            log("c", {"instances": [[1.0, 2.0]]}, [0.7])                              # two features: the shape
            log("d", {"instances": [["high", 1, 0.5]]}, [0.7])                        # not a number: the type

            def issues(feature: str, issue: str) -> float:
                return metric_sum(client.get("/metrics").text, "seismo_data_quality_issues_total", model="credit", feature=feature, issue=issue)

            wait_until(lambda: metric_sum(client.get("/metrics").text, "seismo_data_quality_instances_total", model="credit") == 5, 10,
                       message="every logged instance checked")
            time.sleep(0.3)  # more scans: a re-read record must not count again
            text = client.get("/metrics").text
            assert metric_sum(text, "seismo_data_quality_instances_total", model="credit") == 5
            assert (issues("income", "out_of_range"), issues("grade", "unseen_category"), issues("income", "missing")) == (1, 1, 1)
            assert (issues("*", "shape"), issues("*", "type")) == (1, 1)
            assert issues("ratio", "out_of_range") == 0
    finally:
        store.close()


def test_a_finding_becomes_its_records_quality_annotation_through_the_real_logger(tmp_path):
    """The metrics server posts what it found as an io.seismo.inference.quality event (here straight to a
    real logger, the broker's role being only to route it); the logger keeps it as annotations.quality.
    A request with nothing to report gets no annotation and no event."""
    from seismo.services.logger import LoggerSettings
    from seismo.services.logger import create_app as logger_app

    np.save(tmp_path / "reference.npy", REFERENCE)
    (tmp_path / "metrics.yaml").write_text("models:\n  credit:\n    type: binary\n    features: [income, grade, ratio]\n"
                                           "    quality: {reference: reference.npy, max_categories: 5}\n")
    store = SQLiteRecordStore(tmp_path / "records.db")
    try:
        with ServedApp(logger_app(LoggerSettings(sqlite_path=tmp_path / "records.db"), CollectorRegistry())) as logger:
            settings = scanning(tmp_path, sink_url=f"{logger.base_url}/")
            with ServedApp(create_app(settings, CollectorRegistry())) as client:
                for pid, rows in (("odd", [[70.0, 2, 0.5], [500.0, 9, 0.5]]), ("fine", [[70.0, 2, 0.5]])):
                    log_prediction(store, pid, {"instances": rows}, [0.5] * len(rows))
                annotations = lambda pid: logger.get(f"/v1/records/{pid}").json()["annotations"]  # noqa: E731
                wait_until(lambda: "quality" in annotations("odd"), 10, message="the finding on the odd request's record")
                assert annotations("odd")["quality"] == {"model": "credit", "instances": 2, "issues": [
                    {"feature": "grade", "issue": "unseen_category", "instances": 1},
                    {"feature": "income", "issue": "out_of_range", "instances": 1}]}
                wait_until(lambda: metric_sum(client.get("/metrics").text, "seismo_data_quality_instances_total", model="credit") == 3, 10,
                           message="both requests checked")
                time.sleep(0.3)  # more scans and publishing rounds: nothing more may be posted
                assert "quality" not in annotations("fine")
                text = client.get("/metrics").text
                assert metric_sum(text, "seismo_data_quality_annotations_total", model="credit", outcome="published") == 1
                assert metric_sum(logger.get("/metrics").text, "seismo_logger_events_stored_total", type="io.seismo.inference.quality") == 1
    finally:
        store.close()


def test_a_finding_that_cannot_be_posted_is_counted_and_the_others_still_go(tmp_path, monkeypatch):
    """One finding whose post fails in an unexpected way (a bug, not the sink) is counted sink_failed; the
    findings posted beside it in the same round still reach their records, and the loop goes on."""
    import seismo.services.metrics.core as metrics_core
    from seismo.services.logger import LoggerSettings
    from seismo.services.logger import create_app as logger_app

    real_publish = metrics_core.publish_event

    async def fragile(poster, sink_url, event, what, tries=5):
        if event.extensions.get("requestid") == "bad":
            raise RuntimeError("a bug the other findings must not wait on")
        await real_publish(poster, sink_url, event, what, tries)

    monkeypatch.setattr(metrics_core, "publish_event", fragile)
    np.save(tmp_path / "reference.npy", REFERENCE)
    (tmp_path / "metrics.yaml").write_text("models:\n  credit:\n    type: binary\n    quality: {reference: reference.npy}\n")
    store = SQLiteRecordStore(tmp_path / "records.db")
    try:
        with ServedApp(logger_app(LoggerSettings(sqlite_path=tmp_path / "records.db"), CollectorRegistry())) as logger:
            settings = scanning(tmp_path, sink_url=f"{logger.base_url}/")
            with ServedApp(create_app(settings, CollectorRegistry())) as client:
                for pid in ("bad", "good-1", "good-2"):
                    log_prediction(store, pid, {"instances": [[500.0, 1, 0.5]]}, [0.5])
                annotated = lambda pid: "quality" in logger.get(f"/v1/records/{pid}").json()["annotations"]  # noqa: E731
                wait_until(lambda: annotated("good-1") and annotated("good-2"), 10, message="the other findings on their records")
                count = lambda outcome: metric_sum(client.get("/metrics").text, "seismo_data_quality_annotations_total",  # noqa: E731
                                                   model="credit", outcome=outcome)
                wait_until(lambda: count("sink_failed") == 1, 10, message="the failing one counted")
                assert count("published") == 2 and not annotated("bad")
                assert client.get("/healthz").status_code == 200
    finally:
        store.close()


def test_a_request_the_check_cannot_handle_is_counted_and_the_scan_goes_on(tmp_path, monkeypatch):
    from seismo.performance.quality import QualitySchema

    original = QualitySchema.check

    def fragile(self, rows, n):
        if rows is not None and rows.size and rows.flat[0] == 666:
            raise RuntimeError("a bug the next request must not wait on")
        return original(self, rows, n)

    monkeypatch.setattr(QualitySchema, "check", fragile)
    np.save(tmp_path / "reference.npy", REFERENCE)
    (tmp_path / "metrics.yaml").write_text("models:\n  credit:\n    type: binary\n    quality: {reference: reference.npy}\n")
    settings = scanning(tmp_path)
    store = SQLiteRecordStore(tmp_path / "records.db")
    try:
        with ServedApp(create_app(settings, CollectorRegistry())) as client:
            for pid, row in (("bad", [666.0, 1, 0.5]), ("good", [500.0, 1, 0.5])):
                log_prediction(store, pid, {"instances": [row]}, [0.5])
            wait_until(lambda: metric_sum(client.get("/metrics").text, "seismo_data_quality_issues_total", model="credit", issue="out_of_range")
                       == 1, 10, message="the record after the failing one checked")
            text = client.get("/metrics").text
            assert metric_sum(text, "seismo_metrics_feedback_rejected_total", model="credit", reason="quality_failed") == 1
    finally:
        store.close()
