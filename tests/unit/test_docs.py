"""The manual stays true and short: the README is the front door (two commands, at most 1,500 words), the
docs site builds with --strict (no broken link, no page outside the nav), every setting is in the
configuration reference, and nothing links to a document outside the repository."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import doc_pages

from seismo.services.broker import BrokerSettings
from seismo.services.drift import DriftSettings
from seismo.services.explainer import ExplainerSettings
from seismo.services.logger import LoggerSettings
from seismo.services.metrics import MetricsSettings
from seismo.services.model import ModelSettings
from seismo.services.outlier import OutlierSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "reference" / "configuration.md").read_text()


@pytest.mark.parametrize("settings", [ModelSettings, BrokerSettings, LoggerSettings, OutlierSettings, DriftSettings, MetricsSettings, ExplainerSettings])
def test_every_setting_is_in_the_configuration_reference(settings):
    prefix = settings.model_config["env_prefix"]
    missing = [f"{prefix}{name.upper()}" for name in settings.model_fields if f"`{prefix}{name.upper()}`" not in CONFIGURATION]
    assert missing == []


def test_the_readme_is_the_front_door():
    assert "make demo" in README and "make test" in README
    words = len(README.split())
    assert words <= 1500, f"README.md has {words} words; the rest belongs in docs/"


def test_the_docs_site_builds_strictly(tmp_path):
    """mkdocs.yml sets strict: a broken link, a missing anchor or a page not in the nav fails the build."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").exists()


def test_every_page_is_in_the_nav():
    pages = {p.relative_to(ROOT / "docs") for p in (ROOT / "docs").rglob("*.md")}
    in_nav = {p.relative_to(ROOT / "docs") for p in doc_pages()[1:]}
    assert pages == in_nav


LINK = re.compile(r"\]\(([^)#\s]+)")


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))], ids=lambda p: p.name)
def test_links_stay_inside_the_repository(page):
    """Relative links resolve to files of the repository; the docs cite nothing outside it."""
    for target in LINK.findall(page.read_text()):
        assert not target.startswith(("http://", "https://")), f"{page.name} links outside the repository: {target}"
        assert (page.parent / target).resolve().exists(), f"{page.name}: {target} does not exist"
    assert "DESIGN.md" not in page.read_text() and "../shared" not in page.read_text()


def test_the_generated_reference_is_current():
    """reference/cli.md and the OpenAPI documents are what docs/build_reference.py writes from the code
    (metrics.md is checked against the running services: tests/hostile/test_reference_metrics.py)."""
    from helpers import load_script

    rendered = load_script(ROOT / "docs" / "build_reference.py").render(with_metrics=False)
    assert {"cli.md", "openapi.md", "openapi/model.json"} <= set(rendered)
    import sys

    for path, text in rendered.items():
        committed = (ROOT / "docs" / "reference" / path).read_text()
        if path == "cli.md" and f"on Python {sys.version_info.major}.{sys.version_info.minor}" not in committed:
            continue  # argparse lays help out differently on another Python: the page names the one that wrote it
        assert committed == text, f"docs/reference/{path} is stale: run `python docs/build_reference.py`"


def test_the_configuration_reference_names_only_real_settings():
    """The hand-written settings tables, the other way round: every `SEISMO_<SERVICE>_*` they list is a
    field of that service's settings class."""
    known = {f"{cls.model_config['env_prefix']}{name.upper()}" for cls in (ModelSettings, BrokerSettings, LoggerSettings, OutlierSettings,
                                                                            DriftSettings, MetricsSettings, ExplainerSettings)
             for name in cls.model_fields}
    prefixes = tuple(cls.model_config["env_prefix"] for cls in (ModelSettings, BrokerSettings, LoggerSettings, OutlierSettings,
                                                                 DriftSettings, MetricsSettings, ExplainerSettings))
    listed = set(re.findall(r"^\| `(SEISMO_[A-Z0-9_]+)`", CONFIGURATION, re.M))
    unknown = sorted(v for v in listed if v.startswith(prefixes) and v not in known)
    assert unknown == []
