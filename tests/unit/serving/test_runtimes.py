"""The model server serves a Keras .keras file, a TensorFlow SavedModel, and a scikit-learn joblib model."""

import json

import joblib
import numpy as np
import pytest
from helpers import ServedApp
from prometheus_client import CollectorRegistry
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from seismo.services.model import ModelSettings, create_app
from seismo.serving.runtimes import load_runtime


def test_savedmodel_export_predicts_like_the_keras_file(tmp_path, example_model, example_images):
    import keras

    model = keras.saving.load_model(str(example_model / "model.keras"), compile=False)
    model.export(str(tmp_path / "saved"))  # a TensorFlow SavedModel with a serving_default signature
    keras_runtime = load_runtime(example_model)
    saved_runtime = load_runtime(tmp_path / "saved", framework="keras", name="exported")
    assert saved_runtime.info.platform == "tensorflow_savedmodel" and saved_runtime.info.name == "exported"
    np.testing.assert_allclose(saved_runtime.predict(example_images[:4]), keras_runtime.predict(example_images[:4]), rtol=1e-5, atol=1e-6)


def test_sklearn_joblib_model_served_over_v1_and_v2(tmp_path):
    x, y = load_iris(return_X_y=True)
    folder = tmp_path / "iris"
    folder.mkdir()
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), folder / "model.joblib")
    (folder / "metadata.json").write_text(json.dumps({"name": "sklearn-iris", "version": "3", "framework": "sklearn", "file": "model.joblib"}))
    with ServedApp(create_app(ModelSettings(path=folder), CollectorRegistry())) as client:
        r = client.post("/v1/models/sklearn-iris:predict", json={"instances": x[:2].tolist()})
        assert r.status_code == 200
        probabilities = np.asarray(r.json()["predictions"])
        assert probabilities.shape == (2, 3) and probabilities.argmax(axis=1).tolist() == [0, 0]
        body = {"inputs": [{"name": "input_1", "datatype": "FP64", "shape": [1, 4], "data": x[100].tolist()}]}
        out = client.post("/v2/models/sklearn-iris/infer", json=body).json()
        assert out["model_version"] == "3" and np.argmax(out["outputs"][0]["data"]) == 2
        bad = client.post("/v1/models/sklearn-iris:predict", json={"instances": [[1.0, 2.0]]})
        assert bad.status_code == 400 and "expects [-1, 4]" in bad.json()["error"]
    with pytest.raises(ValueError, match="unknown model framework 'onnx'"):
        load_runtime(folder, framework="onnx")
    with pytest.raises(FileNotFoundError, match="make model"):
        load_runtime(tmp_path / "missing")
