"""Feedback bodies as Seismo's API and Seldon Core send them."""

import numpy as np
import pytest

from seismo.protocol.feedback import FeedbackError, parse_feedback


def test_seismo_body_by_prediction_id():
    fb = parse_feedback({"prediction_id": "p1", "truth": 3, "cohort": "web", "tags": {"a": 1}})
    assert fb.prediction_id == "p1" and not fb.self_contained and fb.truth.tolist() == 3 and fb.cohort == "web"


def test_seldon_body_names_the_prediction_by_puid_and_may_carry_it():
    only_id = parse_feedback({"response": {"meta": {"puid": "abc"}}, "truth": {"data": {"ndarray": [1]}}, "reward": 1})
    assert only_id.prediction_id == "abc" and not only_id.self_contained and only_id.reward == 1.0
    full = parse_feedback({"response": {"data": {"ndarray": [[0.1, 0.9]]}, "meta": {"puid": "abc"}}, "truth": {"data": {"ndarray": [[0, 1]]}}})
    assert full.self_contained and full.prediction_id == "abc" and np.array_equal(full.truth, [[0, 1]])


def test_an_events_requestid_wins_and_truth_in_v1_and_v2():
    assert parse_feedback({"prediction_id": "body", "truth": 1}, prediction_id="event").prediction_id == "event"
    assert parse_feedback({"prediction_id": "x", "truth": {"instances": [1, 0]}}).truth.tolist() == [1, 0]
    v2 = {"outputs": [{"name": "t", "datatype": "BOOL", "shape": [2], "data": [True, False]}]}
    assert parse_feedback({"prediction_id": "x", "truth": v2}).truth.tolist() == [1, 0]


@pytest.mark.parametrize("doc, message", [
    ({"prediction_id": "x"}, "needs 'truth'"),
    ({"prediction_id": "x", "truth": []}, "non-empty list"),
    ({"prediction_id": "x", "truth": [[[1]]]}, "at most 2"),
    ({"prediction_id": "x", "truth": [1, [2, 3]]}, "rectangular"),
    ({"truth": 1}, "must name a 'prediction_id'"),
    ({"response": {"meta": {}}, "truth": 1}, "carries no prediction"),
    ({"prediction_id": 5, "truth": 1}, "non-empty string"),
    ({"prediction_id": "x", "truth": 1, "reward": "high"}, "'reward' must be a number"),
    ({"prediction_id": "x", "truth": 1, "tags": []}, "'tags' must be an object"),
    ({"prediction_id": "x", "truth": 1, "holdout": "yes"}, "'holdout' must be true or false"),
    ({"prediction_id": "x", "truth": {"strData": "cat"}}, "no numeric data"),
    # ids the model server and the logger refuse could never join: refused here too
    ({"prediction_id": "a\nb", "truth": 1}, "cannot be a prediction id"),
    ({"prediction_id": "x" * 257, "truth": 1}, "1 to 256 visible ASCII"),
    ({"response": {"meta": {"puid": "has space"}}, "truth": 1}, "cannot be a prediction id"),
])
def test_malformed_feedback_names_the_field(doc, message):
    with pytest.raises(FeedbackError, match=message):
        parse_feedback(doc)
    if "prediction_id" in doc and isinstance(doc["prediction_id"], str) and message.startswith(("cannot", "1 to")):
        assert parse_feedback({**doc, "prediction_id": "x" * 256}).prediction_id == "x" * 256  # the edge itself passes
