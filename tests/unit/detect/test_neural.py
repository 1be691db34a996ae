"""The Keras parts: VAE outlier detector, untrained-autoencoder and model-layer preprocessing."""

import numpy as np

from seismo.detect import KSDrift, ModelLayer, UntrainedAutoencoder, load_detector, save_detector


def test_vae_outlier_flags_noise_images_and_round_trips(tmp_path, example_images):
    from seismo.detect import VAEOutlier

    flat = example_images[:300].reshape(300, -1)
    detector = VAEOutlier(epochs=15, latent_dim=8, hidden=128).fit(flat)
    noise = np.random.default_rng(0).uniform(0, 1, size=(20, flat.shape[1]))
    result = detector.predict(np.vstack([flat[:100], noise]))
    assert result.is_outlier[100:].all()
    assert result.is_outlier[:100].mean() < 0.15
    assert result.feature_score.shape == (120, flat.shape[1])
    save_detector(detector, tmp_path / "vae")
    loaded = load_detector(tmp_path / "vae")
    np.testing.assert_allclose(loaded.score(noise)[0], detector.score(noise)[0], rtol=1e-5)
    # Scoring runs the encoder and decoder as one traced graph: the same numbers as calling them eagerly,
    # for one row, a delivered batch's worth, and more rows than one graph call takes (1,024).
    rows = np.vstack([flat, noise, flat, flat, flat, flat])[:1100]
    for model in (detector, loaded):
        for n in (1, 45, 1100):
            chunk = rows[:n].astype(np.float32)
            out = [np.asarray(model.decoder(model.encoder(chunk[i:i + 1024], training=False)[0], training=False))
                   for i in range(0, n, 1024)]
            eager = ((rows[:n] - np.concatenate(out)) ** 2).mean(axis=1)
            np.testing.assert_allclose(model.score(rows[:n])[0], eager, rtol=1e-6, atol=1e-9)


def test_uae_preprocessing_detects_image_shift_and_saves(tmp_path, example_images):
    ref, same = example_images[:180], example_images[180:360]
    detector = KSDrift(preprocess=UntrainedAutoencoder(encoding_dim=16)).fit(ref)
    assert not detector.predict(same).is_drift
    noisy = np.clip(same + np.random.default_rng(0).normal(0, 0.3, same.shape), 0, 1)
    assert detector.predict(noisy).is_drift
    save_detector(detector, tmp_path / "ks-uae")
    loaded = load_detector(tmp_path / "ks-uae")
    assert loaded.predict(noisy).to_json() == detector.predict(noisy).to_json()


def test_model_layer_preprocessing(example_model, example_images):
    step = ModelLayer(str(example_model), layer=-2).fit(example_images[:10])
    assert step.transform(example_images[:10]).shape == (10, 64)  # the pooled features before the softmax


def test_model_layer_detector_is_relocatable_with_its_model(tmp_path, example_model, example_images):
    import json
    import shutil

    shutil.copytree(example_model, tmp_path / "project" / "model")
    detector = KSDrift(preprocess=ModelLayer(str(tmp_path / "project" / "model"), layer=-2)).fit(example_images[:100])
    save_detector(detector, tmp_path / "project" / "detector")
    config = json.loads((tmp_path / "project" / "detector" / "config.json").read_text())
    assert config["preprocess"]["model_path"] == "../model"
    shutil.move(tmp_path / "project", tmp_path / "moved")
    loaded = load_detector(tmp_path / "moved" / "detector")
    assert loaded.predict(example_images[100:200]).to_json() == detector.predict(example_images[100:200]).to_json()
