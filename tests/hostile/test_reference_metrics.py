"""docs/reference/metrics.md against the services themselves: every metric family a running service
exposes is in the reference, and the reference lists none that no service exposes. (It lives beside the
hostile suite to share its stack.)"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "metrics.md"
SERVICES = ("model", "broker", "logger", "outlier", "drift", "metrics", "explainer")


def families(text: str) -> set[str]:
    """Family names as the exposition writes them (`# TYPE name kind`), counters with their `_total`; the
    `_created` gauges prometheus_client writes beside unlabelled metrics are part of those, not families."""
    found = set()
    for name, kind in re.findall(r"^# TYPE (seismo_\w+) (\w+)$", text, re.M):
        if name.endswith("_created"):
            continue
        found.add(name if kind != "counter" or name.endswith("_total") else name + "_total")
    return found


def test_the_metrics_reference_lists_what_the_services_expose(s):
    documented = dict.fromkeys(SERVICES, set())
    section = None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            documented[section] = set()
        elif section and (m := re.match(r"^\| `(seismo_\w+)` \|", line)):
            documented[section].add(m[1])
    for service in SERVICES:
        live = families(httpx.get(f"{s.url(service)}/metrics", timeout=10).text)
        missing = sorted(live - documented[service])
        assert missing == [], f"{service} exposes families the reference lacks (run `python docs/build_reference.py`): {missing}"
        assert documented[service] <= live, f"{service}: the reference lists {sorted(documented[service] - live)}, which it does not expose"
