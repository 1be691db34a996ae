"""The adversarial detector (class-conditional Mahalanobis on the penultimate embedding) against real
FGSM and PGD attacks on the shared example classifier, computed here with TensorFlow gradients."""

import numpy as np
import pytest

from seismo.detect import ClassMahalanobisAdversarial, load_detector, save_detector
from seismo.detect.adversarial import AdversarialVersionError
from seismo.topology import EXAMPLE_DETECTORS


@pytest.fixture(scope="module")
def classifier(example_model):
    import keras

    from models.image_classifier import EMBEDDING_LAYER, digits_as_cifar

    model = keras.models.load_model(example_model / "model.keras")
    both = keras.Model(model.inputs, [model.get_layer(EMBEDDING_LAYER).output, model.output])
    _, _, x_test, y_test = digits_as_cifar(seed=0)
    return model, both, x_test[:80], y_test[:80]


def test_attacks_that_flip_predictions_are_flagged_and_clean_images_mostly_not(classifier):
    from seismo.demo.attacks import fgsm, pgd

    model, both, x, y = classifier
    detector = load_detector(EXAMPLE_DETECTORS / "adversarial")
    assert isinstance(detector, ClassMahalanobisAdversarial)

    def check(images):
        embeddings, probabilities = both.predict(images, verbose=0)
        return detector.predict(embeddings.reshape(len(images), -1)).is_outlier, probabilities.argmax(axis=1)

    clean_flags, clean_predicted = check(x)
    assert (clean_predicted == y).mean() > 0.9
    assert clean_flags.mean() <= 0.2  # the threshold is the 95th percentile of held-out training images
    for attack in (lambda: fgsm(model, x, y, 0.05), lambda: pgd(model, x, y, 0.05, steps=10)):
        adversarial = attack()
        assert np.abs(adversarial - x).max() <= 0.05 + 1e-6
        flags, predicted = check(adversarial)
        flipped = (clean_predicted == y) & (predicted != y)
        assert flipped.mean() > 0.8  # the attack works on this model...
        assert flags[flipped].mean() >= 0.9  # ...and the detector sees it


def test_fit_save_load_and_the_version_guard(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 150)
    vectors = rng.normal(size=(300, 4)) + labels[:, None] * 5.0
    detector = ClassMahalanobisAdversarial(threshold_percentile=90, version="m/pen@1.0.0").fit(vectors, labels)
    loaded = load_detector(save_detector(detector, tmp_path / "adv"))
    probe = np.vstack([vectors[:5], np.full((1, 4), 40.0)])
    assert np.allclose(loaded.score(probe)[0], detector.score(probe)[0]) and loaded.threshold == detector.threshold
    assert loaded.predict(probe).is_outlier.tolist() == [False] * 5 + [True]
    assert loaded.nearest_class(vectors[[0, 299]]).tolist() == [0, 1]
    huge = np.full((1, 4), 3e38)  # the largest embedding the service lets through (FP32 range): flagged, not NaN
    assert loaded.predict(huge).is_outlier.tolist() == [True]
    loaded.check_version("m/pen@1.0.0")
    with pytest.raises(AdversarialVersionError, match="refit"):
        loaded.check_version("m/pen@1.0.1")
    with pytest.raises(ValueError, match="non-negative class indices"):
        ClassMahalanobisAdversarial().fit(vectors, labels[:10])
    with pytest.raises(ValueError, match="at least two classes"):
        ClassMahalanobisAdversarial().fit(vectors, np.zeros(300, dtype=int))
    with pytest.raises(ValueError, match="threshold_percentile"):
        ClassMahalanobisAdversarial(threshold_percentile=100)


def test_a_refitted_detector_scores_with_its_new_statistics_not_the_kept_class_terms():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 100)
    first = rng.normal(size=(300, 6)) + labels[:, None] * 4.0
    second = rng.normal(size=(300, 6)) * 2.0 - labels[:, None] * 3.0
    probe = rng.normal(size=(7, 6)) * 5.0
    reused = ClassMahalanobisAdversarial().fit(first, labels)
    reused.score(probe)  # the class terms of the first fit are now kept
    reused.fit(second, labels)
    fresh = ClassMahalanobisAdversarial().fit(second, labels)
    np.testing.assert_array_equal(reused.score(probe)[0], fresh.score(probe)[0])
    # and they are what the formula gives from the statistics themselves
    direct = np.array([[(row - mu) @ fresh.precision @ (row - mu) for mu in fresh.means] for row in probe]).min(axis=1)
    np.testing.assert_allclose(fresh.score(probe)[0], direct, rtol=1e-9)
