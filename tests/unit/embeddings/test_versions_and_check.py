"""Embedding versions, and `seismo embeddings check` on real model variants."""

import json

import numpy as np
import pytest
from embedding_models import variant
from helpers import run_cli

from seismo.embeddings import EmbeddingVersion, EmbeddingVersionError, VersionChange, compare_versions
from seismo.embeddings.check import compare_spaces


@pytest.mark.parametrize("old, new, change", [
    ("m/s@1.2.3", "m/s@1.2.3", VersionChange.SAME),
    ("m/s@1.2.3", "m/s@1.2.4", VersionChange.PATCH),
    ("m/s@1.2.3", "m/s@1.1.0", VersionChange.MINOR),
    ("m/s@1.2.3", "m/s@2.2.3", VersionChange.MAJOR),
    ("m/s@1.2.3", "m/t@1.2.3", VersionChange.OTHER_SPACE),
    ("m/s@1.2.3", "n/s@1.2.3", VersionChange.OTHER_SPACE),
])
def test_compare_versions(old, new, change):
    assert compare_versions(old, new) is change


@pytest.mark.parametrize("text", ["m/s@1.2", "m@1.2.3", "m/s@01.2.3", "m/s@1.2.3-rc1", "/s@1.0.0", "m/s@1.2.3\n", "", "m/s/t@1.0.0"])
def test_malformed_versions_are_refused_with_the_expected_form(text):
    with pytest.raises(EmbeddingVersionError, match="MAJOR.MINOR.PATCH"):
        EmbeddingVersion.parse(text)


def test_compare_spaces_on_known_geometry():
    rng = np.random.default_rng(0)
    old = rng.normal(size=(400, 16))
    same = old + rng.normal(scale=0.01, size=old.shape)
    rotated = old @ np.linalg.qr(rng.normal(size=(16, 16)))[0]  # equal norms, another space
    assert compare_spaces(old, same, "m/s@1.0.0", "m/s@1.0.1").honest
    verdict = compare_spaces(old, rotated, "m/s@1.0.0", "m/s@1.0.1")
    assert not verdict.honest and verdict.message.startswith("claimed patch, but the space changed")
    assert "bump the minor version or refit the reference" in verdict.message
    wider = compare_spaces(old, np.hstack([old, old]), "m/s@1.0.0", "m/s@2.0.0")
    assert wider.honest and wider.space_moved and "dimension changed (16 -> 32)" in wider.message


@pytest.fixture(scope="module")
def variants(example_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    return {"finetune": variant(example_model, folder / "finetune", "image-classifier/penultimate@1.0.2", "finetune"),
            "scratch": variant(example_model, folder / "scratch", "image-classifier/penultimate@1.0.2", "scratch")}


def run_check(*args):
    return run_cli("embeddings", "check", *args)


def test_check_cli_passes_a_fine_tune_and_catches_a_retrain_claimed_as_a_patch(example_model, variants):
    honest = run_check(example_model, variants["finetune"], "--json")
    assert honest.returncode == 0, honest.stderr
    measures = json.loads(honest.stdout)
    assert measures["claimed"] == "patch" and measures["honest"] and measures["displacement"] < 0.5
    dishonest = run_check(example_model, variants["scratch"])
    assert dishonest.returncode == 1
    assert "claimed patch, but the space changed" in dishonest.stdout and "bump the minor version" in dishonest.stdout
    missing = run_check(example_model, example_model.parent / "nope")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_the_model_server_runs_the_check_when_deployed_over_a_previous_model(example_model, variants):
    import asyncio

    from prometheus_client import CollectorRegistry

    from seismo.services.model import ModelService, ModelSettings

    dishonest = ModelService(ModelSettings(path=variants["scratch"], embedding_previous_path=example_model), CollectorRegistry())
    with pytest.raises(ValueError, match="embedding version check against .* claimed patch, but the space changed"):
        asyncio.run(dishonest.start())
    honest = ModelService(ModelSettings(path=variants["finetune"], embedding_previous_path=example_model), CollectorRegistry())

    async def start_and_stop():
        await honest.start()
        await honest.stop()

    asyncio.run(start_and_stop())
    assert honest.predictor.embedding.version == "image-classifier/penultimate@1.0.2"
