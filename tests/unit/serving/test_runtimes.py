"""The model server serves a Keras .keras file, a TensorFlow SavedModel, and a scikit-learn joblib model;
Keras models run on TensorFlow Lite when its conversion answers like TensorFlow."""

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
    assert saved_runtime.engine == keras_runtime.engine == "tflite"  # type: ignore[attr-defined]  # auto, no GPU here
    np.testing.assert_allclose(saved_runtime.predict(example_images[:4]), keras_runtime.predict(example_images[:4]), rtol=1e-5, atol=1e-6)
    on_tensorflow = load_runtime(tmp_path / "saved", framework="keras", engine="tensorflow")
    assert on_tensorflow.engine == "tensorflow"  # type: ignore[attr-defined]
    np.testing.assert_allclose(saved_runtime.predict(example_images[:9]), on_tensorflow.predict(example_images[:9]), rtol=1e-4, atol=1e-5)


def test_tflite_engine_answers_like_tensorflow_for_every_batch_size_with_its_embedding(example_model, example_images):
    lite = load_runtime(example_model, engine="tflite")
    tensorflow = load_runtime(example_model, engine="tensorflow")
    assert (lite.engine, tensorflow.engine) == ("tflite", "tensorflow")  # type: ignore[attr-defined]
    for size in (1, 7, 64, 1, 150, 3):  # the interpreter re-plans when the batch size changes, and back again
        lite_out, lite_embedding = lite.predict_with_embedding(example_images[:size])
        tf_out, tf_embedding = tensorflow.predict_with_embedding(example_images[:size])
        assert lite_out.shape == (size, 10) and lite_embedding.shape == (size, 64)
        np.testing.assert_allclose(lite_out, tf_out, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(lite_embedding, tf_embedding, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(lite.predict(example_images[:size]), tf_out, rtol=1e-4, atol=1e-5)
        # 150 rows ran as 64 + 64 + 22: the interpreter never plans memory for more than 64 (a 4,096-image
        # request would otherwise pin about 1.6 GB until the process ends)
        assert lite._lite._shape[0] <= 64  # type: ignore[attr-defined]


def test_a_conversion_that_does_not_answer_like_tensorflow_is_refused(example_model, example_images):
    import keras
    import tensorflow as tf

    from seismo.serving.tflite import LiteFunction, LiteUnfaithful

    model = keras.saving.load_model(str(example_model / "model.keras"), compile=False)
    probe = example_images[:3]
    expected = [np.asarray(model(probe, training=False))]
    assert LiteFunction.convert(lambda: tf.lite.TFLiteConverter.from_keras_model(model), probe, expected)(probe)[0].shape == (3, 10)
    # A real trap: converted from a traced tf.function, this model loses its batch-norm variables and answers NaN.
    traced = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    with pytest.raises(LiteUnfaithful, match=r"output 0 \[3, 10\] has no match .*differs by nan"):
        LiteFunction.convert(lambda: tf.lite.TFLiteConverter.from_concrete_functions([traced.get_concrete_function()], model), probe, expected)
    with pytest.raises(LiteUnfaithful, match="differs by 0.5"):
        LiteFunction.convert(lambda: tf.lite.TFLiteConverter.from_keras_model(model), probe, [expected[0] + 0.5])
    with pytest.raises(LiteUnfaithful, match=r"no output of that shape"):
        LiteFunction.convert(lambda: tf.lite.TFLiteConverter.from_keras_model(model), probe, [np.zeros((3, 11), np.float32)])


def test_the_conversion_cache_is_keyed_by_the_model_and_still_checked(tmp_path, example_model, example_images):
    import shutil

    import keras
    import tensorflow as tf

    from seismo.serving.tflite import LiteFunction, LiteUnfaithful, cache_file

    model = keras.saving.load_model(str(example_model / "model.keras"), compile=False)
    probe = example_images[:3]
    expected = [np.asarray(model(probe, training=False))]
    conversions = []

    def converter():
        conversions.append(1)
        return tf.lite.TFLiteConverter.from_keras_model(model)

    cache = cache_file(example_model / "model.keras", outputs="model", directory=tmp_path / "cache")
    assert cache is not None and not cache.exists()
    first = LiteFunction.convert(converter, probe, expected, cache=cache)
    second = LiteFunction.convert(converter, probe, expected, cache=cache)
    assert len(conversions) == 1 and cache.exists()  # the second load read the cache
    np.testing.assert_array_equal(first(probe)[0], second(probe)[0])
    # still checked: expectations the cached model does not meet are refused after one fresh conversion
    with pytest.raises(LiteUnfaithful, match="differs by 0.5"):
        LiteFunction.convert(converter, probe, [expected[0] + 0.5], cache=cache)
    assert len(conversions) == 2
    cache.write_bytes(b"not a flatbuffer")  # a damaged cache file is converted again and replaced
    LiteFunction.convert(converter, probe, expected, cache=cache)
    assert len(conversions) == 3 and cache.read_bytes() != b"not a flatbuffer"
    # the key: another model file, other outputs, another folder of bytes each get their own file
    changed = tmp_path / "model.keras"
    shutil.copy(example_model / "model.keras", changed)
    assert cache_file(changed, outputs="model", directory=tmp_path / "cache") == cache  # same bytes, same key
    with changed.open("ab") as handle:
        handle.write(b"\0")
    assert cache_file(changed, outputs="model", directory=tmp_path / "cache") != cache
    assert cache_file(example_model / "model.keras", outputs="embedding=penultimate", directory=tmp_path / "cache") != cache
    assert cache_file(tmp_path / "absent.keras", outputs="model", directory=tmp_path / "cache") is None


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


def test_interpreter_threads_follow_the_cpu_quota_not_the_hosts_cores(tmp_path):
    import os

    from seismo.serving.tflite import cores

    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert cores(cpu_max) == affinity
    cpu_max.write_text("150000 100000\n")  # a Kubernetes limit of 1.5 CPUs
    assert cores(cpu_max) == min(affinity, 2)
    cpu_max.write_text("50000 100000\n")
    assert cores(cpu_max) == 1
    cpu_max.write_text("garbage\n")
    assert cores(cpu_max) == affinity
    assert cores(tmp_path / "absent") == affinity
