"""Dashboards and alert rules: one source, valid PromQL, alert unit tests with the real promtool.

promtool comes with Prometheus (`apt-get install prometheus` on Debian; `.ci/run` installs it); without
it the promtool tests skip and say so.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import load_script

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed: `apt-get install prometheus` (Debian) provides it")


def load_build():
    return load_script(DASHBOARDS / "build.py")


def test_committed_dashboards_are_what_build_py_writes():
    build = load_build()
    rendered = build.render()
    committed = {p.name: p.read_text() for p in (DASHBOARDS / "grafana").glob("*.json")}
    assert committed == rendered, "dashboards/grafana/ is stale: run `python dashboards/build.py`"
    names = {uid for uid, *_ in build.queries()}
    assert names == {"seismo-serving", "seismo-pipeline", "seismo-outliers", "seismo-drift", "seismo-performance", "seismo-explainer"}


def test_every_alert_the_issue_asks_for_exists():
    rules = [r["alert"] for g in yaml.safe_load((DASHBOARDS / "alerts.yaml").read_text())["groups"] for r in g["rules"]]
    assert set(rules) == {"SeismoDriftDetected", "SeismoOutlierRateHigh", "SeismoAccuracyLow", "SeismoEventsDropped",
                          "SeismoBrokerBacklogGrowing", "SeismoDeadLetters", "SeismoLatencyHigh", "SeismoFailureModeDiagnosed",
                          "SeismoAdversarialInputs", "SeismoEmbeddingDriftDetected", "SeismoDataQualityIssues"}


@needs_promtool
def test_alert_rules_pass_promtool_check_and_unit_tests():
    for args in (["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]):
        result = subprocess.run([PROMTOOL, *args], cwd=DASHBOARDS, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    tested = yaml.safe_load((DASHBOARDS / "alerts.test.yaml").read_text())["tests"]
    alerts_tested = {t["alertname"] for test in tested for t in test["alert_rule_test"] if t.get("exp_alerts")}
    rules = {r["alert"] for g in yaml.safe_load((DASHBOARDS / "alerts.yaml").read_text())["groups"] for r in g["rules"]}
    assert alerts_tested == rules  # every alert has a test in which it fires


@needs_promtool
def test_every_panel_query_is_valid_promql(tmp_path):
    """promtool parses every expression of a rule file: the panels' queries as recording rules."""
    rules = [{"record": f"panel:{i}", "expr": expr} for i, (_, _, expr) in enumerate(load_build().queries())]
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "panels.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_are_what_grafana_users_expect():
    """Built with Grafana's own builders: a `$model` variable everywhere (and `$cohort` on performance),
    stat panels for the current state on top, the drift p-value on a log axis against its threshold,
    embedding drift and the diagnosis verdict as panels."""
    import json

    boards = {name: json.loads(text) for name, text in load_build().render().items()}
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert {"datasource", "model"} <= set(variables), name
        assert variables["model"]["includeAll"] and variables["model"]["allValue"] == ".*"
        assert variables["model"]["query"].startswith("label_values(seismo_")
        assert all('model=~"$model"' in t["expr"] for p in board["panels"] for t in p["targets"] if "{model" in t["expr"] or ",model" in t["expr"])
    assert "cohort" in {v["name"] for v in boards["seismo-performance.json"]["templating"]["list"]}
    for name in ("seismo-serving.json", "seismo-drift.json", "seismo-outliers.json", "seismo-performance.json"):
        stats = [p for p in boards[name]["panels"] if p["type"] == "stat"]
        assert stats and all(p["gridPos"]["y"] == 0 for p in stats[:4]), name
    drift = {p["title"]: p for p in boards["seismo-drift.json"]["panels"]}
    p_value = next(p for title, p in drift.items() if title.startswith("Window p-value"))
    assert p_value["fieldConfig"]["defaults"]["custom"]["scaleDistribution"] == {"log": 10, "type": "log"}
    assert any("seismo_drift_p_value_threshold" in t["expr"] for t in p_value["targets"])
    assert any("seismo_embedding_drift_distance_threshold" in t["expr"] for p in drift.values() for t in p["targets"])
    verdict = next(p for p in boards["seismo-performance.json"]["panels"] if p["title"].startswith("Diagnosis now"))
    assert verdict["type"] == "stat" and verdict["options"]["textMode"] == "name"
