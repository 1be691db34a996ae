"""Text embeddings (wordllama, weights in its wheel) with EmbeddingDrift: real sentences, made from templates.

Reference and clean: English restaurant reviews. A new domain: English sentences about markets and
banks. A new language: Spanish restaurant reviews (the document's example)."""

import itertools

import numpy as np
import pytest

pytest.importorskip("wordllama")

from seismo.detect import EmbeddingDrift  # noqa: E402
from seismo.embeddings.text import embed_texts  # noqa: E402

SUBJECTS = ["The soup", "Our waiter", "The pasta", "The dessert", "The steak", "The service", "The salad", "The wine list",
            "The pizza", "The coffee", "The table", "The bread", "The fish", "The music", "The burger", "The curry"]
VERDICTS = ["was excellent", "was cold and bland", "came quickly", "took forever", "was worth every penny", "was overpriced",
            "tasted fresh", "was too salty", "made our evening", "was a disappointment", "was friendly", "was forgettable"]
ENDINGS = ["and we will come back.", "so we left early.", "but the room was noisy.", "and the staff were kind.",
           "though the portions were small.", "which surprised us."]
FINANCE = ["The central bank", "Bond yields", "The stock index", "Quarterly earnings", "The hedge fund", "Inflation",
           "The exchange rate", "Mortgage rates"]
FINANCE_VERBS = ["rose sharply", "fell after the report", "stayed flat", "beat forecasts", "missed expectations", "surprised analysts"]
FINANCE_ENDINGS = ["as investors sold shares.", "amid fears of recession.", "while traders waited for the data.",
                   "after the rate decision."]
SUJETOS = ["La sopa", "El camarero", "La pasta", "El postre", "El filete", "El servicio", "La ensalada", "La pizza", "El café", "El pescado"]
VEREDICTOS = ["estaba excelente", "estaba fría y sosa", "llegó rápido", "tardó muchísimo", "valió la pena", "era demasiado cara",
              "sabía fresca", "estaba muy salada"]
FINALES = ["y volveremos pronto.", "así que nos fuimos temprano.", "pero el local era ruidoso.", "y el personal fue amable."]


def sentences(parts, n, seed):
    combos = [" ".join(c) for c in itertools.product(*parts)]
    rng = np.random.default_rng(seed)
    return [combos[i] for i in rng.choice(len(combos), n, replace=False)]


@pytest.fixture(scope="module")
def detector():
    reviews = sentences((SUBJECTS, VERDICTS, ENDINGS), 800, 0)
    vectors, version = embed_texts(reviews[:600])
    fitted = EmbeddingDrift(version=version).fit(vectors)
    fitted.clean = reviews[600:]  # reviews of the same kind the reference never saw
    return fitted


def drift(detector, texts):
    vectors, version = embed_texts(texts)
    return detector.predict(vectors, version)


def test_a_clean_set_of_the_same_kind_is_not_drift(detector):
    assert not drift(detector, detector.clean[:100]).is_drift
    assert not drift(detector, detector.clean[100:200]).is_drift


def test_a_new_domain_and_a_new_language_are_drift(detector):
    finance = drift(detector, sentences((FINANCE, FINANCE_VERBS, FINANCE_ENDINGS), 100, 1))
    spanish = drift(detector, sentences((SUJETOS, VEREDICTOS, FINALES), 100, 2))
    assert finance.is_drift and spanish.is_drift
    assert min(finance.euclidean_distance, spanish.euclidean_distance) > 2 * finance.distance_threshold
    # A gradual arrival: a quarter of the window in Spanish is already past the threshold.
    mixed = drift(detector, detector.clean[:75] + sentences((SUJETOS, VEREDICTOS, FINALES), 25, 3))
    assert mixed.is_drift


def test_text_embeddings_carry_a_version_and_refuse_bad_input():
    vectors, version = embed_texts(["one sentence"])
    assert vectors.shape == (1, 256) and version.startswith("wordllama/l2_supercat_256@")
    with pytest.raises(ValueError, match="non-empty list of strings"):
        embed_texts([])
