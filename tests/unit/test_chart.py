"""The Helm chart (charts/seismo), linted and rendered by Helm v4's own Go SDK (helm-python-sdk, no helm
binary, no cluster): every documented values combination validates against the Kubernetes and CRD schemas,
wrong values fail with a message naming them, and the default render carries the same objects as the
kustomize base (both are filled from manifests/build.py)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import load_script

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (a dev dependency) renders the chart")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "seismo"
CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
CRD_KINDS = {"Broker": "broker", "Trigger": "trigger", "EventPolicy": "eventpolicy", "ServiceMonitor": "servicemonitor", "PrometheusRule": "prometheusrule"}
KUBERNETES_VERSION = "1.30.0"
KUBECTL = shutil.which("kubectl")

# Two declared models, as `seismo.yaml` lists them: one Seismo serves, one served elsewhere.
TWO_MODELS = {"models": [
    {"name": "churn", "artifact": "churn/churn.joblib", "task": "multiclass", "feature_names": ["a", "b"], "window": 200, "embedding": True,
     "cohorts": [{"name": "big", "when": "a > 1"}], "business": {"unit": "EUR", "correct": 1.0, "incorrect": -3.0}},
    {"name": "fraud", "endpoint": "http://fraud.models", "task": "binary", "watch": ["drift", "performance"]}]}

# The combinations the docs' values table documents.
COMBINATIONS = {
    "two-models": TWO_MODELS,
    "default": {},
    "gpu": {"services": {"model": {"gpu": {"enabled": True}}, "outlier": {"gpu": {"enabled": True, "count": 2}}}},
    "kafka": {"broker": {"class": "Kafka", "kafka": {"bootstrapServers": "kafka-0.kafka:9092"}}},
    "sqlite": {"store": {"type": "sqlite"}, "services": {"logger": {"replicas": 1}, "metrics": {"replicas": 1}}},
    "postgres": {"store": {"type": "postgres", "postgres": {"urlSecret": "team-db"}}, "services": {"metrics": {"replicas": 3}, "drift": {"replicas": 2}}},
    "minimal": {"auth": {"enabled": False}, "networkPolicies": {"enabled": False}, "podDisruptionBudgets": {"enabled": False},
                "monitoring": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}, "dashboards": {"enabled": False}},
                "persistence": {"models": {"existingClaim": "my-models"}},
                "store": {"elasticsearch": {"url": "https://es.example:9200", "credentialsSecret": ""}}},
    "events-open": {"auth": {"events": "open"}},
    "feedback-senders": {"auth": {"senders": {"feedback": ["system:serviceaccount:labels:annotator-*"]}}},
    "seldon-graphs": {"seldonGraphs": "kind: SeldonDeployment\nmetadata: {name: assistant}\nspec:\n  predictors:\n  - name: default\n"
                                      "    graph: {name: asr, children: [{name: intent}]}\n"},
    "own-images": {"image": {"registry": "registry.example/team", "tag": "1.2.3"}, "imagePullSecrets": [{"name": "regcred"}],
                   "services": {"drift": {"image": {"repository": "other/drift", "tag": "dev"}, "replicas": 0,
                                          "extraEnv": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4317"}]}}},
}


def render(values: dict | None = None, namespace: str = "seismo") -> list[dict]:
    chart = helm.Chart.load(CHART)
    out = chart.render(values or {}, name="seismo", namespace=namespace, is_install=True)
    return [doc for path, text in sorted(out.items()) if not path.endswith("NOTES.txt") for doc in yaml.safe_load_all(text) if doc]


def by_key(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_chart_files_are_what_build_py_writes():
    generated = load_script(REPO / "manifests" / "build.py").chart()
    for path, text in generated.items():
        assert (CHART / path).read_text() == text, f"charts/seismo/{path} is stale: run `python manifests/build.py`"


def test_lint_is_clean():
    report = helm.lint(CHART, strict=True, namespace="seismo", kube_version=f"v{KUBERNETES_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], problems
    # The linter is real: a chart with a broken template fails it.
    broken = shutil.copytree(CHART, Path(pytest.importorskip("tempfile").mkdtemp()) / "seismo")
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata: {name: {{ .Values.nothing.here }}}\n")
    assert any(m["severity"] == 3 for m in helm.lint(broken)["messages"])


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_rendered_object_is_valid(combination):
    import jsonschema
    import kubernetes_validate

    objects = render(COMBINATIONS[combination])
    assert len(objects) > 20
    for obj in objects:
        where = f"{combination}: {obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["namespace"] == "seismo", where
        if obj["kind"] in CRD_KINDS:
            schema = json.loads((CRDS / f"{CRD_KINDS[obj['kind']]}.json").read_text())
            errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)]
            assert errors == [], f"{where}: {errors}"
        else:
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{where}: {exc.message} at {list(exc.path)}") from None


def _container(objects: list[dict], name: str) -> dict:
    return by_key(objects)[("Deployment", f"seismo-{name}")]["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_each_combination_does_what_its_values_say():
    gpu = render(COMBINATIONS["gpu"])
    for name, count in (("model", 1), ("outlier", 2)):
        pod = by_key(gpu)[("Deployment", f"seismo-{name}")]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == count
        assert pod["containers"][0]["image"] == f"ghcr.io/seismo/{name}:0.1.0-gpu"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nodeSelector" not in by_key(gpu)[("Deployment", "seismo-logger")]["spec"]["template"]["spec"]

    kafka = by_key(render(COMBINATIONS["kafka"]))
    assert kafka[("Broker", "default")]["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "Kafka"
    assert kafka[("Broker", "default")]["spec"]["config"]["name"] == "seismo-kafka-broker-config"
    assert kafka[("ConfigMap", "seismo-kafka-broker-config")]["data"]["bootstrap.servers"] == "kafka-0.kafka:9092"
    for name in ("model", "drift"):
        sink = _env(_container(list(kafka.values()), name))[f"SEISMO_{name.upper()}_SINK_URL"]
        assert sink == "http://kafka-broker-ingress.knative-eventing.svc.cluster.local/seismo/default"

    sqlite = render(COMBINATIONS["sqlite"])
    for name in ("logger", "metrics"):
        container = _container(sqlite, name)
        assert "envFrom" not in container and _env(container)[f"SEISMO_{name.upper()}_SQLITE_PATH"] == "/records/records.db"
        assert {"name": "records", "mountPath": "/records"} in container["volumeMounts"]
    assert ("PersistentVolumeClaim", "seismo-records") in by_key(sqlite)

    budgets = {name: by_key(render())[("PodDisruptionBudget", f"seismo-{name}")]["spec"] for name in ("logger", "metrics")}
    assert budgets["logger"]["minAvailable"] == 1  # two replicas: one stays
    assert budgets["metrics"] == {"maxUnavailable": 1, "selector": budgets["metrics"]["selector"]}  # one: a drain may evict it

    postgres = render(COMBINATIONS["postgres"])
    for name in ("logger", "metrics", "drift"):
        container = _container(postgres, name)
        (url,) = [e for e in container["env"] if e["name"] == f"SEISMO_{name.upper()}_POSTGRES_URL"]
        assert url["valueFrom"] == {"secretKeyRef": {"name": "team-db", "key": "url"}} and "envFrom" not in container
        assert not any("ELASTICSEARCH" in e["name"] for e in container["env"])
    for name, replicas in (("metrics", 3), ("drift", 2)):  # no volume of their own: they roll like any Deployment
        deployment = by_key(postgres)[("Deployment", f"seismo-{name}")]
        assert deployment["spec"]["replicas"] == replicas and "strategy" not in deployment["spec"]
        assert ("PersistentVolumeClaim", f"seismo-{name}-state") not in by_key(postgres)

    minimal = render(COMBINATIONS["minimal"])
    kinds = {o["kind"] for o in minimal}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget"}
    assert ("ConfigMap", "seismo-dashboards") not in by_key(minimal) and ("PersistentVolumeClaim", "seismo-models") not in by_key(minimal)
    logger = _container(minimal, "logger")
    assert "SEISMO_AUTH_TOKENS_FILE" not in _env(logger) and "envFrom" not in logger
    assert _env(logger)["SEISMO_LOGGER_ELASTICSEARCH_URL"] == "https://es.example:9200"
    assert "SEISMO_LOGGER_ELASTICSEARCH_SECRET_DIR" not in _env(logger)
    pod = by_key(minimal)[("Deployment", "seismo-logger")]["spec"]["template"]["spec"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "my-models", "readOnly": True}} in pod["volumes"]

    # Knative's sender identity (the default): receivers check the broker's tokens, senders send their own,
    # EventPolicies name who may post which types; `events: open` turns all of it off.
    default = by_key(render())
    for name in ("logger", "outlier", "drift", "metrics"):
        env = _env(_container(list(default.values()), name))
        assert env["SEISMO_AUTH_OIDC_AUDIENCE"] == f"seismo-{name}" and env["SEISMO_AUTH_OIDC_ISSUER"].startswith("https://")
        assert env["SEISMO_AUTH_OIDC_SUBJECTS"] == "broker=system:serviceaccount:seismo:*-oidc-eventing.knative.dev-trigger"
    for name in ("model", "drift"):
        pod = default[("Deployment", f"seismo-{name}")]["spec"]["template"]["spec"]
        assert _env(pod["containers"][0])["SEISMO_AUTH_SEND_TOKEN_FILE"] == "/var/run/secrets/seismo/broker-token/token"
        token = next(v for v in pod["volumes"] if v["name"] == "broker-token")["projected"]["sources"][0]["serviceAccountToken"]
        assert token["audience"] == "eventing.knative.dev/broker/seismo/default"
        assert pod["serviceAccountName"] == f"seismo-{name}" and pod["automountServiceAccountToken"] is False
    assert all(t["spec"]["subscriber"]["audience"] == t["spec"]["subscriber"]["ref"]["name"] for k, t in default.items() if k[0] == "Trigger")
    drift_policy = default[("EventPolicy", "seismo-drift-events")]["spec"]
    assert {"sub": "system:serviceaccount:seismo:seismo-drift"} in drift_policy["from"]
    assert {"sub": "system:serviceaccount:seismo:drift-kserve-request-oidc-eventing.knative.dev-trigger"} in drift_policy["from"]
    assert drift_policy["filters"] == [{"cesql": "type IN ('org.kubeflow.serving.inference.drift')"}]
    assert not any("seismo-model" in f["sub"] for f in drift_policy["from"])
    senders = by_key(render(COMBINATIONS["feedback-senders"]))
    assert {"sub": "system:serviceaccount:labels:annotator-*"} in senders[("EventPolicy", "seismo-feedback-events")]["spec"]["from"]
    opened = render(COMBINATIONS["events-open"])
    assert "EventPolicy" not in {o["kind"] for o in opened}
    assert all("audience" not in o["spec"]["subscriber"] for o in opened if o["kind"] == "Trigger")
    logger = _env(_container(opened, "logger"))
    assert logger["SEISMO_AUTH_EVENTS"] == "open" and "SEISMO_AUTH_OIDC_ISSUER" not in logger

    own = render(COMBINATIONS["own-images"])
    assert _container(own, "model")["image"] == "registry.example/team/model:1.2.3"
    drift = by_key(own)[("Deployment", "seismo-drift")]
    assert drift["spec"]["replicas"] == 0 and drift["spec"]["template"]["spec"]["containers"][0]["image"] == "other/drift:dev"
    assert _env(drift["spec"]["template"]["spec"]["containers"][0])["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"
    assert drift["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_seldon_graphs_reach_the_logger_and_the_metrics_server_as_a_file_they_can_read(tmp_path):
    from seismo.protocol.seldon_graph import load_graphs

    objects = by_key(render(COMBINATIONS["seldon-graphs"]))
    text = objects[("ConfigMap", "seismo-config")]["data"]["seldon-graphs.yaml"]
    (tmp_path / "seldon-graphs.yaml").write_text(text)
    place = load_graphs(tmp_path / "seldon-graphs.yaml").place({"inferenceservicename": "assistant", "modelid": "intent"}, "p")
    assert (place.prediction_id, place.parent_id) == ("p:intent", "p")
    for name in ("logger", "metrics"):
        assert _env(_container(list(objects.values()), name))[f"SEISMO_{name.upper()}_SELDON_GRAPHS"] == "/config/seldon-graphs.yaml"
    assert "SEISMO_DRIFT_SELDON_GRAPHS" not in _env(_container(list(objects.values()), "drift"))
    default = by_key(render())
    assert "seldon-graphs.yaml" not in default[("ConfigMap", "seismo-config")]["data"]
    assert "SEISMO_LOGGER_SELDON_GRAPHS" not in _env(_container(list(default.values()), "logger"))


def test_the_release_namespace_is_used_everywhere():
    objects = render(namespace="monitoring-prod")
    assert {o["metadata"]["namespace"] for o in objects} == {"monitoring-prod"}
    assert _env(_container(objects, "model"))["SEISMO_MODEL_SINK_URL"].endswith("/monitoring-prod/default")
    assert _env(_container(objects, "model"))["SEISMO_MODEL_NAMESPACE"] == "monitoring-prod"


@pytest.mark.parametrize(("values", "message"), [
    ({"store": {"type": "mongo"}}, "at '/store/type': value must be one of 'elasticsearch', 'postgres', 'sqlite'"),
    ({"services": {"model": {"replica": 2}}}, "additional properties 'replica' not allowed"),
    ({"services": {"model": {"replicas": -1}}}, "/services/model/replicas"),
    ({"broker": {"class": "InMemoryChannel"}}, "/broker/class"),
    ({"store": {"elasticsearch": {"url": "es:9200"}}}, "/store/elasticsearch/url"),
    ({"services": {"logger": {"resources": {"requests": {"memory": "lots of it"}}}}}, "/services/logger/resources/requests/memory"),
    ({"store": {"type": "sqlite"}}, "services.logger.replicas is 2 but store.type is sqlite"),
    ({"services": {"metrics": {"replicas": 2}}}, "services.metrics.replicas is 2 but store.type is elasticsearch"),
    ({"services": {"drift": {"replicas": 3}}}, "services.drift.replicas is 3 but store.type is elasticsearch"),
    ({**TWO_MODELS, "services": {"drift": {"replicas": 2}}}, "services.drift-churn.replicas is 2"),
])
def test_wrong_values_fail_with_a_message_naming_them(values, message):
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    assert message in str(caught.value)


def _strip_hash(name: str) -> str:
    return re.sub(r"^(seismo-config)-[a-z0-9]{10}$", r"\1", name)  # kustomize's configMapGenerator suffix (the dashboards opt out)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (its built-in kustomize renders the base)")
def test_default_render_carries_the_kustomize_bases_objects():
    result = subprocess.run([KUBECTL, "kustomize", str(REPO / "manifests" / "base")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    base = {(o["kind"], _strip_hash(o["metadata"]["name"])): o for o in yaml.safe_load_all(result.stdout) if o}
    base.pop(("Namespace", "seismo"))  # `helm install --create-namespace` makes it; a chart must not own it
    chart = by_key(render())
    assert set(chart) == set(base)
    for key, ours in chart.items():
        theirs = base[key]
        if key[0] == "Deployment":
            pod, base_pod = ours["spec"]["template"]["spec"], theirs["spec"]["template"]["spec"]
            c, bc = pod["containers"][0], base_pod["containers"][0]
            assert ours["spec"]["replicas"] == theirs["spec"]["replicas"], key
            assert ours["spec"]["selector"] == theirs["spec"]["selector"], key
            assert c["image"] == bc["image"] and c["resources"] == bc["resources"], key
            assert c["ports"] == bc["ports"], key
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert c[probe] == bc[probe], (key, probe)
            assert c["securityContext"] == bc["securityContext"] and pod["securityContext"] == base_pod["securityContext"], key
            assert _env(c) == _env(bc), key
            assert c.get("envFrom") == bc.get("envFrom"), key
            assert sorted(m["mountPath"] for m in c["volumeMounts"]) == sorted(m["mountPath"] for m in bc["volumeMounts"]), key
        elif key[0] == "Service":
            assert ours["spec"]["ports"] == theirs["spec"]["ports"], key
            assert ours["spec"]["selector"] == theirs["spec"]["selector"], key
        elif key[0] == "ConfigMap":
            assert ours["data"] == theirs["data"], key
        elif key[0] == "ServiceAccount":
            assert ours["automountServiceAccountToken"] is theirs["automountServiceAccountToken"] is False, key
        else:
            assert ours["spec"] == theirs["spec"], key
    assert chart[("Trigger", "logger-kserve-request")]["spec"]["subscriber"]["ref"]["name"] == "seismo-logger"



def test_egress_is_restricted_too():
    """The NetworkPolicies restricted ingress only: a compromised pod could reach anything."""
    default = by_key(render())
    egress = default[("NetworkPolicy", "seismo-egress")]["spec"]
    assert egress["policyTypes"] == ["Egress"] and egress["podSelector"] == {}
    ports = [p["port"] for rule in egress["egress"] for p in rule.get("ports", [])]
    assert ports == [53, 53, 443, 6443, 9200]
    assert {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-eventing"}}}]} in egress["egress"]
    extra = {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 4317, "protocol": "TCP"}]}
    more = by_key(render({"networkPolicies": {"extraEgress": [extra]}}))[("NetworkPolicy", "seismo-egress")]["spec"]["egress"]
    assert more[-1] == extra and len(more) == len(egress["egress"]) + 1
    assert ("NetworkPolicy", "seismo-egress") not in by_key(render(COMBINATIONS["minimal"]))


def test_declared_models_get_their_own_services_triggers_and_configuration():
    """The `models:` list: per model its detectors and their Triggers (filtered on the model's name), its
    model server when it has an artifact, its metrics configuration; the example's per-model services and
    Triggers give way. Lint passes with the list (Helm's own linter, schema included)."""
    report = helm.lint(CHART, TWO_MODELS, strict=True, namespace="seismo", kube_version=f"v{KUBERNETES_VERSION}")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []
    objects = by_key(render(TWO_MODELS))
    deployments = sorted(name for kind, name in objects if kind == "Deployment")
    assert deployments == ["seismo-drift-churn", "seismo-drift-fraud", "seismo-logger", "seismo-metrics", "seismo-model-churn",
                           "seismo-outlier-churn"]
    triggers = {name: o["spec"] for (kind, name), o in objects.items() if kind == "Trigger"}
    for model, roles in (("churn", ("drift", "outlier")), ("fraud", ("drift",))):
        for role in roles:
            for engine in ("kserve", "seldon"):
                spec = triggers[f"{role}-{model}-{engine}-request"]
                assert spec["filter"]["attributes"]["inferenceservicename"] == model
                assert spec["subscriber"]["ref"]["name"] == f"seismo-{role}-{model}" and spec["subscriber"]["audience"] == f"seismo-{role}-{model}"
    assert "outlier-fraud-kserve-request" not in triggers and "drift-kserve-request" not in triggers
    # `embedding: true`: the model's responses (its own embedding) go to its drift service too.
    assert triggers["drift-churn-kserve-response"]["filter"]["attributes"]["type"] == "org.kubeflow.serving.inference.response"
    assert "drift-fraud-kserve-response" not in triggers
    env = {e["name"]: e.get("value") for e in objects[("Deployment", "seismo-drift-churn")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SEISMO_DRIFT_MODEL"] == "churn" and env["SEISMO_DRIFT_DETECTOR_PATH"] == "/models/declared/churn/drift"
    assert env["SEISMO_DRIFT_WINDOW_SIZE"] == "200" and env["SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH"] == "/models/declared/churn/embedding"
    fraud = {e["name"]: e.get("value") for e in objects[("Deployment", "seismo-drift-fraud")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH" not in fraud  # the example's embedding detector is not another model's
    model_env = {e["name"]: e.get("value") for e in objects[("Deployment", "seismo-model-churn")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert model_env["SEISMO_MODEL_PATH"] == "/models/churn/churn.joblib" and model_env["SEISMO_MODEL_NAME"] == "churn"
    logger_env = {e["name"]: e.get("value") for e in objects[("Deployment", "seismo-logger")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert logger_env["SEISMO_LOGGER_MODELS"] == "churn,fraud"
    metrics = yaml.safe_load(objects[("ConfigMap", "seismo-config")]["data"]["metrics.yaml"])["models"]
    assert metrics["churn"]["type"] == "multiclass-onehot" and metrics["churn"]["features"] == ["a", "b"]
    assert metrics["churn"]["diagnosis"]["reference"] == "/models/declared/churn/reference.npy"
    # Data quality: for a model without `embedding: true` unless it says otherwise (the chart cannot read the reference's size).
    assert metrics["fraud"] == {"type": "binary", "quality": {"reference": "/models/declared/fraud/reference.npy"}}
    assert "quality" not in metrics["churn"]
    said = {"models": [{**TWO_MODELS["models"][0], "quality": True}, {**TWO_MODELS["models"][1], "quality": False}]}
    said_metrics = yaml.safe_load(by_key(render(said))[("ConfigMap", "seismo-config")]["data"]["metrics.yaml"])["models"]
    assert "quality" in said_metrics["churn"] and "quality" not in said_metrics["fraud"]
    from seismo.performance.config import model_config

    for name, spec in metrics.items():  # the metrics server takes what the chart writes
        model_config(name, spec)
    drift_policy = objects[("EventPolicy", "seismo-drift-events")]["spec"]["from"]
    subjects = {f["sub"] for f in drift_policy}
    assert "system:serviceaccount:seismo:seismo-drift-churn" in subjects
    assert "system:serviceaccount:seismo:drift-fraud-seldon-request-oidc-eventing.knative.dev-trigger" in subjects
    assert ("PersistentVolumeClaim", "seismo-drift-fraud-state") in objects and ("PersistentVolumeClaim", "seismo-drift-state") not in objects


def test_a_bad_models_entry_fails_with_its_name():
    bad = {"models": [{"name": "churn", "artifact": "m.joblib", "task": "classification"}]}
    with pytest.raises(Exception, match="task"):
        render(bad)


def test_make_images_tags_what_the_chart_pulls():
    """`make images` tags <registry>/<service>:<version>; the chart's default tag is its appVersion: the
    same version, and the same registry as values.yaml's default."""
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == version
    dry = subprocess.run(["make", "-n", "images"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and f"$name:{version}$suffix" in dry.stdout, dry.stdout + dry.stderr
    registry = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["registry"]
    assert f"-t {registry}/$name:{version}$suffix" in dry.stdout and "docker/build.py --images" in dry.stdout
    images = load_script(REPO / "docker" / "build.py").images()
    assert set(yaml.safe_load((CHART / "values.yaml").read_text())["services"]) <= {name for name, *_ in images}  # every image it pulls is built


def test_detectors_inputs_true_adds_the_requests_to_the_embedding_detectors():
    """detectors.inputs: true adds the Triggers that send the watched model's requests to the outlier and drift services;
    the default leaves the detectors to the embedding on the responses."""
    def routed(objects: list[dict]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for o in objects:
            if o["kind"] == "Trigger":
                out.setdefault(o["spec"]["subscriber"]["ref"]["name"], set()).add(o["spec"]["filter"]["attributes"]["type"])
        return out

    with_inputs, default = routed(render({"detectors": {"inputs": True}})), routed(render())
    for service in ("seismo-outlier", "seismo-drift"):
        assert "org.kubeflow.serving.inference.request" in with_inputs[service]
        assert default[service] == {"org.kubeflow.serving.inference.response"}
    assert with_inputs["seismo-logger"] == default["seismo-logger"]

    def input_detector(objects: list[dict]) -> dict[str, str | None]:
        """Each drift/outlier Deployment's SEISMO_*_INPUT_DETECTOR (None: unset, the service's default, true)."""
        out = {}
        for o in objects:
            if o["kind"] == "Deployment" and o["metadata"]["name"].startswith(("seismo-drift", "seismo-outlier")):
                env = {e["name"]: e.get("value") for e in o["spec"]["template"]["spec"]["containers"][0]["env"]}
                out[o["metadata"]["name"]] = next((v for k, v in env.items() if k.endswith("_INPUT_DETECTOR")), None)
        return out

    # The example's detectors load their input detectors (TensorFlow networks) only when requests are routed to them;
    # a declared model's detectors always get its requests and keep theirs.
    assert input_detector(render({"detectors": {"inputs": True}})) == {"seismo-drift": "true", "seismo-outlier": "true"}
    assert input_detector(render()) == {"seismo-drift": "false", "seismo-outlier": "false"}
    assert input_detector(render(TWO_MODELS)) == {"seismo-drift-churn": None, "seismo-outlier-churn": None, "seismo-drift-fraud": None}

    def memory(objects: list[dict]) -> dict[str, str]:
        """Each drift/outlier Deployment's memory request."""
        return {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"]
                for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith(("seismo-drift", "seismo-outlier"))}

    # ... and are sized for what they load: TensorFlow networks only with detectors.inputs (or a declared model's own detectors)
    assert memory(render()) == {"seismo-drift": "256Mi", "seismo-outlier": "256Mi"}
    assert memory(render({"detectors": {"inputs": True}})) == {"seismo-drift": "1Gi", "seismo-outlier": "1Gi"}
    assert set(memory(render(TWO_MODELS)).values()) == {"1Gi"}
    assert memory(render({"services": {"drift": {"resourcesWithoutInputs": {"requests": {"memory": "300Mi"}}}}}))["seismo-drift"] == "300Mi"
