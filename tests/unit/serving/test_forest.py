"""The forest fast path answers exactly like scikit-learn's predict_proba, and is refused when it might not."""

import json
import logging

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from seismo.serving.forest import forest_proba
from seismo.serving.runtimes import SklearnRuntime

X, Y = load_wine(return_X_y=True)


@pytest.mark.parametrize("cls", [RandomForestClassifier, ExtraTreesClassifier])
def test_a_forest_answers_bit_for_bit_like_predict_proba_for_every_batch_size(cls, tmp_path):
    model = cls(n_estimators=25, random_state=0).fit(X, Y)
    joblib.dump(model, tmp_path / "model.joblib")
    (tmp_path / "metadata.json").write_text(json.dumps({"framework": "sklearn", "file": "model.joblib"}))
    runtime = SklearnRuntime(tmp_path)
    assert runtime._forest is not None
    rng = np.random.default_rng(1)
    for n in (1, 7, 64, 300):
        batch = X[rng.integers(0, len(X), n)] + rng.normal(0, 0.5, (n, X.shape[1]))  # float64, between the thresholds
        assert np.array_equal(runtime.predict(batch), model.predict_proba(batch)), n
    edge = np.vstack([np.full(X.shape[1], 1e30), np.full(X.shape[1], -1e30), np.zeros(X.shape[1])])
    assert np.array_equal(runtime.predict(edge), model.predict_proba(edge))


def test_the_fast_path_is_refused_where_it_might_answer_differently(caplog):
    class Calibrated(RandomForestClassifier):  # a subclass may change predict_proba: never assumed
        def predict_proba(self, X):
            return super().predict_proba(X) ** 2

    assert forest_proba(Calibrated(n_estimators=5, random_state=0).fit(X, Y)) is None
    assert forest_proba(LogisticRegression(max_iter=5000).fit(X, Y)) is None
    assert forest_proba(RandomForestClassifier(n_estimators=5)) is None  # not fitted
    assert forest_proba(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, np.c_[Y, Y])) is None  # two outputs
    patched = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    original = patched.predict_proba
    patched.predict_proba = lambda rows: original(rows) + 1e-12  # differs in the last bits: the probe catches it
    with caplog.at_level(logging.WARNING, logger="seismo.serving.forest"):
        assert forest_proba(patched) is None
    assert "answered a probe batch differently" in caplog.text
    assert forest_proba(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)) is not None
