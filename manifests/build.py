"""Writes what Kubernetes gets: the Helm chart's values, schema and files, then the kustomize base
rendered from the chart and the overlays: `python manifests/build.py`.

The Helm chart (charts/seismo: templates by hand) is the one source for Kubernetes; the base is the
chart rendered with its default values (Helm v4's Go SDK), so `kubectl apply -k manifests/overlays/...`
and `helm install` deploy the same objects. What fills the chart comes from Seismo's own files: the
Knative Triggers from seismo/config/triggers.yaml (the list the local broker runs), the PrometheusRule
from dashboards/alerts.yaml and the dashboards from dashboards/grafana/ (the chart links to both), the
services' Kubernetes config from seismo/config/. A test checks that the committed files equal what this
writes, renders every overlay with `kubectl kustomize` and validates every object against the
Kubernetes and CRD schemas.
"""

from __future__ import annotations

import functools
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
                                                                    "SEISMO_OUTLIER_INPUT_DETECTOR": "false",
                                                                    "SEISMO_OUTLIER_ADVERSARIAL_DETECTOR_PATH": "/models/detectors/adversarial"}),
    "drift": (SERVICE_PORTS["drift"], 1, "500m", "1Gi", "2Gi", {"SEISMO_DRIFT_DETECTOR_PATH": "/models/detectors/drift", "SEISMO_DRIFT_SINK_URL": BROKER_INGRESS,
                                              "SEISMO_DRIFT_INPUT_DETECTOR": "false",
                                              "SEISMO_DRIFT_STATE_PATH": "/state/drift-windows.db",
                                              "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH": "/models/detectors/embedding",
                                              "SEISMO_DRIFT_EMBEDDING_STATE_PATH": "/state/drift-embedding-windows.db"}),
    "metrics": (SERVICE_PORTS["metrics"], 1, "200m", "256Mi", "512Mi", {"SEISMO_METRICS_CONFIG_FILE": "/config/metrics.yaml", "SEISMO_METRICS_STATE_PATH": "/state/metrics.db",
                                                                  "SEISMO_METRICS_SINK_URL": BROKER_INGRESS}),
    "explainer": (SERVICE_PORTS["explainer"], 1, "500m", "512Mi", "2Gi", {"SEISMO_EXPLAINER_CONFIG_FILE": "/config/explainer.yaml"}),
}
# Every Trigger's last stop: the logger keeps what no subscriber took, whole, for `seismo dead-letters replay`.
DEAD_LETTER_SINK = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "seismo-logger"}, "uri": "/v1/dead-letters"}
KAFKA_BROKER_INGRESS = "http://kafka-broker-ingress.knative-eventing.svc.cluster.local/seismo/default"
USES_STORE = ("logger", "metrics")  # Elasticsearch endpoint and credentials from the Secret
GRPC_PORTS = {s.name: s.grpc_port for s in TABLE.values() if s.grpc_port}  # the Open Inference Protocol's gRPC service, beside REST
EVENT_SENDERS = ("model", "drift", "metrics")  # post to the broker's ingress themselves
TRIGGER_SUFFIX = "-oidc-eventing.knative.dev-trigger"  # Knative names a Trigger's own service account <trigger><suffix>
EVENT_TYPES = {
    "model": ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response",
              "io.seldon.serving.inference.request", "io.seldon.serving.inference.response"],
    "drift": ["org.kubeflow.serving.inference.drift"],
    "outlier": ["org.kubeflow.serving.inference.outlier", "io.seismo.inference.adversarial"],
    "feedback": ["io.seldon.serving.feedback"],
    "metrics": ["io.seismo.inference.quality"],
}


def labels(name: str) -> dict:
    return {"app.kubernetes.io/name": f"seismo-{name}", **PART_OF}


def kubernetes_metrics_config() -> str:
    """The shipped metrics config with its artifact paths on the seismo-models volume (mounted at /models)."""
    text = (REPO / "seismo" / "config" / "metrics.yaml").read_text()
    return text.replace("${SEISMO_EXAMPLE_ARTIFACTS}/", "/models/")


def event_policy_table() -> list[dict]:
    """Who may post which event types to the broker: the model server its records, the drift and outlier
    services (and their Triggers, which carry their replies) their results, feedback senders feedback.
    Service-account names in the release's namespace; the chart reads this table (files/event-policies.yaml)."""
    replies: dict[str, list[str]] = {}
    shipped = [t for name in ("triggers.yaml", "triggers-inputs.yaml")
               for t in yaml.safe_load(expand_env((CONFIG_DIR / name).read_text(), env={}))["triggers"]]
    for trigger in shipped:
        if trigger.get("replies"):
            replies.setdefault(trigger["replies"], []).append(trigger["name"])
    # The model server relays Seldon's feedback (POST /api/v1.0/feedback) as a feedback event.
    own = {"model": ["seismo-model"], "drift": ["seismo-drift"], "outlier": [], "feedback": ["seismo-feedback", "seismo-model"],
           "metrics": ["seismo-metrics"]}
    return [{"name": f"seismo-{who}-events", "who": who,
             "serviceAccounts": own[who] + [name + TRIGGER_SUFFIX for name in replies.get(who, [])],
             "cesql": "type IN (" + ", ".join(f"'{t}'" for t in types) + ")"} for who, types in EVENT_TYPES.items()]


def service(name: str) -> dict:
    # Port 80 so a Knative subscriber `ref` to the Service resolves without a port.
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"seismo-{name}", "labels": labels(name)},
            "spec": {"selector": labels(name), "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                                         *([{"name": "grpc", "port": GRPC_PORTS[name], "targetPort": "grpc"}] if name in GRPC_PORTS else [])]}}


def knative_triggers(file: str = "triggers.yaml") -> list[dict]:
    """The Knative Triggers of seismo/config/<file> (triggers-inputs.yaml: the chart's `detectors.inputs`)."""
    doc = yaml.safe_load(expand_env((CONFIG_DIR / file).read_text(), env={}))
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


HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def _without_helm_labels(node: object) -> object:
    """The rendered objects without the labels that say Helm manages them (kubectl does, here)."""
    if isinstance(node, dict):
        return {k: (_without_helm_labels({lk: lv for lk, lv in v.items() if lk not in HELM_ONLY_LABELS}) if k == "labels" and isinstance(v, dict)
                    else _without_helm_labels(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_helm_labels(v) for v in node]
    return node


@functools.cache
def rendered_chart() -> dict[str, list[dict]]:
    """The chart rendered with its own default values by Helm v4's Go SDK: template file -> objects
    (once per run: the base and the overlays' patch indices both read it)."""
    import helm_python as helm

    out = helm.Chart.load(CHART).render({}, name="seismo", namespace=NAMESPACE, is_install=True)
    return {Path(path).name: [_without_helm_labels(d) for d in yaml.safe_load_all(text) if d]
            for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")}


def base() -> dict[str, object]:
    """The kustomize base: the Helm chart rendered with its default values, one file per template, and
    the Namespace (which `helm install --create-namespace` makes). The chart is the one source."""
    files: dict[str, object] = {}
    files["namespace.yaml"] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": dict(PART_OF)}}
    for name, objects in rendered_chart().items():
        if objects:
            files[name] = objects
    files["kustomization.yaml"] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": NAMESPACE,
                                   "resources": [f for f in files if f != "kustomization.yaml"]}
    return files


CHART_LINKS = {
    # charts/seismo/<path> -> what it links to: Helm reads files inside the chart only, and follows links.
    "files/dashboards": "../../../dashboards/grafana",
    "files/alerts.yaml": "../../../dashboards/alerts.yaml",
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
    deployments = {o["metadata"]["name"]: o for objects in rendered_chart().values() for o in objects if o["kind"] == "Deployment"}
    out = {}
    for name in EVENT_SENDERS:
        env = deployments[f"seismo-{name}"]["spec"]["template"]["spec"]["containers"][0]["env"]
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
# These depend on the namespace and the broker class, or (the input detectors) on `detectors.inputs`.
# The example's drift and outlier services without their input detectors (`detectors.inputs: false`, the default):
# no TensorFlow in them, about 160 MiB at most in the 10-minute soak (docs/performance.md), against 680-810 MiB with it.
WITHOUT_INPUTS_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
TEMPLATE_COMPUTED_ENV = {"SEISMO_MODEL_SINK_URL", "SEISMO_MODEL_NAMESPACE", "SEISMO_DRIFT_SINK_URL", "SEISMO_METRICS_SINK_URL",
                         "SEISMO_DRIFT_INPUT_DETECTOR", "SEISMO_OUTLIER_INPUT_DETECTOR"}
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
  # elasticsearch (the logger may scale; the metrics server and each drift service run one replica, their
  # state on their volumes), postgres (the logger, the metrics server and the drift services may all scale:
  # records, the metrics ledger and the drift windows are shared in the database) or sqlite (one file on a
  # ReadWriteOnce volume shared by the logger and the metrics server: both must then run one replica).
  type: elasticsearch
  postgres:
    # An existing Secret whose key `url` is postgresql://user:password@host:5432/database?sslmode=require.
    urlSecret: seismo-postgres
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
  # the receivers check the broker's tokens, the model server, the drift service and the metrics server
  # (its data-quality findings) send their own, and EventPolicies say which service account may post
  # which event types. open: no check (the NetworkPolicy is the only guard; anyone in the broker's
  # namespace can forge events).
  events: oidc
  oidcIssuer: https://kubernetes.default.svc.cluster.local
  # More subjects (system:serviceaccount:<namespace>:<name>, a trailing * allowed) allowed to post each
  # kind of event: e.g. your ground-truth pipeline under feedback (or run it as seismo-feedback).
  senders:
    model: []
    drift: []
    outlier: []
    feedback: []
    metrics: []

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

# inputs: false (the default): the detectors read the embedding the model's responses carry (adversarial
# check, embedding drift). true: every request of the watched model also goes to the input detectors (for
# the example image model a VAE outlier detector and an untrained autoencoder + KS on its pixels): a second
# network per image, about three times the cost (a GPU node pool for the outlier service:
# services.outlier.gpu). A model whose responses carry no embedding needs true, or a `models:` entry.
detectors:
  inputs: false

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
# The drift and outlier services' `resources` are for detectors.inputs: true (TensorFlow networks on every
# request); with it false they load no input detector and get `resourcesWithoutInputs`.
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
        if name in ("drift", "outlier"):
            svc["resourcesWithoutInputs"] = {k: dict(v) for k, v in WITHOUT_INPUTS_RESOURCES.items()}  # a copy each: no YAML alias
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
        if name in ("drift", "outlier"):
            props["resourcesWithoutInputs"] = props["resources"]
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
            "type": {"enum": ["elasticsearch", "postgres", "sqlite"]},
            "elasticsearch": _object({"url": {"type": "string", "pattern": "^(https?://.+)?$"}, "endpointSecret": string, "credentialsSecret": string}),
            "postgres": _object({"urlSecret": {"type": "string", "minLength": 1}}),
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
        "detectors": _object({"inputs": boolean}),
        "seldonGraphs": string,
        "models": {"type": "array", "items": _object({
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
            "artifact": {"type": "string", "minLength": 1}, "endpoint": {"type": "string", "minLength": 1},
            "task": {"enum": ["binary", "multiclass", "regression"]}, "reference": string,
            "feature_names": {"type": "array", "items": string},
            "watch": {"type": "array", "items": {"enum": ["drift", "outliers", "performance", "diagnosis"]}},
            "window": {"type": "integer", "minimum": 2}, "embedding": {"type": "boolean"}, "quality": {"type": "boolean"},
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
    input_triggers = [{"name": t["metadata"]["name"], "spec": t["spec"]} for t in knative_triggers("triggers-inputs.yaml")]
    files = {
        "values.yaml": values_text,
        "values.schema.json": json.dumps(chart_schema(values), indent=2) + "\n",
        "files/knative-triggers.yaml": header + yaml.safe_dump({"triggers": triggers}, sort_keys=False),
        "files/knative-triggers-inputs.yaml": header + yaml.safe_dump({"triggers": input_triggers}, sort_keys=False),
        "files/event-policies.yaml": header + yaml.safe_dump({"policies": event_policy_table()}, sort_keys=False),
        "files/config/metrics.yaml": kubernetes_metrics_config(),
        "files/config/explainer.yaml": EXPLAINER_CONFIG,
    }
    return files


def render() -> dict[str, str]:
    """Path relative to manifests/ -> text."""
    headers = {"base": "# Rendered from the Helm chart (charts/seismo) by manifests/build.py: edit the chart, then run it.\n",
               "overlays": "# Generated by manifests/build.py: edit it, then run `python manifests/build.py`.\n"}
    out = {}
    for prefix, files in (("base", base()), ("overlays", overlays())):
        header = headers[prefix]
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
    link_chart_files()
    for root, make in ((CHART, chart), (OUT, render)):  # the chart written first: the base is rendered from it
        files = make()
        for path, text in files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        print(f"wrote {len(files)} files under {root}")
