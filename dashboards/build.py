"""Grafana dashboards for Seismo, built with Grafana's own builders (grafana-foundation-sdk):
`python dashboards/build.py`.

The JSON files in dashboards/grafana/ are generated from DASHBOARDS below and committed (docker-compose
provisions them, the Kubernetes manifests wrap them in ConfigMaps for Grafana's sidecar); a test
checks that the committed files equal what this script writes, and that every panel's query returns
data from a real Prometheus scraping the local stack (with `$model` and `$cohort` meaning every one).

Every dashboard has a `$datasource` and a `$model` variable (and the performance dashboard `$cohort`),
stat panels for the current state on top, and thresholds where a value has one: the drift p-value on a
logarithmic axis against the threshold its test used (`seismo_drift_p_value_threshold`), the
embedding centroid distance against its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

OUT = Path(__file__).resolve().parent / "grafana"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
M = 'model=~"$model"'
"""The model filter every per-model query carries."""


@dataclass
class Spec:
    """One panel: its queries (expr, legend), unit, and how to show it."""

    title: str
    unit: str
    targets: list[tuple[str, str]]
    kind: str = "timeseries"  # or "stat": the current value, large
    log: bool = False  # a logarithmic y axis (p-values)
    steps: list[tuple[float | None, str]] = field(default_factory=list)  # thresholds: (from value, colour)
    text: dict[int, tuple[str, str]] = field(default_factory=dict)  # stat: value -> (text, colour)
    name_only: bool = False  # stat: show the series name (a verdict), not the value
    minimum: float | None = None
    maximum: float | None = None


GOOD_BAD = {0: ("no", "green"), 1: ("yes", "red")}

DASHBOARDS: dict[str, tuple[str, str, list[Spec]]] = {
    "seismo-serving": ("Seismo / Model serving", "seismo_model_requests_total", [
        Spec("Requests per second now", "reqps", [(f"sum(rate(seismo_model_requests_total{{{M}}}[5m]))", "requests/s")], kind="stat"),
        Spec("Error share now", "percentunit", [(
            f'sum(rate(seismo_model_requests_total{{{M},code=~"[45].."}}[5m])) / sum(rate(seismo_model_requests_total{{{M}}}[5m]))',
            "errors")], kind="stat", steps=[(None, "green"), (0.01, "orange"), (0.05, "red")]),
        Spec("Requests per second by status", "reqps", [(f"sum by (model, code) (rate(seismo_model_requests_total{{{M}}}[5m]))",
                                                         "{{model}} {{code}}")]),
        Spec("Latency p50 and p99", "s", [
            (f"histogram_quantile(0.5, sum by (model, le) (rate(seismo_model_request_seconds_bucket{{{M}}}[5m])))", "{{model}} p50"),
            (f"histogram_quantile(0.99, sum by (model, le) (rate(seismo_model_request_seconds_bucket{{{M}}}[5m])))", "{{model}} p99"),
        ]),
        Spec("Error share (4xx and 5xx)", "percentunit", [(
            f'sum by (model) (rate(seismo_model_requests_total{{{M},code=~"[45].."}}[5m])) / sum by (model) (rate(seismo_model_requests_total{{{M}}}[5m]))',
            "{{model}}")], steps=[(None, "green"), (0.05, "red")]),
        Spec("Batch size p50", "none", [(f"histogram_quantile(0.5, sum by (model, le) (rate(seismo_model_batch_size_bucket{{{M}}}[5m])))",
                                         "{{model}}")]),
    ]),
    "seismo-pipeline": ("Seismo / Event pipeline", "seismo_model_events_sent_total", [
        Spec("Events dropped by the model server (1h)", "none", [
            (f"sum(increase(seismo_model_events_dropped_total{{{M}}}[1h])) or on() vector(0)", "dropped")],
            kind="stat", steps=[(None, "green"), (1, "red")]),
        Spec("Dead letters (1h)", "none", [("sum(increase(seismo_broker_dead_letters_total[1h])) or on() vector(0)", "dead letters")],
             kind="stat", steps=[(None, "green"), (1, "red")]),
        Spec("Events logged by the model server", "ops", [(f"sum by (model, type) (rate(seismo_model_events_sent_total{{{M}}}[5m]))",
                                                           "{{model}} {{type}}")]),
        Spec("Events dropped by the model server, by reason", "ops", [
            (f"sum by (model, reason) (rate(seismo_model_events_dropped_total{{{M}}}[5m])) or on() vector(0)", "{{model}} {{reason}}")]),
        Spec("Event logger queue depth (all model servers)", "none", [("sum(seismo_model_event_queue_depth)", "queued")]),
        Spec("Broker backlog per trigger", "none", [("sum by (trigger) (seismo_broker_backlog)", "{{trigger}}")]),
        Spec("Broker retries per trigger", "ops", [("sum by (trigger) (rate(seismo_broker_retries_total[5m])) or on() vector(0)", "{{trigger}}")]),
        Spec("Dead letters per trigger (1h)", "none", [("sum by (trigger) (increase(seismo_broker_dead_letters_total[1h])) or on() vector(0)",
                                                       "{{trigger}}")]),
        Spec("Records stored per second", "ops", [("sum by (type) (rate(seismo_logger_events_stored_total[5m]))", "{{type}}")]),
        Spec("Store commit p99", "s", [("histogram_quantile(0.99, sum by (le) (rate(seismo_logger_store_seconds_bucket[5m])))", "p99")]),
    ]),
    "seismo-outliers": ("Seismo / Outliers", "seismo_outlier_instances_total", [
        Spec("Outlier share now", "percentunit", [(
            f'sum(rate(seismo_outlier_instances_total{{{M},outcome="outlier"}}[5m])) / sum(rate(seismo_outlier_instances_total{{{M}}}[5m]))',
            "outliers")], kind="stat", steps=[(None, "green"), (0.1, "orange"), (0.2, "red")]),
        Spec("Outlier share", "percentunit", [(
            f'sum by (model) (rate(seismo_outlier_instances_total{{{M},outcome="outlier"}}[5m])) / sum by (model) (rate(seismo_outlier_instances_total{{{M}}}[5m]))',
            "{{model}}")], steps=[(None, "green"), (0.2, "red")]),
        Spec("Outlier score p50 and p95 vs threshold", "none", [
            (f"histogram_quantile(0.5, sum by (model, le) (rate(seismo_outlier_score_bucket{{{M}}}[5m])))", "{{model}} p50"),
            (f"histogram_quantile(0.95, sum by (model, le) (rate(seismo_outlier_score_bucket{{{M}}}[5m])))", "{{model}} p95"),
            (f"max by (model) (seismo_outlier_threshold{{{M}}})", "{{model}} threshold"),
        ]),
        Spec("Instances scored per second", "ops", [(f"sum by (model, outcome) (rate(seismo_outlier_instances_total{{{M}}}[5m]))",
                                                     "{{model}} {{outcome}}")]),
        Spec("Adversarial share of responses (clean traffic: about 5 %)", "percentunit", [(
            f'sum by (model) (rate(seismo_adversarial_instances_total{{{M},outcome="adversarial"}}[5m])) / sum by (model) (rate(seismo_adversarial_instances_total{{{M}}}[5m]))',
            "{{model}}")], steps=[(None, "green"), (0.1, "red")]),
        Spec("Adversarial score p95 vs threshold", "none", [
            (f"histogram_quantile(0.95, sum by (model, le) (rate(seismo_adversarial_score_bucket{{{M}}}[5m])))", "{{model}} p95"),
            (f"max by (model) (seismo_adversarial_threshold{{{M}}})", "{{model}} threshold"),
        ]),
    ]),
    "seismo-drift": ("Seismo / Drift", "seismo_drift_windows_total", [
        Spec("Input drift now (last window)", "none", [(f"max(seismo_drift_detected{{{M}}})", "drift")], kind="stat", text=GOOD_BAD),
        Spec("Embedding drift now (last window)", "none", [(f"max(seismo_embedding_drift_detected{{{M}}})", "embedding drift")],
             kind="stat", text=GOOD_BAD),
        Spec("Window p-value per detector vs the threshold its test used (log scale)", "none", [
            (f"min by (model, detector) (seismo_drift_p_value{{{M}}})", "{{model}} {{detector}}"),
            (f"max by (model, detector) (seismo_drift_p_value_threshold{{{M}}})", "{{model}} {{detector}} threshold"),
        ], log=True),
        Spec("Window distance per detector", "none", [(f"max by (model, detector) (seismo_drift_distance{{{M}}})", "{{model}} {{detector}}")]),
        Spec("Embedding centroid distance vs threshold", "none", [
            (f"max by (model) (seismo_embedding_drift_distance{{{M}}})", "{{model}} distance"),
            (f"max by (model) (seismo_embedding_drift_distance_threshold{{{M}}})", "{{model}} threshold"),
        ], minimum=0),
        Spec("Smallest per-feature p-values", "none", [(f"bottomk(5, min by (model, feature) (seismo_drift_feature_p_value{{{M}}}))",
                                                        "{{model}} feature {{feature}}")], log=True),
        Spec("Windows tested (1h), by outcome", "none", [(f"sum by (model, outcome) (increase(seismo_drift_windows_total{{{M}}}[1h]))",
                                                          "{{model}} {{outcome}}")]),
        Spec("Current window fill", "none", [(f"max by (model) (seismo_drift_window_fill{{{M}}})", "{{model}}")]),
        Spec("Data quality: issues per checked instance, by issue (the metrics server's quality block)", "percentunit", [(
            f"sum by (model, issue) (rate(seismo_data_quality_issues_total{{{M}}}[5m])) / on(model) group_left "
            f"sum by (model) (rate(seismo_data_quality_instances_total{{{M}}}[5m]))", "{{model}} {{issue}}")], minimum=0),
        Spec("Data quality: features with most issues (1h)", "none", [(
            f"topk(5, sum by (model, feature, issue) (increase(seismo_data_quality_issues_total{{{M}}}[1h])))",
            "{{model}} {{feature}} {{issue}}")], minimum=0),
    ]),
    # The windowed gauges are computed by every metrics server replica from the one shared ledger (PostgreSQL):
    # the same value on every pod, so panels take their max, never their sum; counters are summed.
    "seismo-performance": ("Seismo / Performance from ground truth", "seismo_performance_accuracy", [
        Spec("Accuracy now (all)", "percentunit", [(f'max(seismo_performance_accuracy{{{M},cohort="all",group="all"}})', "accuracy")],
             kind="stat", steps=[(None, "red"), (0.7, "orange"), (0.85, "green")], minimum=0, maximum=1),
        Spec("Diagnosis now (seismo diagnose)", "none", [
            (f'max by (verdict) (seismo_diagnosis_verdict{{{M},cohort="all"}}) == 1', "{{verdict}}")], kind="stat", name_only=True),
        Spec("Accuracy per cohort (realized)", "percentunit", [
            (f'max by (model, cohort) (seismo_performance_accuracy{{{M},cohort=~"$cohort",group="all"}})', "{{model}} {{cohort}}")],
            steps=[(None, "red"), (0.7, "green")], minimum=0, maximum=1),
        Spec("Accuracy: realized vs estimated (all)", "percentunit", [
            (f'max by (model) (seismo_performance_accuracy{{{M},cohort="all",group="all"}})', "{{model}} realized"),
            (f'max by (model) (seismo_performance_estimated_accuracy{{{M},cohort="all",group="all"}})', "{{model}} estimated"),
        ], minimum=0, maximum=1),
        Spec("Calibration error (estimate reliable below 0.05)", "none", [
            (f'max by (model) (seismo_performance_calibration_error{{{M},cohort="all",group="all"}})', "{{model}}")], steps=[(None, "green"), (0.05, "red")]),
        Spec("Model-driven vs holdout accuracy", "percentunit", [
            (f'max by (model, group) (seismo_performance_accuracy{{{M},cohort="all",group!="all"}})', "{{model}} {{group}}")], minimum=0, maximum=1),
        Spec("F1 and precision per cohort", "percentunit", [
            (f'max by (model, cohort) (seismo_performance_f1{{{M},cohort=~"$cohort",group="all"}})', "{{model}} {{cohort}} F1"),
            (f'max by (model, cohort) (seismo_performance_precision{{{M},cohort=~"$cohort",group="all"}})', "{{model}} {{cohort}} precision"),
        ], minimum=0, maximum=1),
        Spec("Feedback per second: received, joined, pending, orphaned", "ops", [
            (f"sum by (model) (rate(seismo_metrics_feedback_received_total{{{M}}}[5m]))", "{{model}} received"),
            (f"sum by (model) (rate(seismo_metrics_feedback_joined_total{{{M}}}[5m]))", "{{model}} joined"),
            (f"sum by (model) (rate(seismo_metrics_feedback_pending_total{{{M}}}[5m])) or on() vector(0)", "{{model}} pending"),
            (f"sum by (model) (rate(seismo_metrics_feedback_orphaned_total{{{M}}}[5m])) or on() vector(0)", "{{model}} orphaned"),
        ]),
        Spec("Label delay p50 and p95", "s", [
            (f"histogram_quantile(0.5, sum by (model, le) (rate(seismo_metrics_label_delay_seconds_bucket{{{M}}}[1h])))", "{{model}} p50"),
            (f"histogram_quantile(0.95, sum by (model, le) (rate(seismo_metrics_label_delay_seconds_bucket{{{M}}}[1h])))", "{{model}} p95"),
        ]),
        Spec("Business value per prediction: realized vs estimated (the config's business unit)", "none", [
            (f'max by (model) (seismo_business_value_per_prediction{{{M},cohort="all",group="all"}})', "{{model}} realized"),
            (f'max by (model) (seismo_business_estimated_value_per_prediction{{{M},cohort="all",group="all"}})', "{{model}} estimated"),
        ]),
        Spec("Business value of the window's labelled predictions", "none", [
            (f'max by (model, cohort) (seismo_business_value_window_total{{{M},cohort=~"$cohort",group="all"}})', "{{model}} {{cohort}}")]),
        Spec("Diagnosis: the failure mode named over time", "none", [
            (f'max by (model, cohort, verdict) (seismo_diagnosis_verdict{{{M},cohort=~"$cohort"}}) == 1', "{{model}} {{cohort}}: {{verdict}}")]),
        Spec("Diagnosis confidence", "percentunit", [(f'max by (model, cohort) (seismo_diagnosis_confidence{{{M},cohort=~"$cohort"}})',
                                                      "{{model}} {{cohort}}")], minimum=0, maximum=1),
        Spec("Confusion counts per class (Seldon-style)", "none", [
            (f'sum by (model, class) (seismo_metric_true_positive_total{{{M},cohort="all"}})', "{{model}} {{class}} TP"),
            (f'sum by (model, class) (seismo_metric_false_positive_total{{{M},cohort="all"}})', "{{model}} {{class}} FP"),
        ]),
    ]),
    "seismo-explainer": ("Seismo / Explanations", "seismo_explainer_explanations_total", [
        Spec("Explanations per minute, by outcome", "none", [
            (f"sum by (model, method, outcome) (increase(seismo_explainer_explanations_total{{{M}}}[5m])) / 5", "{{model}} {{method}} {{outcome}}")]),
        Spec("Seconds per explanation p50", "s", [
            (f"histogram_quantile(0.5, sum by (model, method, le) (rate(seismo_explainer_seconds_bucket{{{M}}}[1h])))", "{{model}} {{method}}")]),
        Spec("Model calls per explanation p50", "none", [
            (f"histogram_quantile(0.5, sum by (model, method, le) (rate(seismo_explainer_model_calls_bucket{{{M}}}[1h])))", "{{model}} {{method}}")]),
        Spec("Anchor precision and coverage p50", "percentunit", [
            (f"histogram_quantile(0.5, sum by (model, le) (rate(seismo_explainer_anchor_precision_bucket{{{M}}}[1h])))", "{{model}} precision"),
            (f"histogram_quantile(0.5, sum by (model, le) (rate(seismo_explainer_anchor_coverage_bucket{{{M}}}[1h])))", "{{model}} coverage"),
        ], minimum=0, maximum=1),
    ]),
}


def _queries(spec: Spec) -> list[prometheus.Dataquery]:
    return [prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
            for i, (expr, legend) in enumerate(spec.targets)]


def _thresholds(spec: Spec) -> dashboard.ThresholdsConfig:
    steps = spec.steps or [(None, "green")]
    return dashboard.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps([models.Threshold(value=v, color=c) for v, c in steps])


def panel(spec: Spec, position: models.GridPos, number: int):
    if spec.kind == "stat":
        built = (stat.Panel().id(number).title(spec.title).unit(spec.unit).datasource(DATASOURCE).grid_pos(position).thresholds(_thresholds(spec))
                 .color_mode(common_models.BigValueColorMode.BACKGROUND).graph_mode(common_models.BigValueGraphMode.NONE)
                 .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
                 .text_mode(common_models.BigValueTextMode.NAME if spec.name_only else common_models.BigValueTextMode.VALUE))
        if spec.text:
            built = built.mappings([models.ValueMap(options={str(v): models.ValueMappingResult(text=t, color=c, index=i)
                                                             for i, (v, (t, c)) in enumerate(spec.text.items())})])
    else:
        built = (timeseries.Panel().id(number).title(spec.title).unit(spec.unit).datasource(DATASOURCE).grid_pos(position)
                 .legend(common.VizLegendOptions().display_mode(common_models.LegendDisplayMode.LIST)
                         .placement(common_models.LegendPlacement.BOTTOM).show_legend(True))
                 .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI))
                 .thresholds(_thresholds(spec)))
        if spec.steps:
            built = built.thresholds_style(common.GraphThresholdsStyleConfig().mode(common_models.GraphTresholdsStyleMode.DASHED))
        if spec.log:
            built = built.scale_distribution(common.ScaleDistributionConfig().type(common_models.ScaleDistribution.LOG).log(10))
    if spec.minimum is not None:
        built = built.min(spec.minimum)
    if spec.maximum is not None:
        built = built.max(spec.maximum)
    for query in _queries(spec):
        built = built.with_target(query)
    return built


def _variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE).query(query).refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True).all_value(".*").multi(True).sort(models.VariableSort.ALPHABETICAL_ASC)
            .current(models.VariableOption(selected=True, text="All", value="$__all")))


def build(uid: str, title: str, model_metric: str, specs: list[Spec]) -> dict:
    board = (dashboard.Dashboard(title).uid(uid).tags(["seismo"]).editable().time("now-1h", "now").refresh("30s")
             .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
             .with_variable(_variable("model", "model", f"label_values({model_metric}, model)")))
    if any("$cohort" in expr for spec in specs for expr, _ in spec.targets):
        board = board.with_variable(_variable("cohort", "cohort", f'label_values({model_metric}{{{M}}}, cohort)'))
    # Stats first, four to a row; then the time series, two to a row.
    stats = [s for s in specs if s.kind == "stat"]
    series = [s for s in specs if s.kind != "stat"]
    for i, spec in enumerate(stats):
        board = board.with_panel(panel(spec, models.GridPos(h=4, w=6, x=6 * (i % 4), y=4 * (i // 4)), i + 1))
    top = 4 * ((len(stats) + 3) // 4)
    for i, spec in enumerate(series):
        board = board.with_panel(panel(spec, models.GridPos(h=8, w=12, x=12 * (i % 2), y=top + 8 * (i // 2)), len(stats) + i + 1))
    return json.loads(JSONEncoder(sort_keys=True).encode(board.build()))


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {f"{uid}.json": json.dumps(build(uid, *spec), indent=2, sort_keys=True) + "\n" for uid, spec in DASHBOARDS.items()}


def queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every query of every panel, with `$model` and `$cohort`
    as Grafana's "All" sends them (`.*`): what a test runs against a real Prometheus."""
    return [(uid, spec.title, expr.replace("$model", ".*").replace("$cohort", ".*"))
            for uid, (_, _, specs) in DASHBOARDS.items() for spec in specs for expr, _ in spec.targets]


def variable_queries() -> list[tuple[str, str]]:
    """(dashboard uid, the metric each `$model` variable lists its values from)."""
    return [(uid, metric) for uid, (_, metric, _) in DASHBOARDS.items()]


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}")
