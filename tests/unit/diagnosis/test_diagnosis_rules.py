"""Every decision rule of seismo.diagnosis.rules on evidence built by hand, and the evidence helpers."""

import numpy as np
import pytest

from seismo.diagnosis.evidence import change_point, ks_test
from seismo.diagnosis.rules import Concentration, DriftTest, Evidence, Thresholds, UpstreamChange, WindowPerformance, decide


def window(error, n=200, estimated=None, start=0.0):
    se = float(np.sqrt(max(error * (1 - error), 0.01) / n))
    return WindowPerformance(n, error, se, start, start + 100.0, estimated)


def drift(p):
    return DriftTest(p, 0.3 if p < 0.01 else 0.05, 0.5 if p < 0.01 else 0.0, 200, 200)


def evidence(first, latest, moved=1.0, conc=None, upstream=(), n=400, validation=0.04):
    return Evidence(n, "accuracy", validation, first, latest, 150.0, None, drift(moved), None, conc, list(upstream))


def test_too_few_labels_is_no_ground_truth_whatever_else_moved():
    v = decide(Evidence(12, "accuracy", 0.04, input_vs_first=drift(1e-9)))
    assert v.verdict == "no_ground_truth" and v.confidence == pytest.approx(0.8) and "12 labelled" in v.reasons[0]


def test_within_tolerance_is_healthy_and_a_noisy_small_window_is_not_called_a_regression():
    assert decide(evidence(window(0.04), window(0.07))).verdict == "healthy"
    # 0.15 error over 20 instances: beyond the tolerance, but not beyond sampling noise.
    assert decide(evidence(window(0.04, 20), window(0.15, 20)), Thresholds(min_labelled=20)).verdict == "healthy"
    assert decide(evidence(window(0.04), window(0.15))).verdict != "healthy"


def test_bad_from_the_start_without_decline_is_training_serving_skew():
    v = decide(evidence(window(0.35), window(0.37), moved=0.5))
    assert v.verdict == "training_serving_skew" and v.confidence > 0.5


def test_matched_then_declined_is_drift_not_skew():
    assert decide(evidence(window(0.04), window(0.30), moved=0.5)).verdict == "concept_drift"


def test_declined_with_moved_inputs_and_concentrated_errors_is_data_drift():
    v = decide(evidence(window(0.04), window(0.25), moved=1e-6, conc=Concentration(100, 300, 0.5, 0.05)))
    assert v.verdict == "data_drift" and any("concentrate" in r for r in v.reasons)


def test_declined_with_moved_inputs_and_an_estimate_that_follows_is_data_drift():
    v = decide(evidence(window(0.04, estimated=0.05), window(0.25, estimated=0.20), moved=1e-6, conc=Concentration(10, 390, 0.1, 0.1)))
    assert v.verdict == "data_drift" and any("estimate" in r for r in v.reasons)


def test_declined_with_inputs_unmoved_or_errors_elsewhere_and_the_estimate_flat_is_concept_drift():
    flat = dict(moved=0.8, conc=Concentration(10, 390, 0.1, 0.25))
    v = decide(evidence(window(0.04, estimated=0.1), window(0.25, estimated=0.1), **flat))
    assert v.verdict == "concept_drift" and "did not move" in v.reasons[-1] and "estimate stayed up" in v.reasons[-1]
    moved_elsewhere = decide(evidence(window(0.04, estimated=0.1), window(0.25, estimated=0.11), moved=1e-6, conc=Concentration(10, 390, 0.1, 0.25)))
    assert moved_elsewhere.verdict == "concept_drift" and moved_elsewhere.confidence < v.confidence


def test_an_upstream_version_change_after_the_first_window_is_the_cascade_and_names_the_culprit():
    change = UpstreamChange("asr", "1", "2", drift(1e-8), 180.0, 400)
    v = decide(evidence(window(0.04), window(0.25), moved=1e-6, conc=Concentration(100, 300, 0.5, 0.05), upstream=[change]))
    assert v.verdict == "upstream_cascade" and v.culprit == {"model": "asr", "version": "2", "previous_version": "1", "at": 180.0}
    # The same upstream change before this model's first window ended cannot explain a later decline.
    early = UpstreamChange("asr", "1", "2", drift(1e-8), 50.0, 400)
    assert decide(evidence(window(0.04), window(0.25), moved=0.5, upstream=[early])).verdict == "concept_drift"
    # An upstream model that moved nothing is no culprit; a healthy model has no cascade.
    quiet = UpstreamChange("asr", "1", "1", drift(0.4), 180.0, 400)
    assert decide(evidence(window(0.04), window(0.25), moved=0.5, upstream=[quiet])).verdict == "concept_drift"
    assert decide(evidence(window(0.04), window(0.05), upstream=[change])).verdict == "healthy"


def test_an_upstream_change_inside_a_short_first_window_counts_when_this_model_fell_right_after_it():
    """Few labels make the first window long: a change at t=50 falls inside it (ends at 100). It is the
    cascade when this model's error before vs after the change rose beyond noise, not otherwise."""
    hurt = UpstreamChange("asr", "1", "2", drift(1e-8), 50.0, 400, downstream_before=window(0.04, 80), downstream_after=window(0.30, 80))
    v = decide(evidence(window(0.10), window(0.30), moved=0.5, upstream=[hurt]))
    assert v.verdict == "upstream_cascade" and v.culprit["model"] == "asr"
    unhurt = UpstreamChange("asr", "1", "2", drift(1e-8), 50.0, 400, downstream_before=window(0.20, 80), downstream_after=window(0.22, 80))
    assert decide(evidence(window(0.10), window(0.30), moved=0.5, upstream=[unhurt])).verdict == "concept_drift"


def test_without_a_validation_figure_the_first_window_is_the_baseline():
    v = decide(evidence(window(0.10), window(0.30), validation=None))
    assert v.verdict == "concept_drift"
    assert decide(evidence(window(0.30), window(0.31), validation=None)).verdict == "healthy"


def test_change_point_finds_the_shift_and_ks_names_the_moved_feature():
    errors = np.r_[np.zeros(300), np.ones(100)]
    assert change_point(np.arange(400.0), errors) == pytest.approx(300.0)
    assert change_point(np.arange(10.0), np.zeros(10)) is None
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(300, 3))
    b[:, 2] += 1.0
    test = ks_test(a, b, ["x", "y", "z"])
    assert test.p_value < 1e-6 and test.top_features == ["z"]
    assert ks_test(a, rng.normal(size=(300, 3)), ["x", "y", "z"]).p_value > 0.01


def test_the_upstream_change_is_dated_by_the_new_versions_earliest_answer_not_the_first_stored(tmp_path):
    """Concurrent clients and batched events reach the logger out of order: the record stored first
    need not be the new version's first answer. The change is its earliest response time."""
    import orjson

    from seismo.diagnosis.cascade import compare_upstream
    from seismo.protocol.types import KSERVE_RESPONSE, EventKind
    from seismo.store import RecordUpdate, SQLiteRecordStore

    store = SQLiteRecordStore(tmp_path / "records.db")
    body = orjson.dumps({"outputs": [{"name": "gain", "datatype": "FP64", "shape": [1], "data": [1.0]}]})
    answers = [(f"v1-{i}", "1", 1000.0 + i) for i in range(30)] + [("v2-late", "2", 1105.0), ("v2-early", "2", 1101.0)]
    answers += [(f"v2-{i}", "2", 1110.0 + i) for i in range(30)]
    try:
        for pid, version, at in answers:  # stored in this order: v2-late before v2-early
            store.apply([RecordUpdate(pid, EventKind.RESPONSE, KSERVE_RESPONSE, "scan-gain", at, body, "application/json", 200, version,
                                      {"modelversion": version})])
        change = compare_upstream(store, "scan-gain", 60, 1100.0, None, None)
        assert change is not None and change.version_before == "1" and change.version_after == "2"
        assert change.changed_at == 1101.0
    finally:
        store.close()


def test_a_seldon_parents_output_is_read_where_its_child_received_it_not_from_its_subtree_response(tmp_path):
    """Seldon logs a node's response after its children answered: the root `asr`'s logged response is
    `intent`'s output. When intent regresses on its own, the walk must not see asr's outputs move."""
    import orjson

    from seismo.diagnosis.cascade import compare_upstream, upstream_changes
    from seismo.protocol.cloudevents import CloudEvent
    from seismo.protocol.seldon_graph import load_graphs
    from seismo.services.logger import update_from_event
    from seismo.store import SQLiteRecordStore

    (tmp_path / "graph.yaml").write_text("kind: SeldonDeployment\nmetadata: {name: assistant}\nspec:\n  predictors:\n"
                                         "  - name: default\n    graph: {name: asr, children: [{name: intent}]}\n")
    graphs = load_graphs(tmp_path / "graph.yaml")
    rng = np.random.default_rng(3)
    store = SQLiteRecordStore(tmp_path / "records.db")

    def event(node, kind, puid, at, body):
        return CloudEvent(id=f"{puid}-{node}-{kind}", source="http://assistant/", type=f"io.seldon.serving.inference.{kind}",
                          time=f"1970-01-01T00:{int(at) // 60:02d}:{int(at) % 60:02d}Z", datacontenttype="application/json",
                          data=orjson.dumps(body), extensions={"inferenceservicename": "assistant", "endpoint": "default",
                                                               "modelid": node, "requestid": puid})

    try:
        for i in range(200):
            puid, at = f"p{i}", float(i * 10)
            transcript = int(rng.integers(0, 4))  # asr's own output: the same mix all along
            intent = 0 if i >= 100 and rng.random() < 0.7 else transcript  # intent regresses half-way on its own
            probabilities = np.eye(4)[intent].tolist()
            events = [event("asr", "request", puid, at, {"data": {"ndarray": [[0.5, 0.5]]}}),
                      event("intent", "request", puid, at, {"data": {"ndarray": [[transcript]]}}),
                      event("intent", "response", puid, at, {"data": {"ndarray": [probabilities]}}),
                      event("asr", "response", puid, at, {"data": {"ndarray": [probabilities]}})]  # the subtree's output
            store.apply([update_from_event(e, at, graphs=graphs) for e in events])
        [change] = upstream_changes(store, "assistant.intent", 1000.0, None)
        assert change.model == "assistant" and change.n_links == 200
        assert change.output_drift is not None and change.output_drift.p_value > 0.01  # asr did not move
        logged = compare_upstream(store, "assistant", 200, 1000.0, None, None)  # what its logged responses say
        assert logged is not None and logged.output_drift is not None and logged.output_drift.p_value < 0.01
    finally:
        store.close()
