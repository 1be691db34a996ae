"""Writes manifests/ (kustomize base and overlays) from Seismo's own config files: `python manifests/build.py`.

One source: the Knative Triggers come from seismo/config/triggers.yaml (the list the local broker
runs), the PrometheusRule from dashboards/alerts.yaml, the dashboard ConfigMaps from
dashboards/grafana/, the services' ConfigMaps from seismo/config/. A test checks that the committed
files equal what this writes, renders every overlay with `kubectl kustomize` and validates every
object against the Kubernetes and CRD schemas.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seismo.topology import CONFIG_DIR, SERVICE_PORTS, expand_env  # noqa: E402
from seismo.topology import SERVICES as TABLE  # noqa: E402

OUT = REPO / "manifests"
NAMESPACE = "seismo"
IMAGE = "ghcr.io/seismo/{name}:0.1.0"
PART_OF = {"app.kubernetes.io/part-of": "seismo"}
BROKER_INGRESS = "http://broker-ingress.knative-eventing.svc.cluster.local/seismo/default"

# service -> (container port, replicas, cpu request, memory request, memory limit, extra env)
SERVICES = {
    "model": (SERVICE_PORTS["model"], 2, "500m", "1Gi", "2Gi", {"SEISMO_MODEL_PATH": "/models/image-classifier", "SEISMO_MODEL_SINK_URL": BROKER_INGRESS,
                                              "SEISMO_MODEL_NAMESPACE": NAMESPACE}),
    "logger": (SERVICE_PORTS["logger"], 2, "200m", "256Mi", "512Mi", {}),
    "outlier": (SERVICE_PORTS["outlier"], 1, "500m", "1Gi", "2Gi", {"SEISMO_OUTLIER_DETECTOR_PATH": "/models/detectors/outlier",
                                                                    "SEISMO_OUTLIER_ADVERSARIAL_DETECTOR_PATH": "/models/detectors/adversarial"}),
    "drift": (SERVICE_PORTS["drift"], 1, "500m", "1Gi", "2Gi", {"SEISMO_DRIFT_DETECTOR_PATH": "/models/detectors/drift", "SEISMO_DRIFT_SINK_URL": BROKER_INGRESS,
                                              "SEISMO_DRIFT_STATE_PATH": "/state/drift-windows.db",
                                              "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH": "/models/detectors/embedding",
                                              "SEISMO_DRIFT_EMBEDDING_STATE_PATH": "/state/drift-embedding-windows.db"}),
    "metrics": (SERVICE_PORTS["metrics"], 1, "200m", "256Mi", "512Mi", {"SEISMO_METRICS_CONFIG_FILE": "/config/metrics.yaml", "SEISMO_METRICS_STATE_PATH": "/state/metrics.db"}),
    "explainer": (SERVICE_PORTS["explainer"], 1, "500m", "512Mi", "2Gi", {"SEISMO_EXPLAINER_CONFIG_FILE": "/config/explainer.yaml"}),
}
AUTH_SECRET = "seismo-auth"
# Every Trigger's last stop: the logger counts what no subscriber took (seismo_logger_dead_letters_total).
DEAD_LETTER_SINK = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "seismo-logger"}, "uri": "/v1/dead-letters"}
KAFKA_BROKER_INGRESS = "http://kafka-broker-ingress.knative-eventing.svc.cluster.local/seismo/default"
EVENT_RECEIVERS = tuple(s.name for s in TABLE.values() if s.receives_events)  # only the broker delivers to these
USES_STORE = ("logger", "metrics")  # Elasticsearch endpoint and credentials from the Secret
STATEFUL = ("logger", "drift", "metrics")  # PodDisruptionBudgets
STATE_VOLUMES = {"drift": "seismo-drift-state", "metrics": "seismo-metrics-state"}
GRPC_PORTS = {s.name: s.grpc_port for s in TABLE.values() if s.grpc_port}  # the Open Inference Protocol's gRPC service, beside REST
# Knative's sender identity (OIDC; needs Knative's `authentication-oidc` feature): the event receivers
# check the broker's tokens against the cluster's keys, the services that post to the broker send a
# projected token for its audience, and EventPolicies say which service account sends which event types.
OIDC_ISSUER = "https://kubernetes.default.svc.cluster.local"
EVENT_SENDERS = ("model", "drift")  # post to the broker's ingress themselves
BROKER_TOKEN_DIR = "/var/run/secrets/seismo/broker-token"
API_TOKEN_DIR = "/var/run/secrets/seismo/api-token"
TRIGGER_SUFFIX = "-oidc-eventing.knative.dev-trigger"  # Knative names a Trigger's own service account <trigger><suffix>
EVENT_TYPES = {
    "model": ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response",
              "io.seldon.serving.inference.request", "io.seldon.serving.inference.response"],
    "drift": ["org.kubeflow.serving.inference.drift"],
    "outlier": ["org.kubeflow.serving.inference.outlier", "io.seismo.inference.adversarial"],
    "feedback": ["io.seldon.serving.feedback"],
}


def labels(name: str) -> dict:
    return {"app.kubernetes.io/name": f"seismo-{name}", **PART_OF}


def kubernetes_metrics_config() -> str:
    """The shipped metrics config with its artifact paths on the seismo-models volume (mounted at /models)."""
    text = (REPO / "seismo" / "config" / "metrics.yaml").read_text()
    return text.replace("${SEISMO_EXAMPLE_ARTIFACTS}/", "/models/")


def deployment(name: str) -> dict:
    port, replicas, cpu, memory, memory_limit, env = SERVICES[name]
    volumes = [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}},
               {"name": "models", "persistentVolumeClaim": {"claimName": "seismo-models", "readOnly": True}},
               {"name": "config", "configMap": {"name": "seismo-config"}}]
    mounts = [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"},
              {"name": "models", "mountPath": "/models", "readOnly": True}, {"name": "config", "mountPath": "/config", "readOnly": True}]
    container_env = [{"name": k, "value": v} for k, v in env.items()]
    container_env.append({"name": f"SEISMO_{name.upper()}_PORT", "value": str(port)})
    if name in GRPC_PORTS:
        container_env.append({"name": f"SEISMO_{name.upper()}_GRPC_PORT", "value": str(GRPC_PORTS[name])})
    env_from = []
    if name in USES_STORE:
        env_from.append({"secretRef": {"name": "seismo-elasticsearch-endpoint", "optional": False}})
        volumes.append({"name": "elasticsearch", "secret": {"secretName": "seismo-elasticsearch-credentials"}})
        mounts.append({"name": "elasticsearch", "mountPath": "/var/run/secrets/seismo/elasticsearch", "readOnly": True})
        container_env.append({"name": f"SEISMO_{name.upper()}_ELASTICSEARCH_SECRET_DIR", "value": "/var/run/secrets/seismo/elasticsearch"})
    if name in STATE_VOLUMES:
        volumes.append({"name": "state", "persistentVolumeClaim": {"claimName": STATE_VOLUMES[name]}})
        mounts.append({"name": "state", "mountPath": "/state"})
    if name == "explainer":
        container_env.append({"name": "SEISMO_MODEL_URL", "value": "http://seismo-model"})
    # Bearer-token auth on, the tokens from a Secret the user creates (see docs/kubernetes.md); the explainer
    # sends one to mark its calls to the model server as not to be logged.
    volumes.append({"name": "auth", "secret": {"secretName": AUTH_SECRET}})
    mounts.append({"name": "auth", "mountPath": "/var/run/secrets/seismo/auth", "readOnly": True})
    container_env.append({"name": "SEISMO_AUTH_TOKENS_FILE", "value": "/var/run/secrets/seismo/auth/tokens"})
    if name == "logger":
        container_env.append({"name": "SEISMO_LOGGER_MODELS", "value": "image-classifier"})
    if name in EVENT_RECEIVERS:
        # They read the issuer's keys from the API server, with a token of their own (no other API access).
        volumes.append({"name": "api-token", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3600, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}})
        mounts.append({"name": "api-token", "mountPath": API_TOKEN_DIR, "readOnly": True})
        container_env += [{"name": "SEISMO_AUTH_OIDC_CREDENTIALS_DIR", "value": API_TOKEN_DIR},{"name": "SEISMO_AUTH_OIDC_ISSUER", "value": OIDC_ISSUER},
                          {"name": "SEISMO_AUTH_OIDC_AUDIENCE", "value": f"seismo-{name}"},
                          {"name": "SEISMO_AUTH_OIDC_SUBJECTS", "value": f"broker=system:serviceaccount:{NAMESPACE}:*{TRIGGER_SUFFIX}"}]
    if name in EVENT_SENDERS:
        volumes.append({"name": "broker-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": broker_audience(NAMESPACE), "expirationSeconds": 3600, "path": "token"}}]}})
        mounts.append({"name": "broker-token", "mountPath": BROKER_TOKEN_DIR, "readOnly": True})
        container_env.append({"name": "SEISMO_AUTH_SEND_TOKEN_FILE", "value": f"{BROKER_TOKEN_DIR}/token"})
    container = {
        "name": name, "image": IMAGE.format(name=name), "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port},
                  *([{"name": "grpc", "containerPort": GRPC_PORTS[name]}] if name in GRPC_PORTS else [])],
        "env": container_env,
        **({"envFrom": env_from} if env_from else {}),
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "startupProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 60},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
        # Endpoints drop the pod before SIGTERM arrives, so nothing new is routed to a pod that drains
        # its queue (the model server's event logger drains on SIGTERM, within the grace period).
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
    }
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": labels(name)},
        "template": {"metadata": {"labels": labels(name)}, "spec": {
            "serviceAccountName": f"seismo-{name}",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
            "volumes": volumes,
        }},
    }
    if name in STATE_VOLUMES:
        spec["strategy"] = {"type": "Recreate"}  # one writer per SQLite file
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"seismo-{name}", "labels": labels(name)}, "spec": spec}


EGRESS_PORTS = (443, 6443, 9200)  # TLS (API server, Elasticsearch Cloud, collectors), the API server's other port, Elasticsearch


def egress_rules(broker_namespace: str) -> list[dict]:
    return [
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"to": [{"podSelector": {}}]},
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": broker_namespace}}}]},
        {"ports": [{"port": port, "protocol": "TCP"} for port in EGRESS_PORTS]},
    ]


def broker_audience(namespace: str) -> str:
    return f"eventing.knative.dev/broker/{namespace}/default"  # Knative's audience for a Broker: group/kind/namespace/name


def service_account(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"seismo-{name}", "labels": labels(name)},
            "automountServiceAccountToken": False}


def event_policy_table() -> list[dict]:
    """Who may post which event types to the broker: the model server its records, the drift and outlier
    services (and their Triggers, which carry their replies) their results, feedback senders feedback.
    Service-account names in the release's namespace; the chart reads this table (files/event-policies.yaml)."""
    replies: dict[str, list[str]] = {}
    for trigger in yaml.safe_load(expand_env((CONFIG_DIR / "triggers.yaml").read_text(), env={}))["triggers"]:
        if trigger.get("replies"):
            replies.setdefault(trigger["replies"], []).append(trigger["name"])
    # The model server relays Seldon's feedback (POST /api/v1.0/feedback) as a feedback event.
    own = {"model": ["seismo-model"], "drift": ["seismo-drift"], "outlier": [], "feedback": ["seismo-feedback", "seismo-model"]}
    return [{"name": f"seismo-{who}-events", "who": who,
             "serviceAccounts": own[who] + [name + TRIGGER_SUFFIX for name in replies.get(who, [])],
             "cesql": "type IN (" + ", ".join(f"'{t}'" for t in types) + ")"} for who, types in EVENT_TYPES.items()]


def event_policies(namespace: str) -> list[dict]:
    return [{"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "EventPolicy", "metadata": {"name": p["name"], "labels": dict(PART_OF)},
             "spec": {"to": [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}],
                      "from": [{"sub": f"system:serviceaccount:{namespace}:{account}"} for account in p["serviceAccounts"]],
                      "filters": [{"cesql": p["cesql"]}]}} for p in event_policy_table()]


def service(name: str) -> dict:
    # Port 80 so a Knative subscriber `ref` to the Service resolves without a port.
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"seismo-{name}", "labels": labels(name)},
            "spec": {"selector": labels(name), "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                                         *([{"name": "grpc", "port": GRPC_PORTS[name], "targetPort": "grpc"}] if name in GRPC_PORTS else [])]}}


def knative_triggers() -> list[dict]:
    doc = yaml.safe_load(expand_env((CONFIG_DIR / "triggers.yaml").read_text(), env={}))
    out = []
    for trigger in doc["triggers"]:
        port = int(trigger["subscriber"]["uri"].rsplit(":", 1)[1].strip("/"))
        target = next(n for n, spec in SERVICES.items() if spec[0] == port)
        spec = {"broker": "default", "filter": {"attributes": dict(trigger["filter"]["attributes"])},
                "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": f"seismo-{target}"},
                               "audience": f"seismo-{target}"}}  # the OIDC audience the subscriber checks
        spec["delivery"] = {**dict(trigger.get("delivery") or {}), "deadLetterSink": DEAD_LETTER_SINK}
        out.append({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": trigger["name"], "labels": dict(PART_OF)}, "spec": spec})
    return out


def base() -> dict[str, object]:
    files: dict[str, object] = {}
    files["namespace.yaml"] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": dict(PART_OF)}}
    for name in SERVICES:
        files[f"{name}.yaml"] = [service_account(name), deployment(name), service(name)]
    files["broker.yaml"] = [{"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                             "metadata": {"name": "default", "labels": dict(PART_OF),
                                          "annotations": {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"}},
                             "spec": {"delivery": {"retry": 6, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S"}}},
                            *knative_triggers(), *event_policies(NAMESPACE),
                            service_account("feedback")]  # run your ground-truth jobs as seismo-feedback (EventPolicy seismo-feedback-events)
    files["storage.yaml"] = [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "labels": dict(PART_OF)},
         "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}}}
        for claim, mode, size in (("seismo-models", "ReadOnlyMany", "2Gi"), ("seismo-drift-state", "ReadWriteOnce", "1Gi"),
                                  ("seismo-metrics-state", "ReadWriteOnce", "1Gi"))]
    files["monitoring.yaml"] = [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "seismo", "labels": dict(PART_OF)},
         "spec": {"selector": {"matchLabels": dict(PART_OF)}, "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}]}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "seismo", "labels": dict(PART_OF)},
         "spec": yaml.safe_load((REPO / "dashboards" / "alerts.yaml").read_text())},
        *[{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": f"seismo-{name}", "labels": labels(name)},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": labels(name)}}} for name in STATEFUL],
    ]
    receivers = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": f"seismo-{name}-ingress", "labels": labels(name)},
                  "spec": {"podSelector": {"matchLabels": labels(name)}, "policyTypes": ["Ingress"],
                           "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-eventing"}}},
                                                 {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                                        "ports": [{"port": "http"}]}]}} for name in EVENT_RECEIVERS]
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "seismo-default-deny", "labels": dict(PART_OF)},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    # The model server and the explainer serve clients: any namespace may reach their port (auth guards
    # the explainer), nothing else of theirs.
    clients = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": f"seismo-{name}-ingress", "labels": labels(name)},
                "spec": {"podSelector": {"matchLabels": labels(name)}, "policyTypes": ["Ingress"],
                         "ingress": [{"from": [{"namespaceSelector": {}}],
                                      "ports": [{"port": "http"}, *([{"port": "grpc"}] if name in GRPC_PORTS else [])]}]}} for name in ("model", "explainer")]
    # Egress: DNS, the namespace's own pods, the broker's namespace, and TLS / Elasticsearch ports anywhere
    # (the API server's keys for OIDC, an Elasticsearch cluster, a collector); nothing else leaves a pod.
    egress = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "seismo-egress", "labels": dict(PART_OF)},
              "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress_rules("knative-eventing")}}
    files["network-policies.yaml"] = [deny, *receivers, *clients, egress]
    files["kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": NAMESPACE,
        "resources": [f for f in files if f != "kustomization.yaml"],
        # The services' config files get a name suffix that changes with their content: pods roll on a change.
        "configMapGenerator": [{"name": "seismo-config", "files": ["config/metrics.yaml", "config/explainer.yaml"]}],
    }
    files["kustomization.yaml"]["resources"].append("dashboards.yaml")
    files["dashboards.yaml"] = dashboards_config_map()
    # The Kubernetes variants of the config files live here only; the chart's files/config/ link to them.
    files["config/metrics.yaml"] = kubernetes_metrics_config()
    files["config/explainer.yaml"] = EXPLAINER_CONFIG
    return files


def dashboards_config_map() -> str:
    """The dashboards for Grafana's sidecar, rendered from dashboards/grafana/ (their one source)."""

    class Block(yaml.SafeDumper):
        pass

    Block.add_representer(str, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))
    data = {p.name: p.read_text() for p in sorted((REPO / "dashboards" / "grafana").glob("*.json"))}
    doc = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "seismo-dashboards", "labels": {"grafana_dashboard": "1", **PART_OF}}, "data": data}
    return ("# Generated by manifests/build.py from dashboards/grafana/: edit dashboards/build.py, then run both.\n"
            + yaml.dump(doc, Dumper=Block, sort_keys=False, width=10_000))


CHART_LINKS = {
    # charts/seismo/<path> -> what it links to: Helm reads files inside the chart only, and follows links.
    "files/dashboards": "../../../dashboards/grafana",
    "files/alerts.yaml": "../../../dashboards/alerts.yaml",
    "files/config/metrics.yaml": "../../../../manifests/base/config/metrics.yaml",
    "files/config/explainer.yaml": "../../../../manifests/base/config/explainer.yaml",
}


def link_chart_files() -> None:
    for path, target in CHART_LINKS.items():
        link = CHART / path
        if link.is_symlink() and str(link.readlink()) == target:
            continue
        if link.is_dir() and not link.is_symlink():
            for child in link.iterdir():
                child.unlink()
            link.rmdir()
        elif link.exists() or link.is_symlink():
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)


EXPLAINER_CONFIG = """\
# Generated by manifests/build.py: the explainer's models on Kubernetes (artifacts on the seismo-models volume).
models:
  image-classifier:
    kind: image
    url: "${SEISMO_MODEL_URL:-http://seismo-model}"
    reference: /models/image-classifier/reference.npy
    segmentation: {method: slic, n_segments: 16, compactness: 10}
    background: reference
"""

GPU_PATCH = """\
- op: add
  path: /spec/template/spec/nodeSelector
  value: {nvidia.com/gpu.present: "true"}
- op: add
  path: /spec/template/spec/tolerations
  value: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
- op: add
  path: /spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu
  value: 1
"""


def sink_env_indices() -> dict[str, int]:
    """Where each sink-posting service's SINK_URL sits in its container env (for JSON patches)."""
    out = {}
    for name in ("model", "drift"):
        env = deployment(name)["spec"]["template"]["spec"]["containers"][0]["env"]
        out[name] = next(i for i, e in enumerate(env) if e["name"] == f"SEISMO_{name.upper()}_SINK_URL")
    return out


def overlays() -> dict[str, object]:
    files: dict[str, object] = {}
    files["gpu/kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["../../base"],
        "images": [{"name": IMAGE.format(name=n).rsplit(":", 1)[0], "newTag": "0.1.0-gpu"} for n in GPU_SERVICES],
        "patches": [{"path": "gpu-node-pool.yaml", "target": {"kind": "Deployment", "name": f"seismo-{n}"}} for n in GPU_SERVICES],
    }
    files["gpu/gpu-node-pool.yaml"] = GPU_PATCH
    files["kafka-broker/kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["../../base", "kafka-broker-config.yaml"],
        "patches": [{"path": "broker-class.yaml"},
                    *[{"target": {"kind": "Deployment", "name": f"seismo-{name}"}, "patch": (
                        f"- op: replace\n  path: /spec/template/spec/containers/0/env/{index}\n"
                        f"  value: {{name: SEISMO_{name.upper()}_SINK_URL, value: '{KAFKA_BROKER_INGRESS}'}}\n")}
                      for name, index in sink_env_indices().items()]],
    }
    files["kafka-broker/kafka-broker-config.yaml"] = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seismo-kafka-broker-config", "namespace": NAMESPACE},
        "data": {"bootstrap.servers": "my-cluster-kafka-bootstrap.kafka:9092", "default.topic.partitions": "10",
                 "default.topic.replication.factor": "3"}}
    files["kafka-broker/broker-class.yaml"] = {
        "apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
        "metadata": {"name": "default", "namespace": NAMESPACE, "annotations": {"eventing.knative.dev/broker.class": "Kafka"}},
        "spec": {"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "seismo-kafka-broker-config", "namespace": NAMESPACE}}}
    dev_patches = [{"patch": "- op: replace\n  path: /spec/replicas\n  value: 1\n", "target": {"kind": "Deployment"}}]
    for name in USES_STORE:  # SQLite on one volume shared by the logger and the metrics server instead of Elasticsearch
        dev_patches.append({"target": {"kind": "Deployment", "name": f"seismo-{name}"}, "patch": (
            "- op: remove\n  path: /spec/template/spec/containers/0/envFrom\n"
            "- op: add\n  path: /spec/template/spec/volumes/-\n  value: {name: records, persistentVolumeClaim: {claimName: seismo-records}}\n"
            "- op: add\n  path: /spec/template/spec/containers/0/volumeMounts/-\n  value: {name: records, mountPath: /records}\n"
            f"- op: add\n  path: /spec/template/spec/containers/0/env/-\n  value: {{name: SEISMO_{name.upper()}_SQLITE_PATH, value: /records/records.db}}\n")})
    files["dev/kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["../../base", "records-volume.yaml"],
        "patches": dev_patches,
    }
    files["dev/records-volume.yaml"] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "seismo-records", "namespace": NAMESPACE},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}
    return files


# The Helm chart (charts/seismo): its templates are written by hand in Go's template language; what they
# are filled with comes from here, so the chart and the kustomize base cannot disagree on a port, an image,
# a resource, a Trigger, an alert or a dashboard (a test renders both and compares).
CHART = REPO / "charts" / "seismo"
TEMPLATE_COMPUTED_ENV = {"SEISMO_MODEL_SINK_URL", "SEISMO_MODEL_NAMESPACE", "SEISMO_DRIFT_SINK_URL"}  # depend on namespace and broker class
GPU_SERVICES = tuple(name for name in SERVICES if TABLE[name].gpu)

VALUES_HEADER = """\
# Generated by manifests/build.py (the same table as the kustomize base): edit that, then run
# `python manifests/build.py`. Override any of these with -f my-values.yaml or --set; values.schema.json
# refuses unknown keys and wrong types at install time.

image:
  # Images are <registry>/<service>:<tag> (`make images` builds them from docker/Dockerfile).
  registry: ghcr.io/seismo
  # Empty: the chart's appVersion.
  tag: ""
  pullPolicy: IfNotPresent
imagePullSecrets: []

# Where records (payloads, annotations, feedback joins) are kept.
store:
  # elasticsearch (production; replicas may scale) or sqlite (one file on a ReadWriteOnce volume shared
  # by the logger and the metrics server: both must then run one replica).
  type: elasticsearch
  elasticsearch:
    # The cluster's URL. Empty: read SEISMO_LOGGER_ELASTICSEARCH_URL and SEISMO_METRICS_ELASTICSEARCH_URL
    # from the Secret named by endpointSecret.
    url: ""
    endpointSecret: seismo-elasticsearch-endpoint
    # An existing Secret with `username` and `password` or `api_key` (and optionally `ca.crt`),
    # mounted into the logger and the metrics server. Empty: no credentials.
    credentialsSecret: seismo-elasticsearch-credentials
  sqlite:
    size: 5Gi
    accessMode: ReadWriteOnce
    storageClass: ""

# The Knative Broker every event goes through.
broker:
  # MTChannelBasedBroker (Knative's default) or Kafka (Knative's Kafka broker; set kafka below).
  class: MTChannelBasedBroker
  delivery:
    retry: 6
    backoffPolicy: exponential
    backoffDelay: PT0.2S
  kafka:
    bootstrapServers: my-cluster-kafka-bootstrap.kafka:9092
    partitions: 10
    replicationFactor: 3

# Bearer tokens on writes and payload reads, from an existing Secret with a key `tokens` (one per line).
auth:
  enabled: true
  existingSecret: seismo-auth
  # Who sent an event. oidc: Knative's sender identity (turn on Knative's authentication-oidc feature):
  # the receivers check the broker's tokens, the model server and the drift service send their own, and
  # EventPolicies say which service account may post which event types. open: no check (the
  # NetworkPolicy is the only guard; anyone in the broker's namespace can forge events).
  events: oidc
  oidcIssuer: https://kubernetes.default.svc.cluster.local
  # More subjects (system:serviceaccount:<namespace>:<name>, a trailing * allowed) allowed to post each
  # kind of event: e.g. your ground-truth pipeline under feedback (or run it as seismo-feedback).
  senders:
    model: []
    drift: []
    outlier: []
    feedback: []

persistence:
  # The models and detectors every service loads (fill it with models/artifacts/ after `make model`).
  models:
    # Use an existing claim instead of creating seismo-models.
    existingClaim: ""
    size: 2Gi
    accessMode: ReadOnlyMany
    storageClass: ""
  # The drift service's windows and the metrics server's ledger survive restarts here.
  driftState:
    size: 1Gi
    accessMode: ReadWriteOnce
    storageClass: ""
  metricsState:
    size: 1Gi
    accessMode: ReadWriteOnce
    storageClass: ""

monitoring:
  # Prometheus Operator objects; give them the labels your Prometheus selects on (often release: <name>).
  serviceMonitor:
    enabled: true
    interval: 30s
    labels: {}
  prometheusRule:
    enabled: true
    labels: {}
  # The Grafana dashboards as ConfigMaps for Grafana's dashboard sidecar.
  dashboards:
    enabled: true
    labels:
      grafana_dashboard: "1"

# A default-deny policy; the event receivers admit only the broker's and Prometheus's namespaces.
# Egress: DNS, the release's pods, the broker's namespace, and TCP 443, 6443 and 9200 anywhere (the API
# server for OIDC keys, Elasticsearch); extraEgress adds rules (NetworkPolicy egress entries).
networkPolicies:
  enabled: true
  brokerNamespace: knative-eventing
  prometheusNamespace: monitoring
  extraEgress: []

# For the logger, the drift detector and the metrics server (their state is on ReadWriteOnce volumes).
podDisruptionBudgets:
  enabled: true

# Your own models: the list `seismo.yaml` holds (`seismo init` writes it; docs/how-to/own-model.md; here
# `embedding: true` must be said: the chart cannot read the artifact's metadata). Empty:
# the example layout. Each entry gets its own model server (when it has an `artifact`, a path in the
# models volume), drift and outlier services (model-<name>, drift-<name>, outlier-<name>), Triggers that
# send them only its events, and its entry in the metrics configuration; no explainer. Their detectors
# are read from /models/declared/<name>/{drift,outlier} and the diagnosis reference from
# /models/declared/<name>/reference.npy: what `seismo up -f seismo.yaml` writes under .seismo/declared/
# (copy both into the models volume: docs/kubernetes.md).
models: []

# Seldon Core v1 graphs: the SeldonDeployment manifests (YAML text, several documents allowed) whose
# graphs the logger and the metrics server follow, so each graph node gets its own record with its
# graph parent as lineage (SEISMO_LOGGER_SELDON_GRAPHS / SEISMO_METRICS_SELDON_GRAPHS). Empty: every
# node of a Seldon graph folds into its puid's record.
seldonGraphs: ""

# Per service: replicas, resources, image (repository/tag override the defaults above), env (the
# service's settings, see docs/reference/configuration.md), extraEnv (appended: OTEL_*, your own),
# nodeSelector, tolerations; the model server and the outlier detector also take a GPU node pool
# (gpu.enabled adds the nvidia.com/gpu limit, gpu.nodeSelector, gpu.tolerations and the -gpu image tag).
"""


def chart_values() -> tuple[str, dict]:
    """values.yaml's text and the same values as a dict (for the schema's enumeration of services)."""
    services: dict[str, dict] = {}
    for name, (port, replicas, cpu, memory, memory_limit, env) in SERVICES.items():
        explicit = dict(env)
        if name == "logger":
            explicit["SEISMO_LOGGER_MODELS"] = "image-classifier"
        if name == "explainer":
            explicit["SEISMO_MODEL_URL"] = "http://seismo-model"
        svc: dict = {"replicas": replicas, "port": port}
        if name in GRPC_PORTS:
            svc["grpcPort"] = GRPC_PORTS[name]
        svc.update({
            "image": {"repository": "", "tag": ""},
            "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}},
            "env": [{"name": k, "value": v} for k, v in explicit.items() if k not in TEMPLATE_COMPUTED_ENV],
            "extraEnv": [], "nodeSelector": {}, "tolerations": [],
        })
        if name in GPU_SERVICES:
            svc["gpu"] = {"enabled": False, "count": 1, "tagSuffix": "-gpu", "nodeSelector": {"nvidia.com/gpu.present": "true"},
                          "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
        services[name] = svc
    text = VALUES_HEADER + yaml.safe_dump({"services": services}, sort_keys=False)
    return text, yaml.safe_load(text)


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, **({"required": required} if required else {})}


def chart_schema(values: dict) -> dict:
    """values.schema.json: Helm checks the merged values against it at install, lint and template time."""
    string, boolean, quantity = {"type": "string"}, {"type": "boolean"}, {"type": ["string", "integer"], "pattern": "^[0-9.]+[a-zA-Z]*$"}
    env_list = {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}, "value": {"type": "string"}}}}
    volume = _object({"size": quantity, "accessMode": {"enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]},
                      "storageClass": string}, ["size", "accessMode"])
    port = {"type": "integer", "minimum": 1, "maximum": 65535}

    def service_schema(name: str) -> dict:
        props = {
            "replicas": {"type": "integer", "minimum": 0},
            "port": port,
            "image": _object({"repository": string, "tag": string}),
            "resources": {"type": "object", "properties": {
                "requests": {"type": "object", "additionalProperties": quantity},
                "limits": {"type": "object", "additionalProperties": quantity}}, "additionalProperties": False},
            "env": env_list, "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"]}},
            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
            "tolerations": {"type": "array", "items": {"type": "object"}},
        }
        if name in GRPC_PORTS:
            props["grpcPort"] = port
        if name in GPU_SERVICES:
            props["gpu"] = _object({"enabled": boolean, "count": {"type": "integer", "minimum": 1}, "tagSuffix": string,
                                    "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "tolerations": {"type": "array", "items": {"type": "object"}}})
        return _object(props, ["replicas", "port", "resources"])

    return _object({
        "image": _object({"registry": {"type": "string", "minLength": 1}, "tag": string,
                          "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}, ["registry"]),
        "imagePullSecrets": {"type": "array", "items": _object({"name": string}, ["name"])},
        "store": _object({
            "type": {"enum": ["elasticsearch", "sqlite"]},
            "elasticsearch": _object({"url": {"type": "string", "pattern": "^(https?://.+)?$"}, "endpointSecret": string, "credentialsSecret": string}),
            "sqlite": volume}, ["type"]),
        "broker": _object({
            "class": {"enum": ["MTChannelBasedBroker", "Kafka"]},
            "delivery": _object({"retry": {"type": "integer", "minimum": 0}, "backoffPolicy": {"enum": ["exponential", "linear"]},
                                 "backoffDelay": {"type": "string", "pattern": "^P"}, "timeout": {"type": "string", "pattern": "^P"}}),
            "kafka": _object({"bootstrapServers": {"type": "string", "minLength": 1}, "partitions": {"type": "integer", "minimum": 1},
                              "replicationFactor": {"type": "integer", "minimum": 1}})}, ["class"]),
        "auth": _object({"enabled": boolean, "existingSecret": {"type": "string", "minLength": 1}, "events": {"enum": ["oidc", "open"]},
                         "oidcIssuer": {"type": "string", "pattern": "^https?://.+"},
                         "senders": _object({who: {"type": "array", "items": {"type": "string", "pattern": "^system:serviceaccount:[^*]+\\*?$"}}
                                             for who in EVENT_TYPES})}, ["enabled"]),
        "persistence": _object({"models": _object({**volume["properties"], "existingClaim": string}), "driftState": volume, "metricsState": volume}),
        "monitoring": _object({
            "serviceMonitor": _object({"enabled": boolean, "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                       "labels": {"type": "object", "additionalProperties": {"type": "string"}}}),
            "prometheusRule": _object({"enabled": boolean, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}),
            "dashboards": _object({"enabled": boolean, "labels": {"type": "object", "additionalProperties": {"type": "string"}}})}),
        "networkPolicies": _object({"enabled": boolean, "brokerNamespace": string, "prometheusNamespace": string,
                                    "extraEgress": {"type": "array", "items": {"type": "object"}}}),
        "podDisruptionBudgets": _object({"enabled": boolean}),
        "seldonGraphs": string,
        "models": {"type": "array", "items": _object({
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
            "artifact": {"type": "string", "minLength": 1}, "endpoint": {"type": "string", "minLength": 1},
            "task": {"enum": ["binary", "multiclass", "regression"]}, "reference": string,
            "feature_names": {"type": "array", "items": string},
            "watch": {"type": "array", "items": {"enum": ["drift", "outliers", "performance", "diagnosis"]}},
            "window": {"type": "integer", "minimum": 2}, "embedding": {"type": "boolean"},
            "cohorts": {"type": "array", "items": _object({"name": string, "when": string}, ["name", "when"])},
            "business": {"type": "object"}}, ["name", "task"])},
        "services": _object({name: service_schema(name) for name in values["services"]}, list(values["services"])),
        "global": {"type": "object"},
    }, ["image", "store", "broker", "auth", "services"])


def chart() -> dict[str, str]:
    """Path relative to charts/seismo -> text, for the generated files of the chart."""
    import json

    header = "# Generated by manifests/build.py: edit the source it names, then run `python manifests/build.py`.\n"
    values_text, values = chart_values()
    triggers = [{"name": t["metadata"]["name"], "spec": t["spec"]} for t in knative_triggers()]
    files = {
        "values.yaml": values_text,
        "values.schema.json": json.dumps(chart_schema(values), indent=2) + "\n",
        "files/knative-triggers.yaml": header + yaml.safe_dump({"triggers": triggers}, sort_keys=False),
        "files/event-policies.yaml": header + yaml.safe_dump({"policies": event_policy_table()}, sort_keys=False),
    }
    return files


def render() -> dict[str, str]:
    """Path relative to manifests/ -> text."""
    header = "# Generated by manifests/build.py from Seismo's config files: edit those, then run `python manifests/build.py`.\n"
    out = {}
    for prefix, files in (("base", base()), ("overlays", overlays())):
        for path, content in files.items():
            if isinstance(content, str):
                text = content
            elif isinstance(content, list):
                text = header + "".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in content)
            else:
                text = header + yaml.safe_dump(content, sort_keys=False)
            out[f"{prefix}/{path}"] = text
    return out


if __name__ == "__main__":
    for root, files in ((OUT, render()), (CHART, chart())):
        for path, text in files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        print(f"wrote {len(files)} files under {root}")
    link_chart_files()
