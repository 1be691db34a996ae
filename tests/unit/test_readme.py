"""The README stays true: every setting it should document, it documents."""

from pathlib import Path

import pytest

from seismo.services.broker import BrokerSettings
from seismo.services.drift import DriftSettings
from seismo.services.explainer import ExplainerSettings
from seismo.services.logger import LoggerSettings
from seismo.services.metrics import MetricsSettings
from seismo.services.model import ModelSettings
from seismo.services.outlier import OutlierSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("settings", [ModelSettings, BrokerSettings, LoggerSettings, OutlierSettings, DriftSettings, MetricsSettings, ExplainerSettings])
def test_every_setting_is_in_the_readme(settings):
    prefix = settings.model_config["env_prefix"]
    missing = [f"{prefix}{name.upper()}" for name in settings.model_fields if f"`{prefix}{name.upper()}`" not in README]
    assert missing == []


def test_the_two_commands_are_documented():
    assert "make demo" in README and "make test" in README
