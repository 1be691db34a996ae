"""Metric configuration, cohort rules and scoring, on hand-made payloads."""

import numpy as np
import pytest

from seismo.performance.config import ConfigError, load_models, model_config, parse_rule
from seismo.performance.scoring import ScoringError, cohorts_of, feature_rows, predictions_of, score


def test_rules_parse_and_match_without_eval():
    rule = parse_rule("risky", "fico < 600 and income <= 50000 and region == 'eu'")
    assert rule.matches({"fico": 550, "income": 50000, "region": "eu"})
    assert not rule.matches({"fico": 550, "income": 50001, "region": "eu"})
    assert not rule.matches({"fico": 550, "income": 1})  # a missing feature never matches
    assert not rule.matches({"fico": "n/a", "income": 1, "region": "eu"})  # a non-number never matches a number
    for bad in ("fico <", "__import__('os') > 1", "fico ~ 3", ""):
        with pytest.raises(ConfigError):
            parse_rule("bad", bad)


def test_model_config_refuses_what_it_does_not_know(tmp_path):
    with pytest.raises(ConfigError, match="type must be one of"):
        model_config("m", {"type": "ranking"})
    with pytest.raises(ConfigError, match="unknown keys"):
        model_config("m", {"type": "binary", "treshold": 0.3})
    with pytest.raises(ConfigError, match="threshold"):
        model_config("m", {"type": "binary", "threshold": 3})
    (tmp_path / "m.yaml").write_text("models: {}\n")
    with pytest.raises(ConfigError, match="non-empty 'models'"):
        load_models(tmp_path / "m.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_models(tmp_path / "missing.yaml")


def test_the_shipped_config_loads():
    from seismo.services.metrics import EXAMPLE_CONFIG

    models = load_models(EXAMPLE_CONFIG)
    assert models["image-classifier"].type == "multiclass-onehot"


def test_feature_names_from_every_protocol():
    assert feature_rows({"instances": [{"income": 5, "fico": 700}]}, ()) == [{"income": 5, "fico": 700}]
    assert feature_rows({"instances": [[5, 700, 1]]}, ("income", "fico")) == [{"income": 5, "fico": 700, "x2": 1}]
    v2 = {"inputs": [{"name": "income", "datatype": "FP64", "shape": [2, 1], "data": [5, 6]},
                     {"name": "fico", "datatype": "INT64", "shape": [2], "data": [700, 500]}]}
    assert feature_rows(v2, ()) == [{"income": 5.0, "fico": 700}, {"income": 6.0, "fico": 500}]
    seldon = {"data": {"names": ["income", "fico"], "ndarray": [[5, 700]]}}
    assert feature_rows(seldon, ()) == [{"income": 5, "fico": 700}]


def test_cohorts_combine_explicit_extension_and_rules():
    config = model_config("m", {"type": "binary", "features": ["income"], "cohorts": [{"name": "rich", "when": "income > 100"}]})
    request = {"instances": [[500], [5]]}
    assert cohorts_of(config, None, {"cohort": "web"}, request, 2) == [("all", "web", "rich"), ("all", "web")]
    assert cohorts_of(config, "api", {"cohort": "web"}, request, 2)[0] == ("all", "api", "rich")


def test_predictions_per_metric_type():
    binary = model_config("b", {"type": "binary", "threshold": 0.3})
    assert [p.predicted for p in predictions_of(binary, {"predictions": [0.2, 0.35]})] == [0.0, 1.0]
    assert predictions_of(binary, {"predictions": [[0.6, 0.4]]})[0].scores == (0.4,)  # [p0, p1] rows
    onehot = model_config("o", {"type": "multiclass-onehot"})
    assert predictions_of(onehot, {"predictions": [[0.1, 0.7, 0.2]]})[0].predicted == 1.0
    with pytest.raises(ScoringError, match="one score per class"):
        predictions_of(onehot, {"predictions": [0.3]})
    numeric = model_config("n", {"type": "multiclass-numeric"})
    with pytest.raises(ScoringError, match="class indices"):
        predictions_of(numeric, {"predictions": [1.5]})
    with pytest.raises(ScoringError, match="cannot read"):
        predictions_of(numeric, {"nothing": 1})


def test_truth_shapes_are_settled_against_the_prediction():
    onehot = model_config("o", {"type": "multiclass-onehot"})
    one = {"predictions": [[0.1, 0.7, 0.2]]}
    assert score(onehot, one, np.array([0, 1, 0]))[0].truth == 1.0  # one one-hot row
    assert score(onehot, one, np.array(2))[0].truth == 2.0
    three = {"predictions": [[0.1, 0.7, 0.2]] * 3}
    assert [r.truth for r in score(onehot, three, np.array([0, 1, 2]))] == [0.0, 1.0, 2.0]  # one index each
    with pytest.raises(ScoringError, match="one-hot truth has 2 classes"):
        score(onehot, one, np.array([[0, 1]]))
    regression = model_config("r", {"type": "regression"})
    assert score(regression, {"predictions": [1.5]}, np.array(2.25))[0].truth == 2.25


def test_a_stored_binary_tensor_response_is_scored_like_its_json_twin():
    """The metrics server reads stored responses in the OIP binary tensor extension (what the model
    server answers and logs when a client asks for binary outputs)."""
    from seismo.performance.tracker import _json_body
    from seismo.protocol.binary import encode_binary_body

    scores = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)
    header = {"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [2, 3]}]}
    body, _ = encode_binary_body(header, [(header["outputs"][0], scores)])
    onehot = model_config("o", {"type": "multiclass-onehot"})
    binary = predictions_of(onehot, _json_body(body))
    as_json = predictions_of(onehot, {"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [2, 3],
                                                   "data": scores.ravel().tolist()}]})
    assert [p.predicted for p in binary] == [1.0, 0.0] == [p.predicted for p in as_json]
    assert [p.scores for p in binary] == [p.scores for p in as_json]


@pytest.mark.parametrize("model_type, business, message", [
    ("binary", {"values": [[0, 1, 2], [1, 2, 3], [1, 1, 1]]}, "binary model's business values are 2x2"),
    ("multiclass-onehot", {"values": [[0, 1], [1]]}, "square matrix"),
    ("multiclass-onehot", {"values": [[0, float("nan")], [1, 1]]}, "finite"),
    ("multiclass-onehot", {"correct": 1}, "both `correct` and `incorrect`"),
    ("multiclass-onehot", {"values": [[0, 1], [1, 0]], "correct": 1, "incorrect": 0}, "not both"),
    ("multiclass-onehot", {"per_unit_error": -1}, "for regression models"),
    ("regression", {"correct": 1, "incorrect": -1}, "per_unit_error"),
    ("regression", {"per_unit_error": float("inf")}, "finite"),
    ("regression", {"per_unit_error": -1, "currency": "EUR"}, "unknown keys"),
])
def test_business_blocks_that_cannot_be_meant_are_refused(model_type, business, message):
    with pytest.raises(ConfigError, match=message):
        model_config("m", {"type": model_type, "business": business})


def test_business_values_for_more_classes_than_the_matrix_say_so():
    import numpy as np

    from seismo.performance.business import estimated_value, realized_value

    values = model_config("m", {"type": "multiclass-onehot", "business": {"values": [[1, -1], [-1, 1]]}}).business
    assert "2x2; the model scores 3 classes" in realized_value(values, "multiclass-onehot", np.array([0.0]), np.array([2.0]), 3)["reason"]
    assert estimated_value(values, np.array([[0.2, 0.3, 0.5]]), np.array([2]))["available"] is False
    # a 3x3 matrix serves a 2-class window (its first rows and columns)
    bigger = model_config("m", {"type": "multiclass-onehot", "business": {"values": [[1, -2, 0], [-3, 4, 0], [0, 0, 0]]}}).business
    assert realized_value(bigger, "multiclass-onehot", np.array([0.0, 1.0]), np.array([1.0, 1.0]), 2)["total"] == 1.0
