"""Grafana dashboards for Seismo, written from one compact spec: `python dashboards/build.py`.

The JSON files in dashboards/grafana/ are generated from DASHBOARDS below and committed (docker-compose
provisions them, the Kubernetes manifests wrap them in ConfigMaps for Grafana's sidecar); a test
checks that the committed files equal what this script writes, and that every panel's query returns
data from a real Prometheus scraping the local stack.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "grafana"

# dashboard uid -> (title, [(panel title, unit, [(expr, legend)])])
DASHBOARDS: dict[str, tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]] = {
    "seismo-serving": ("Seismo / Model serving", [
        ("Requests per second by status", "reqps", [("sum by (model, code) (rate(seismo_model_requests_total[5m]))", "{{model}} {{code}}")]),
        ("Latency p50 and p99", "s", [
            ("histogram_quantile(0.5, sum by (model, le) (rate(seismo_model_request_seconds_bucket[5m])))", "{{model}} p50"),
            ("histogram_quantile(0.99, sum by (model, le) (rate(seismo_model_request_seconds_bucket[5m])))", "{{model}} p99"),
        ]),
        ("Error share (4xx and 5xx)", "percentunit", [(
            "sum by (model) (rate(seismo_model_requests_total{code=~\"[45]..\"}[5m])) / sum by (model) (rate(seismo_model_requests_total[5m]))",
            "{{model}}")]),
        ("Batch size p50", "none", [("histogram_quantile(0.5, sum by (model, le) (rate(seismo_model_batch_size_bucket[5m])))", "{{model}}")]),
    ]),
    "seismo-pipeline": ("Seismo / Event pipeline", [
        ("Events logged by the model server", "ops", [("sum by (model, type) (rate(seismo_model_events_sent_total[5m]))", "{{model}} {{type}}")]),
        ("Events dropped by the model server, by reason", "ops", [
            ("sum by (model, reason) (rate(seismo_model_events_dropped_total[5m])) or on() vector(0)", "{{model}} {{reason}}")]),
        ("Event logger queue depth (all model servers)", "none", [("sum(seismo_model_event_queue_depth)", "queued")]),
        ("Broker backlog per trigger", "none", [("sum by (trigger) (seismo_broker_backlog)", "{{trigger}}")]),
        ("Broker retries per trigger", "ops", [("sum by (trigger) (rate(seismo_broker_retries_total[5m])) or on() vector(0)", "{{trigger}}")]),
        ("Dead letters per trigger (1h)", "none", [("sum by (trigger) (increase(seismo_broker_dead_letters_total[1h])) or on() vector(0)", "{{trigger}}")]),
        ("Records stored per second", "ops", [("sum by (type) (rate(seismo_logger_events_stored_total[5m]))", "{{type}}")]),
        ("Store commit p99", "s", [("histogram_quantile(0.99, sum by (le) (rate(seismo_logger_store_seconds_bucket[5m])))", "p99")]),
    ]),
    "seismo-outliers": ("Seismo / Outliers", [
        ("Outlier share", "percentunit", [(
            "sum by (model) (rate(seismo_outlier_instances_total{outcome=\"outlier\"}[5m])) / sum by (model) (rate(seismo_outlier_instances_total[5m]))",
            "{{model}}")]),
        ("Outlier score p50 and p95 vs threshold", "none", [
            ("histogram_quantile(0.5, sum by (model, le) (rate(seismo_outlier_score_bucket[5m])))", "{{model}} p50"),
            ("histogram_quantile(0.95, sum by (model, le) (rate(seismo_outlier_score_bucket[5m])))", "{{model}} p95"),
            ("max by (model) (seismo_outlier_threshold)", "{{model}} threshold"),
        ]),
        ("Instances scored per second", "ops", [("sum by (model, outcome) (rate(seismo_outlier_instances_total[5m]))", "{{model}} {{outcome}}")]),
        ("Adversarial share of responses (clean traffic: about 5 %)", "percentunit", [(
            "sum by (model) (rate(seismo_adversarial_instances_total{outcome=\"adversarial\"}[5m])) / sum by (model) (rate(seismo_adversarial_instances_total[5m]))",
            "{{model}}")]),
        ("Adversarial score p95 vs threshold", "none", [
            ("histogram_quantile(0.95, sum by (model, le) (rate(seismo_adversarial_score_bucket[5m])))", "{{model}} p95"),
            ("max by (model) (seismo_adversarial_threshold)", "{{model}} threshold"),
        ]),
    ]),
    "seismo-drift": ("Seismo / Drift", [
        ("Drift detected (last window)", "none", [("max by (model) (seismo_drift_detected)", "{{model}}")]),
        ("Window p-value per detector", "none", [("min by (model, detector) (seismo_drift_p_value)", "{{model}} {{detector}}")]),
        ("Window distance per detector", "none", [("max by (model, detector) (seismo_drift_distance)", "{{model}} {{detector}}")]),
        ("Smallest per-feature p-values", "none", [("bottomk(5, min by (model, feature) (seismo_drift_feature_p_value))", "{{model}} feature {{feature}}")]),
        ("Windows tested (1h), by outcome", "none", [("sum by (model, outcome) (increase(seismo_drift_windows_total[1h]))", "{{model}} {{outcome}}")]),
        ("Current window fill", "none", [("max by (model) (seismo_drift_window_fill)", "{{model}}")]),
    ]),
    "seismo-performance": ("Seismo / Performance from ground truth", [
        ("Accuracy per cohort (realized)", "percentunit", [("seismo_performance_accuracy{group=\"all\"}", "{{model}} {{cohort}}")]),
        ("Accuracy: realized vs estimated (all)", "percentunit", [
            ("seismo_performance_accuracy{cohort=\"all\",group=\"all\"}", "{{model}} realized"),
            ("seismo_performance_estimated_accuracy{cohort=\"all\",group=\"all\"}", "{{model}} estimated"),
        ]),
        ("Calibration error (estimate reliable below 0.05)", "none", [("seismo_performance_calibration_error{cohort=\"all\",group=\"all\"}", "{{model}}")]),
        ("Model-driven vs holdout accuracy", "percentunit", [("seismo_performance_accuracy{cohort=\"all\",group!=\"all\"}", "{{model}} {{group}}")]),
        ("F1 and precision per cohort", "percentunit", [
            ("seismo_performance_f1{group=\"all\"}", "{{model}} {{cohort}} F1"),
            ("seismo_performance_precision{group=\"all\"}", "{{model}} {{cohort}} precision"),
        ]),
        ("Feedback per second: received, joined, pending, orphaned", "ops", [
            ("sum by (model) (rate(seismo_metrics_feedback_received_total[5m]))", "{{model}} received"),
            ("sum by (model) (rate(seismo_metrics_feedback_joined_total[5m]))", "{{model}} joined"),
            ("sum by (model) (rate(seismo_metrics_feedback_pending_total[5m])) or on() vector(0)", "{{model}} pending"),
            ("sum by (model) (rate(seismo_metrics_feedback_orphaned_total[5m])) or on() vector(0)", "{{model}} orphaned"),
        ]),
        ("Label delay p50 and p95", "s", [
            ("histogram_quantile(0.5, sum by (model, le) (rate(seismo_metrics_label_delay_seconds_bucket[1h])))", "{{model}} p50"),
            ("histogram_quantile(0.95, sum by (model, le) (rate(seismo_metrics_label_delay_seconds_bucket[1h])))", "{{model}} p95"),
        ]),
        ("Business value per prediction: realized vs estimated (the config's business unit)", "none", [
            ("seismo_business_value_per_prediction{cohort=\"all\",group=\"all\"}", "{{model}} realized"),
            ("seismo_business_estimated_value_per_prediction{cohort=\"all\",group=\"all\"}", "{{model}} estimated"),
        ]),
        ("Business value of the window's labelled predictions", "none", [
            ("sum by (model, cohort) (seismo_business_value_window_total{group=\"all\"})", "{{model}} {{cohort}}")]),
        ("Diagnosis: the failure mode named now (seismo diagnose)", "none", [
            ("max by (model, cohort, verdict) (seismo_diagnosis_verdict) == 1", "{{model}} {{cohort}}: {{verdict}}")]),
        ("Diagnosis confidence", "percentunit", [("max by (model, cohort) (seismo_diagnosis_confidence)", "{{model}} {{cohort}}")]),
        ("Confusion counts per class (Seldon-style)", "none", [
            ("sum by (model, class) (seismo_metric_true_positive_total{cohort=\"all\"})", "{{model}} {{class}} TP"),
            ("sum by (model, class) (seismo_metric_false_positive_total{cohort=\"all\"})", "{{model}} {{class}} FP"),
        ]),
    ]),
    "seismo-explainer": ("Seismo / Explanations", [
        ("Explanations per minute, by outcome", "none", [
            ("sum by (model, method, outcome) (increase(seismo_explainer_explanations_total[5m])) / 5", "{{model}} {{method}} {{outcome}}")]),
        ("Seconds per explanation p50", "s", [("histogram_quantile(0.5, sum by (model, method, le) (rate(seismo_explainer_seconds_bucket[1h])))", "{{model}} {{method}}")]),
        ("Model calls per explanation p50", "none", [
            ("histogram_quantile(0.5, sum by (model, method, le) (rate(seismo_explainer_model_calls_bucket[1h])))", "{{model}} {{method}}")]),
        ("Anchor precision and coverage p50", "percentunit", [
            ("histogram_quantile(0.5, sum by (model, le) (rate(seismo_explainer_anchor_precision_bucket[1h])))", "{{model}} precision"),
            ("histogram_quantile(0.5, sum by (model, le) (rate(seismo_explainer_anchor_coverage_bucket[1h])))", "{{model}} coverage"),
        ]),
    ]),
}


def panel(index: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict:
    return {
        "id": index + 1, "type": "timeseries", "title": title,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}} for i, (expr, legend) in enumerate(targets)],
    }


def dashboard(uid: str, title: str, panels: list) -> dict:
    return {
        "uid": uid, "title": title, "tags": ["seismo"], "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
                                 "current": {"text": "Prometheus", "value": "prometheus"}}]},
        "panels": [panel(i, *p) for i, p in enumerate(panels)],
    }


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2) + "\n" for uid, (title, panels) in DASHBOARDS.items()}


def queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every query of every panel."""
    return [(uid, title, expr) for uid, (_, panels) in DASHBOARDS.items() for title, _, targets in panels for expr, _ in targets]


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
