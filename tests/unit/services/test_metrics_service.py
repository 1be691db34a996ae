"""The metrics server on a real socket, joining through a real SQLite record store.

Every expected number is worked out by hand from the feedback sequence in the test.
"""

import math
import time

import numpy as np
import orjson
import pytest
from helpers import ServedApp, metric_sum, wait_until
from prometheus_client import CollectorRegistry

from seismo.protocol.types import KSERVE_REQUEST, KSERVE_RESPONSE, SELDON_FEEDBACK, EventKind
from seismo.services.metrics import MetricsSettings, create_app, parse_window
from seismo.store import RecordUpdate, SQLiteRecordStore

CONFIG = """
models:
  bin:
    type: binary
    threshold: 0.5
    features: [income, fico]
    cohorts:
      - {name: high-income, when: "income > 100000"}
      - {name: subprime, when: "fico < 600"}
    business: {unit: EUR, values: [[0, -5], [-50, 20]]}
  iris:
    type: multiclass-onehot
    business: {correct: 1, incorrect: -4}
  num:
    type: multiclass-numeric
  reg:
    type: regression
    business: {unit: minutes, per_unit_error: -2}
"""


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "metrics.yaml").write_text(CONFIG)
    settings = MetricsSettings(config_file=tmp_path / "metrics.yaml", state_path=tmp_path / "metrics.db", sqlite_path=tmp_path / "records.db",
                               join_interval_seconds=0.05, scan_interval_seconds=0.1, scan_settle_seconds=0.0,
                               refresh_interval_seconds=0.1, pending_ttl_seconds=30, window="all")
    store = SQLiteRecordStore(tmp_path / "records.db")
    yield settings, store
    store.close()


@pytest.fixture
def served(setup):
    settings, store = setup
    with ServedApp(create_app(settings, CollectorRegistry())) as client:
        yield client, store


def log_prediction(store, pid, model, request, response, extensions=None, at=None):
    at = at or time.time()
    ext = extensions or {}
    store.apply([
        RecordUpdate(pid, EventKind.REQUEST, KSERVE_REQUEST, model, at, orjson.dumps(request), "application/json", extensions=ext),
        RecordUpdate(pid, EventKind.RESPONSE, KSERVE_RESPONSE, model, at, orjson.dumps(response), "application/json", status=200, extensions=ext),
    ])


def feedback(client, body, path="/feedback", headers=None):
    return client.post(path, content=orjson.dumps(body), headers=headers or {})


def performance(client, **params):
    r = client.get("/v1/performance", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_binary_sequence_gives_exact_metrics_and_seldon_counters(served):
    client, _ = served
    for p, t in zip([0.9, 0.2, 0.7, 0.4, 0.6], [1, 0, 0, 1, 1]):
        r = feedback(client, {"model": "bin", "response": {"predictions": [p]}, "truth": t})
        assert r.status_code == 200 and r.json()["status"] == "scored"
    realized = performance(client, model="bin", window="all")["realized"]
    assert realized["n"] == 5 and realized["accuracy"] == pytest.approx(0.6)
    assert realized["precision"] == pytest.approx(2 / 3) and realized["recall"] == pytest.approx(2 / 3)
    assert realized["f1"] == pytest.approx(2 / 3) and realized["specificity"] == pytest.approx(0.5)
    assert realized["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    text = client.get("/metrics").text
    for name, value in (("true_positive", 2), ("true_negative", 1), ("false_positive", 1), ("false_negative", 1)):
        assert metric_sum(text, f"seismo_metric_{name}_total", model="bin", cohort="all") == value
    assert metric_sum(text, "seismo_metrics_feedback_received_total", model="bin") == 5


def test_multiclass_onehot_macro_and_per_class_with_seldon_semantics(served):
    client, _ = served
    scores = [[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]]
    truths = [0, [0, 1, 0], 1, 1]  # a class index or a one-hot row
    for s, t in zip(scores, truths):
        assert feedback(client, {"model": "iris", "response": {"predictions": [s]}, "truth": t}).status_code == 200
    realized = performance(client, model="iris")["realized"]
    assert realized["accuracy"] == pytest.approx(0.5)
    assert realized["precision"] == pytest.approx(0.5)  # classes: 1/2, 1/1, 0/1
    assert realized["recall"] == pytest.approx(2 / 3)  # classes: 1/1, 1/3, undefined (no support)
    assert realized["per_class"]["recall"][2] is None  # NaN travels as null
    text = client.get("/metrics").text
    tp = lambda c: metric_sum(text, "seismo_metric_true_positive_total", model="iris", cohort="all", **{"class": c})  # noqa: E731
    fn = lambda c: metric_sum(text, "seismo_metric_false_negative_total", model="iris", cohort="all", **{"class": c})  # noqa: E731
    fp = lambda c: metric_sum(text, "seismo_metric_false_positive_total", model="iris", cohort="all", **{"class": c})  # noqa: E731
    assert (tp("CLASS_0"), tp("CLASS_1"), fn("CLASS_1"), fp("CLASS_0"), fp("CLASS_2")) == (1, 1, 2, 1, 1)
    assert metric_sum(text, "seismo_metric_true_negative_total", model="iris") == 0  # Seldon counts no multiclass TN


def test_regression_and_multiclass_numeric(served):
    client, _ = served
    for p, t in zip([2.0, 4.0, 10.0], [1.0, 5.0, 8.0]):
        feedback(client, {"model": "reg", "response": {"predictions": [p]}, "truth": t})
    realized = performance(client, model="reg")["realized"]
    assert realized["mae"] == pytest.approx(4 / 3) and realized["rmse"] == pytest.approx(math.sqrt(2))
    assert realized["mape"] == pytest.approx((1 + 0.2 + 0.25) / 3 * 100)
    assert performance(client, model="reg")["estimated"]["available"] is False
    # one message with three instances: the truth list is one value per instance
    r = feedback(client, {"model": "num", "response": {"predictions": [0, 2, 1]}, "truth": [0, 1, 1]})
    assert r.json()["instances"] == 3
    assert performance(client, model="num")["realized"]["accuracy"] == pytest.approx(2 / 3)


def test_feedback_by_id_joins_the_stored_prediction(served):
    client, store = served
    log_prediction(store, "p-1", "bin", {"instances": [[150000, 700]]}, {"predictions": [0.8]}, at=time.time() - 30)
    r = feedback(client, {"prediction_id": "p-1", "truth": 1})
    assert r.status_code == 200 and r.json() == {"status": "scored", "prediction_id": "p-1", "model": "bin", "instances": 1}
    report = performance(client, model="bin")
    assert report["counts"]["joined"] == 1 and report["realized"]["accuracy"] == 1.0
    text = client.get("/metrics").text
    assert metric_sum(text, "seismo_metrics_label_delay_seconds_count", model="bin") == 1
    assert metric_sum(text, "seismo_metrics_label_delay_seconds_bucket", model="bin", le="10.0") == 0
    assert metric_sum(text, "seismo_metrics_label_delay_seconds_bucket", model="bin", le="60.0") == 1
    # cohort rules read the logged request's features
    assert performance(client, model="bin", cohort="high-income")["realized"]["n"] == 1
    assert performance(client, model="bin", cohort="subprime")["realized"]["n"] == 0


def test_a_feedback_array_answers_each_item_in_order_and_one_bad_item_fails_no_other(served, setup):
    client, store = served
    for i, score in enumerate([0.9, 0.2, 0.8]):
        log_prediction(store, f"bulk-{i}", "bin", {"instances": [[150000, 700]]}, {"predictions": [score]})
    items = [
        {"prediction_id": "bulk-0", "truth": 1},  # scored: correct
        {"prediction_id": "bulk-1", "truth": 1},  # scored: wrong
        {"prediction_id": "bulk-1"},  # no truth: rejected alone
        "not an object",
        {"prediction_id": "bulk-later", "model": "bin", "truth": 0},  # not stored yet: pending
        {"model": "bin", "response": {"predictions": [0.1]}, "truth": 0},  # self-contained: scored
        {"prediction_id": "bulk-0", "truth": 1},  # the same truth again in the array: a duplicate, counted once
        {"prediction_id": "bulk-2", "truth": 0, "cohort": "bad\ncohort"},
    ]
    r = feedback(client, items)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [x["status"] for x in doc["results"]] == ["scored", "scored", "rejected", "rejected", "pending", "scored", "scored", "rejected"]
    assert (doc["scored"], doc["pending"], doc["rejected"], doc["unavailable"]) == (4, 1, 3, 0)
    assert doc["results"][2]["error"].startswith("item 2: feedback needs 'truth'")
    assert doc["results"][3]["error"] == "item 3: feedback must be a JSON object with 'truth'"
    assert "item 7" in doc["results"][7]["error"] and doc["results"][0]["prediction_id"] == "bulk-0"
    realized = performance(client, model="bin")["realized"]
    assert realized["n"] == 3 and realized["accuracy"] == pytest.approx(2 / 3)  # bulk-0, bulk-1, the self-contained one
    text = client.get("/metrics").text
    assert metric_sum(text, "seismo_metrics_feedback_duplicate_total", model="bin") == 1
    assert metric_sum(text, "seismo_metrics_feedback_rejected_total", model="unknown", reason="invalid") == 3
    # Seldon's endpoint takes one message, as Seldon sends it; an empty or oversized array is refused whole.
    assert feedback(client, items, path="/api/v1.0/feedback").status_code == 400
    assert "array is empty" in feedback(client, []).json()["error"]
    nothing_taken = feedback(client, [{"prediction_id": "bulk-0"}, 7])
    assert nothing_taken.status_code == 400 and nothing_taken.json()["rejected"] == 2
    assert nothing_taken.json()["error"].startswith("no feedback item was taken; item 0: feedback needs 'truth'")
    settings, _ = setup
    too_many = [{"prediction_id": f"x{i}", "model": "bin", "truth": 1} for i in range(settings.max_feedback_batch + 1)]
    r = feedback(client, too_many)
    assert r.status_code == 413 and "SEISMO_METRICS_MAX_FEEDBACK_BATCH" in r.json()["error"]
    assert performance(client, model="bin")["counts"]["pending_now"] == 1  # none of the refused arrays' items was taken


def test_truth_before_its_prediction_waits_and_joins_when_it_is_stored(served):
    client, store = served
    r = feedback(client, {"prediction_id": "early", "truth": 0})
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert performance(client, model="bin")["realized"]["n"] == 0
    log_prediction(store, "early", "bin", {"instances": [[1, 1]]}, {"predictions": [0.1]})
    wait_until(lambda: performance(client, model="bin")["realized"]["n"] == 1, 10, message="pending feedback joined")
    counts = performance(client, model="bin")["counts"]
    assert counts["joined"] == 1 and counts["pending_now"] == 0
    assert metric_sum(client.get("/metrics").text, "seismo_metrics_feedback_pending_total") == 1


def test_unknown_prediction_is_orphaned_after_the_ttl(setup):
    settings, _ = setup
    with ServedApp(create_app(settings.model_copy(update={"pending_ttl_seconds": 0.3}), CollectorRegistry())) as client:
        assert feedback(client, {"prediction_id": "never", "model": "bin", "truth": 1}).status_code == 202
        wait_until(lambda: performance(client, model="bin")["counts"]["orphaned"] == 1, 10, message="orphaned")
        assert performance(client, model="bin")["counts"]["pending_now"] == 0
        assert metric_sum(client.get("/metrics").text, "seismo_metrics_feedback_orphaned_total", model="bin") == 1


def test_same_prediction_twice_counts_once_and_the_later_truth_wins(served):
    client, store = served
    log_prediction(store, "twice", "bin", {"instances": [[1, 1]]}, {"predictions": [0.9]})
    feedback(client, {"prediction_id": "twice", "truth": 1})
    feedback(client, {"prediction_id": "twice", "truth": 1})  # a redelivery
    assert performance(client, model="bin")["realized"]["accuracy"] == 1.0
    feedback(client, {"prediction_id": "twice", "truth": 0})  # corrected later
    realized = performance(client, model="bin")["realized"]
    assert realized["n"] == 1 and realized["accuracy"] == 0.0
    text = client.get("/metrics").text
    assert metric_sum(text, "seismo_metric_true_positive_total", model="bin", cohort="all") == 1  # counted once
    assert metric_sum(text, "seismo_metrics_feedback_duplicate_total", model="bin") == 1
    assert metric_sum(text, "seismo_metrics_feedback_replaced_total", model="bin") == 1


def test_late_truth_is_counted_as_late(served):
    client, store = served
    log_prediction(store, "old", "bin", {"instances": [[1, 1]]}, {"predictions": [0.9]}, at=time.time() - 7200)
    feedback(client, {"prediction_id": "old", "truth": 1})
    assert performance(client, model="bin")["counts"]["late"] == 1
    assert metric_sum(client.get("/metrics").text, "seismo_metrics_label_delay_seconds_bucket", model="bin", le="3600.0") == 0


def test_seldon_feedback_bodies_in_seldon_v1_and_v2_formats(served):
    client, store = served
    seldon = {"request": {"data": {"names": ["income", "fico"], "ndarray": [[50000, 550]]}},
              "response": {"data": {"names": ["t:0", "t:1"], "ndarray": [[0.3, 0.7]]}, "meta": {"puid": "s-1"}},
              "reward": 1.0, "truth": {"data": {"ndarray": [[0, 1]]}}}
    r = feedback(client, {**seldon, "model": "bin"}, path="/api/v1.0/feedback")
    assert r.status_code == 200 and r.json()["prediction_id"] == "s-1"
    assert performance(client, model="bin", cohort="subprime")["realized"]["n"] == 1  # Seldon data.names feed the rules
    v1 = {"model": "bin", "response": {"predictions": [0.2]}, "truth": {"instances": [0]}}
    v2 = {"model": "bin", "response": {"outputs": [{"name": "p", "datatype": "FP32", "shape": [1], "data": [0.9]}]},
          "truth": {"inputs": [{"name": "t", "datatype": "INT64", "shape": [1], "data": [0]}]}}
    assert feedback(client, v1, path="/api/v1.0/feedback").status_code == 200
    assert feedback(client, v2, path="/api/v1.0/feedback").status_code == 200
    assert performance(client, model="bin")["realized"]["accuracy"] == pytest.approx(2 / 3)
    assert metric_sum(client.get("/metrics").text, "seismo_metrics_feedback_reward_total", model="bin") == 1.0
    # Seldon's executor sends feedback as an event naming the prediction in ce-requestid; it joins the record
    log_prediction(store, "puid-9", "bin", {"data": {"ndarray": [[1, 1]]}}, {"data": {"ndarray": [[0.1, 0.9]]}})
    headers = {"ce-specversion": "1.0", "ce-id": "fb-1", "ce-source": "http://iris:8000/", "ce-type": SELDON_FEEDBACK,
               "ce-requestid": "puid-9", "content-type": "application/json"}
    r = client.post("/", content=orjson.dumps({"truth": {"data": {"ndarray": [1]}}, "reward": 1}), headers=headers)
    assert r.status_code == 200 and r.json()["prediction_id"] == "puid-9"
    assert performance(client, model="bin")["counts"]["joined"] == 1


@pytest.mark.parametrize("body, message", [
    ({"model": "bin", "response": {"predictions": [0.9]}}, "needs 'truth'"),
    ({"model": "bin", "response": {"predictions": [0.9]}, "truth": 0.7}, "must be 0 or 1"),
    ({"model": "iris", "response": {"predictions": [[0.2, 0.3, 0.5]]}, "truth": 5}, "scores 3 classes"),
    ({"model": "iris", "response": {"predictions": [[0.2, 0.3, 0.5]]}, "truth": "setosa"}, "must be a number"),
    ({"model": "reg", "response": {"predictions": [1.0, 2.0]}, "truth": [1.0]}, "truth has 1 values; the prediction has 2"),
    ({"model": "nope", "response": {"predictions": [1]}, "truth": 1}, "no metrics configuration for model 'nope'"),
    ({"response": {"predictions": [1]}, "truth": 1}, "must name its 'model'"),
    ({"truth": 1}, "must name a 'prediction_id'"),
    ({"model": "bin", "response": {"predictions": [0.9]}, "truth": 1, "cohort": "a b"}, "cohort names"),
    ([1, 2], "JSON object"),
])
def test_bad_feedback_gets_400_naming_the_problem(served, body, message):
    client, _ = served
    r = feedback(client, body)
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_bad_requests_and_events(served):
    client, _ = served
    assert client.post("/feedback", content=b"{not json").status_code == 400
    headers = {"ce-specversion": "1.0", "ce-id": "x", "ce-source": "s", "ce-type": KSERVE_REQUEST, "content-type": "application/json"}
    r = client.post("/", content=b"{}", headers=headers)
    assert r.status_code == 400 and "not feedback" in r.json()["error"]
    assert client.get("/v1/performance", params={"model": "bin", "window": "soon"}).status_code == 400
    assert client.get("/v1/performance", params={"model": "zzz"}).status_code == 404
    assert client.get("/v1/performance").status_code == 400  # several models: name one
    assert client.get("/v1/performance", params={"model": "bin", "group": "vip"}).status_code == 400


def test_cohorts_from_field_header_and_extension_keep_a_bad_cohort_visible(served):
    client, store = served
    # cohort a: 9 of 10 right; cohort b: 4 of 10 right -> overall 65 %
    for i in range(10):
        feedback(client, {"model": "bin", "response": {"predictions": [0.9]}, "truth": 1 if i < 9 else 0, "cohort": "a"})
        feedback(client, {"model": "bin", "response": {"predictions": [0.9]}, "truth": 1 if i < 4 else 0}, headers={"X-Seismo-Cohort": "b"})
    assert performance(client, model="bin")["realized"]["accuracy"] == pytest.approx(0.65)
    assert performance(client, model="bin", cohort="a")["realized"]["accuracy"] == pytest.approx(0.9)
    assert performance(client, model="bin", cohort="b")["realized"]["accuracy"] == pytest.approx(0.4)
    log_prediction(store, "ext", "bin", {"instances": [[1, 1]]}, {"predictions": [0.9]}, extensions={"cohort": "c"})
    feedback(client, {"prediction_id": "ext", "truth": 1})
    assert performance(client, model="bin", cohort="c")["realized"]["n"] == 1
    wait_until(lambda: metric_sum(client.get("/metrics").text, "seismo_performance_accuracy", model="bin", cohort="b", group="all") == 0.4,
               10, message="gauge per cohort")


def test_holdout_predictions_are_reported_beside_model_driven_ones(served):
    client, store = served
    for i in range(4):
        log_prediction(store, f"h{i}", "bin", {"instances": [[1, 1]]}, {"predictions": [0.9]}, extensions={"holdout": "true"})
        log_prediction(store, f"m{i}", "bin", {"instances": [[1, 1]]}, {"predictions": [0.9]})
        feedback(client, {"prediction_id": f"h{i}", "truth": 1 if i < 2 else 0})
        feedback(client, {"prediction_id": f"m{i}", "truth": 1})
    report = performance(client, model="bin")
    assert report["groups"]["holdout"]["accuracy"] == 0.5 and report["groups"]["model"]["accuracy"] == 1.0
    assert performance(client, model="bin", group="holdout")["realized"]["n"] == 4


def test_estimated_accuracy_from_logged_scores_with_calibration_check(served):
    client, store = served
    # 40 logged predictions, each 0.9 confident: the estimate is 0.9 whatever the truth
    for i in range(40):
        log_prediction(store, f"e{i}", "iris", {"instances": [[1, 2, 3, 4]]}, {"predictions": [[0.9, 0.05, 0.05]]})
    wait_until(lambda: performance(client, model="iris")["estimated"].get("n") == 40, 10, message="predictions read")
    # truth for 36 of them, half class 0: realized 0.5, estimate on those 0.9, calibration error 0.4, far more
    # than 36 rows of a calibrated model show -> flagged (36 of 36 right, error 0.1, would not be: p about 0.05)
    for i in range(36):
        feedback(client, {"prediction_id": f"e{i}", "truth": i % 2})
    estimated = performance(client, model="iris")["estimated"]
    assert estimated["accuracy"] == pytest.approx(0.9) and estimated["on_labelled"]["accuracy"] == pytest.approx(0.9)
    assert estimated["calibration"]["error"] == pytest.approx(0.4) and estimated["calibration"]["calibrated"] is False
    assert estimated["calibration"]["p_value"] < 0.01
    assert "not reliable" in estimated["warning"]
    wait_until(lambda: metric_sum(client.get("/metrics").text, "seismo_performance_estimated_accuracy", model="iris", cohort="all", group="all") > 0.89,
               10, message="estimate gauge")


def test_business_value_realized_and_estimated_by_hand(served):
    client, store = served
    # binary, [[TN, FP], [FN, TP]] = [[0, -5], [-50, 20]]: outcomes TP, TN, FP, FN, TP -> 20 + 0 - 5 - 50 + 20 = -15
    for p, t in zip([0.9, 0.2, 0.7, 0.4, 0.6], [1, 0, 0, 1, 1]):
        feedback(client, {"model": "bin", "response": {"predictions": [p]}, "truth": t})
    business = performance(client, model="bin")["business"]
    assert business["unit"] == "EUR"
    assert business["realized"] == {"available": True, "n": 5, "total": pytest.approx(-15), "per_prediction": pytest.approx(-3)}
    # the estimate: predicted positive (p >= 0.5) is worth p*20 + (1-p)*(-5); negative p*(-50) + (1-p)*0
    expected = [0.9 * 20 - 0.1 * 5, 0.2 * -50, 0.7 * 20 - 0.3 * 5, 0.4 * -50, 0.6 * 20 - 0.4 * 5]
    assert business["estimated"]["on_labelled"]["total"] == pytest.approx(sum(expected))
    # the estimate over every prediction covers logged ones (feedback carrying its own response is not "seen")
    for pid, p in (("b1", 0.95), ("b2", 0.1)):
        log_prediction(store, pid, "bin", {"instances": [[1, 1]]}, {"predictions": [p]})
    wait_until(lambda: performance(client, model="bin")["business"]["estimated"]["n"] == 2, 10, message="predictions read")
    business = performance(client, model="bin")["business"]
    assert business["estimated"]["total"] == pytest.approx(0.95 * 20 - 0.05 * 5 + 0.1 * -50)
    assert business["realized"]["n"] == 5
    wait_until(lambda: metric_sum(client.get("/metrics").text, "seismo_business_estimated_value_per_prediction", model="bin",
                                  cohort="all", group="all") == pytest.approx(business["estimated"]["per_prediction"]), 10, message="business gauges")
    text = client.get("/metrics").text
    assert metric_sum(text, "seismo_business_value_window_total", model="bin", cohort="all", group="all") == pytest.approx(-15)
    assert metric_sum(text, "seismo_business_value_per_prediction", model="bin", cohort="all", group="all") == pytest.approx(-3)
    # multiclass with correct/incorrect: 2 right, 2 wrong -> 2 - 8
    for s, t in zip([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]], [0, 1, 1, 1]):
        feedback(client, {"model": "iris", "response": {"predictions": [s]}, "truth": t})
    iris = performance(client, model="iris")["business"]
    assert iris["unit"] == "value" and iris["realized"]["total"] == pytest.approx(-6)
    assert iris["estimated"]["on_labelled"]["total"] == pytest.approx(sum(5 * top - 4 for top in (0.8, 0.7, 0.6, 0.5)))
    # regression: per unit of absolute error; no estimate without probabilities
    for p, t in zip([2.0, 4.0, 10.0], [1.0, 5.0, 8.0]):
        feedback(client, {"model": "reg", "response": {"predictions": [p]}, "truth": t})
    reg = performance(client, model="reg")["business"]
    assert reg["realized"]["total"] == pytest.approx(-8) and reg["unit"] == "minutes"
    assert reg["estimated"]["available"] is False
    assert "business" not in performance(client, model="num")


def test_state_survives_a_restart(setup):
    settings, store = setup
    with ServedApp(create_app(settings, CollectorRegistry())) as client:
        feedback(client, {"model": "bin", "response": {"predictions": [0.9]}, "truth": 1})
        feedback(client, {"prediction_id": "later", "model": "bin", "truth": 1})
    with ServedApp(create_app(settings, CollectorRegistry())) as client:
        report = performance(client, model="bin")
        assert report["realized"]["n"] == 1 and report["counts"]["pending_now"] == 1
        log_prediction(store, "later", "bin", {"instances": [[1, 1]]}, {"predictions": [0.9]})
        wait_until(lambda: performance(client, model="bin")["realized"]["n"] == 2, 10, message="joined after restart")


def test_window_parsing():
    assert parse_window("15m", None).seconds == 900 and parse_window("1000", None).count == 1000
    assert parse_window("all", None).seconds is None and parse_window(None, "dflt") == "dflt"
    for bad in ("0", "-1", "5 minutes", "1y"):
        with pytest.raises(ValueError, match="'window'"):
            parse_window(bad, None)


def test_seldon_graph_feedback_scores_a_configured_node_and_joins_the_root_otherwise(tmp_path):
    (tmp_path / "metrics.yaml").write_text("models:\n  assistant: {type: multiclass-onehot}\n  assistant.intent: {type: multiclass-onehot}\n")
    (tmp_path / "graph.yaml").write_text(
        "kind: SeldonDeployment\nmetadata: {name: assistant}\nspec:\n  predictors:\n  - name: default\n    graph:\n"
        "      name: audio-prep\n      children: [{name: asr, children: [{name: intent}]}]\n")
    settings = MetricsSettings(config_file=tmp_path / "metrics.yaml", state_path=tmp_path / "metrics.db", sqlite_path=tmp_path / "records.db",
                               join_interval_seconds=0.05, window="all", seldon_graphs=tmp_path / "graph.yaml")
    store = SQLiteRecordStore(tmp_path / "records.db")
    # The root's response is the graph's output; the intent node's is its own (here the two disagree)
    log_prediction(store, "puid-7", "assistant", {"data": {"ndarray": [[1, 2]]}}, {"data": {"ndarray": [[0.2, 0.8]]}})
    log_prediction(store, "puid-7:intent", "assistant.intent", {"data": {"ndarray": [[3, 1]]}}, {"data": {"ndarray": [[0.9, 0.1]]}})
    try:
        with ServedApp(create_app(settings, CollectorRegistry())) as client:
            def send(node):
                headers = {"ce-specversion": "1.0", "ce-id": f"fb-{node}", "ce-source": "http://assistant:8000/", "ce-type": SELDON_FEEDBACK,
                           "ce-requestid": "puid-7", "ce-inferenceservicename": "assistant", "ce-modelid": node, "ce-endpoint": "default",
                           "content-type": "application/json"}
                return client.post("/", content=orjson.dumps({"truth": {"data": {"ndarray": [1]}}}), headers=headers)

            assert send("audio-prep").json()["prediction_id"] == "puid-7"
            assert send("intent").json()["prediction_id"] == "puid-7:intent"
            assert send("asr").json()["prediction_id"] == "puid-7"  # not configured: the root's copy
            assert performance(client, model="assistant")["realized"]["accuracy"] == 1.0
            assert performance(client, model="assistant.intent")["realized"]["accuracy"] == 0.0
            text = client.get("/metrics").text
            assert metric_sum(text, "seismo_metrics_feedback_duplicate_total", model="assistant") == 1
            assert metric_sum(text, "seismo_metrics_feedback_joined_total", model="assistant.intent") == 1
    finally:
        store.close()


def test_outcomes_answer_the_truth_joined_with_named_predictions(served):
    """`GET /v1/outcomes`: what the embeddings report colours correctness by (feedback is joined on the
    metrics server, not written back onto every record)."""
    client, store = served
    log_prediction(store, "p-1", "iris", {"instances": [[1, 2, 3, 4]]}, {"predictions": [[0.1, 0.8, 0.1]]})
    log_prediction(store, "p-2", "iris", {"instances": [[1, 2, 3, 4]]}, {"predictions": [[0.7, 0.2, 0.1]]})
    assert feedback(client, {"prediction_id": "p-1", "truth": 1}).status_code == 200
    assert feedback(client, {"prediction_id": "p-2", "truth": 2}).status_code == 200
    answer = client.get("/v1/outcomes", params={"model": "iris", "ids": "p-1,p-2,p-3"}).json()
    assert answer["outcomes"] == {"p-1": [{"predicted": 1.0, "truth": 1.0, "correct": True}],
                                  "p-2": [{"predicted": 0.0, "truth": 2.0, "correct": False}]}
    assert client.get("/v1/outcomes", params={"model": "iris", "ids": ""}).status_code == 400
    assert client.get("/v1/outcomes", params={"model": "iris", "ids": ",".join(f"x{i}" for i in range(1001))}).status_code == 400
    assert client.get("/v1/outcomes", params={"model": "iris", "ids": "a\x01b"}).status_code == 400
    assert client.get("/v1/outcomes", params={"model": "nope", "ids": "p-1"}).status_code == 404
    long_name = client.get("/v1/outcomes", params={"model": "[" * 5000, "ids": "p-1"})
    assert long_name.status_code == 404 and len(long_name.text) < 600  # the name is not echoed whole

    from seismo.embeddings.report import ReportData, joined_correctness

    data = ReportData("iris", np.zeros((1, 2)), np.zeros((3, 2)), ids=["p-1", "p-2", "p-9"], correct=[None, None, None])
    said: list[str] = []
    joined_correctness(data, [0, 0, 0], str(client.base_url), said.append)
    assert data.correct == [True, False, None] and "correctness of 2 production points" in said[-1]
    joined_correctness(data, [0, 0, 0], "http://127.0.0.1:9", said.append)  # nothing listens: said, not raised
    assert "did not answer" in said[-1]
