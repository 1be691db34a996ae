"""Kubernetes manifests: generated from Seismo's own config, rendered by `kubectl kustomize`, every object
validated against the Kubernetes schemas (kubernetes-validate) and the CRD schemas in tests/data/crds/."""

import functools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import load_script

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
KUBECTL = shutil.which("kubectl")
OVERLAYS = ["base", "overlays/gpu", "overlays/kafka-broker", "overlays/dev"]
CRD_KINDS = {"Broker": "broker", "Trigger": "trigger", "EventPolicy": "eventpolicy", "ServiceMonitor": "servicemonitor", "PrometheusRule": "prometheusrule"}
KUBERNETES_VERSION = "1.30.0"
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (its built-in kustomize renders the manifests)")


def load_build():
    return load_script(MANIFESTS / "build.py")


def render(overlay: str) -> list[dict]:
    """The overlay's objects, fresh each call (callers may change them); kubectl runs once per overlay."""
    return [doc for doc in yaml.safe_load_all(_rendered(overlay)) if doc]


@functools.cache
def _rendered(overlay: str) -> str:
    result = subprocess.run([KUBECTL, "kustomize", str(MANIFESTS / overlay)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_committed_manifests_are_what_build_py_writes():
    rendered = load_build().render()
    committed = {str(p.relative_to(MANIFESTS)): p.read_text() for p in MANIFESTS.rglob("*") if p.is_file() and p.name != "build.py"}
    assert committed == rendered, "manifests/ is stale: run `python manifests/build.py`"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid(overlay):
    import jsonschema
    import kubernetes_validate

    objects = render(overlay)
    assert objects
    for obj in objects:
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CRD_KINDS:
            schema = json.loads((CRDS / f"{CRD_KINDS[obj['kind']]}.json").read_text())
            errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)]
            assert errors == [], f"{where}: {errors}"
        else:
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{where}: {exc.message} at {list(exc.path)}") from None


@needs_kubectl
def test_knative_triggers_agree_with_the_local_brokers_trigger_list():
    """One source: the same names, filters and delivery specs; subscribers are the matching Services."""
    from seismo.broker.triggers import load_triggers

    # The base renders the chart's defaults: without the input detectors' triggers (detectors.inputs), as the local broker's default.
    local = {t.name: t for t in load_triggers(REPO / "seismo" / "config" / "triggers.yaml", env={})}
    base = render("base")
    rendered = {o["metadata"]["name"]: o for o in base if o["kind"] == "Trigger"}
    assert set(rendered) == set(local)
    for name, trigger in rendered.items():
        assert trigger["spec"]["filter"]["attributes"] == dict(local[name].filter_attributes)
        port = int(local[name].subscriber_uri.rsplit(":", 1)[1].strip("/"))
        service = next(o for o in base if o["kind"] == "Service" and o["metadata"]["name"] == trigger["spec"]["subscriber"]["ref"]["name"])
        deployment = next(o for o in base if o["kind"] == "Deployment" and o["metadata"]["name"] == service["metadata"]["name"])
        assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == port
        assert trigger["spec"]["delivery"]["retry"] == local[name].delivery.retry


@needs_kubectl
def test_hardening_and_overlay_specifics():
    base = render("base")
    for deployment in (o for o in base if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" and container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert "limits" in container["resources"] and "requests" in container["resources"]
    rule = next(o for o in base if o["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((REPO / "dashboards" / "alerts.yaml").read_text())
    dashboards = next(o for o in base if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "seismo-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1" and len(dashboards["data"]) == 6
    gpu = {o["metadata"]["name"]: o for o in render("overlays/gpu") if o["kind"] == "Deployment"}
    for name in ("seismo-model", "seismo-outlier"):
        pod = gpu[name]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1 and pod["containers"][0]["image"].endswith("-gpu")
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nodeSelector" not in gpu["seismo-logger"]["spec"]["template"]["spec"]
    broker = next(o for o in render("overlays/kafka-broker") if o["kind"] == "Broker")
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "Kafka"
    dev = [o for o in render("overlays/dev") if o["kind"] == "Deployment"]
    assert all(o["spec"]["replicas"] == 1 for o in dev)
    logger = next(o for o in dev if o["metadata"]["name"] == "seismo-logger")["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in logger and {"name": "SEISMO_LOGGER_SQLITE_PATH", "value": "/records/records.db"} in logger["env"]


def test_the_validators_catch_mistakes():
    """The checks above can fail: a misspelt field in a core object and in a custom resource."""
    import jsonschema
    import kubernetes_validate

    bad_deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                      "spec": {"replica": 1, "selector": {"matchLabels": {"a": "b"}},
                               "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_deployment, KUBERNETES_VERSION, strict=True)
    trigger = {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "t"},
               "spec": {"broker": "default", "subscriber": {"uri": "http://x/"}, "delivery": {"backoffPolicy": "random"}}}
    schema = json.loads((CRDS / "trigger.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(trigger))


@needs_kubectl
def test_access_and_delivery_hardening():
    base = render("base")
    assert not [o for o in base if o["kind"] == "Secret"], "no placeholder credentials may be applied by kubectl apply -k"
    policies = {o["metadata"]["name"]: o["spec"] for o in base if o["kind"] == "NetworkPolicy"}
    assert policies["seismo-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert {"seismo-model-ingress", "seismo-explainer-ingress", "seismo-logger-ingress"} <= set(policies)
    triggers = [o for o in base if o["kind"] == "Trigger"]
    assert triggers and all(t["spec"]["delivery"]["deadLetterSink"]["uri"] == "/v1/dead-letters" for t in triggers)
    for deployment in (o for o in base if o["kind"] == "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
        assert {"name": "SEISMO_AUTH_TOKENS_FILE", "value": "/var/run/secrets/seismo/auth/tokens"} in container["env"]
        assert any(v.get("secret", {}).get("secretName") == "seismo-auth" for v in deployment["spec"]["template"]["spec"]["volumes"])
    kafka = {o["metadata"]["name"]: o for o in render("overlays/kafka-broker") if o["kind"] == "Deployment"}
    for name in ("model", "drift"):
        env = {e["name"]: e.get("value") for e in kafka[f"seismo-{name}"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env[f"SEISMO_{name.upper()}_SINK_URL"].startswith("http://kafka-broker-ingress.")
