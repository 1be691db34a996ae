"""Seldon Core inference graphs: which node of a SeldonDeployment an event comes from, and its parent.

Seldon Core's executor logs every node of a graph under the same `requestid` (the puid) and names the
node in `modelid`. Without the graph, all nodes' events fold into one record (the first node's; the
others count as duplicates). Given the SeldonDeployment manifests (`SEISMO_LOGGER_SELDON_GRAPHS`; the
metrics server reads the same file as `SEISMO_METRICS_SELDON_GRAPHS`), each node gets its own record:

- the graph's root keeps the puid as its prediction id and the deployment's name as its model: what
  the root logs is the graph's input and the graph's output (Seldon logs a node's response after its
  children answered), so feedback by puid still joins it, as before;
- any other node gets `<puid>:<node>` as its prediction id and `<deployment>.<node>` as its model, and
  `parentid` names the record of the node that called it, so `GET /v1/records/{id}/lineage` walks up
  the graph to the root. For a MODEL or TRANSFORMER parent that is the node whose output this one was
  given; a ROUTER or COMBINER parent passed on its own input.

Events of deployments the file does not name are stored as before (puid, deployment name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seismo.protocol.limits import MAX_ID_CHARS

NODE_SEPARATOR = ":"
"""Between the puid and the node's name in a node's prediction id (node names cannot hold it)."""
MODEL_SEPARATOR = "."
"""Between the deployment's and the node's name in a node's model name (node names cannot hold it)."""
MAX_NODES = 64
"""Nodes in one predictor's graph at most (Seldon graphs are a handful of containers)."""
MAX_DEPTH = 16

# A graph node is a container: its name is a DNS-1123 label, so it holds neither separator.
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A SeldonDeployment's and a predictor's name: DNS-1123 subdomain (dots allowed).
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class GraphConfigError(ValueError):
    """The graphs file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Graph:
    """One predictor of one SeldonDeployment."""

    deployment: str
    predictor: str
    namespace: str | None  # None: any namespace (the manifest does not say)
    root: str
    parents: Mapping[str, str | None]  # node -> the node that calls it; the root's is None


@dataclass(frozen=True)
class Place:
    """Where a non-root node's event belongs."""

    prediction_id: str
    model: str
    parent_id: str | None  # None when the node is not in the graph the file describes


def node_prediction_id(puid: str, node: str) -> str:
    """A non-root node's prediction id; ValueError when the puid leaves no room for the node's name."""
    pid = f"{puid}{NODE_SEPARATOR}{node}"
    if len(pid) > MAX_ID_CHARS:
        raise ValueError(f"requestid of {len(puid)} characters is too long for graph node {node!r}'s record: "
                         f"puid, '{NODE_SEPARATOR}' and node name must fit in {MAX_ID_CHARS} characters")
    return pid


class SeldonGraphs:
    def __init__(self, graphs: list[Graph]):
        self._by_name: dict[tuple[str, str], list[Graph]] = {}
        self._predictors: dict[str, list[Graph]] = {}
        for graph in graphs:
            self._by_name.setdefault((graph.deployment, graph.predictor), []).append(graph)
            self._predictors.setdefault(graph.deployment, []).append(graph)

    def __len__(self) -> int:
        return sum(len(g) for g in self._by_name.values())

    def _graph(self, deployment: str, predictor: str | None, namespace: str | None) -> Graph | None:
        if predictor:
            candidates = self._by_name.get((deployment, predictor), [])
        else:  # no endpoint on the event: only a deployment with one predictor is unambiguous
            candidates = self._predictors.get(deployment, [])
            if len({g.predictor for g in candidates}) != 1:
                return None
        for graph in candidates:
            if graph.namespace is None or graph.namespace == namespace:
                return graph
        return None

    def place(self, extensions: Mapping[str, str], puid: str) -> Place | None:
        """Where an event of a non-root node belongs; None for the root and for deployments not described.

        ValueError when the puid is too long to name the node's record (the event is refused, counted)."""
        deployment, node = extensions.get("inferenceservicename"), extensions.get("modelid")
        if not deployment or not node:
            return None
        graph = self._graph(deployment, extensions.get("endpoint"), extensions.get("namespace"))
        if graph is None or node == graph.root:
            return None
        if not _NODE_NAME.fullmatch(node):
            raise ValueError(f"modelid {node[:70]!r} cannot be a node of SeldonDeployment {deployment!r} "
                             "(graph node names are DNS-1123 labels)")
        if node not in graph.parents:  # a node the file does not know (an older manifest): stored, no lineage
            return Place(node_prediction_id(puid, node), f"{deployment}{MODEL_SEPARATOR}{node}", None)
        parent = graph.parents[node]  # never None here: only the root has no parent
        parent_id = puid if parent is None or parent == graph.root else node_prediction_id(puid, parent)
        return Place(node_prediction_id(puid, node), f"{deployment}{MODEL_SEPARATOR}{node}", parent_id)


NO_GRAPHS = SeldonGraphs([])


def load_graphs(path: Path | None) -> SeldonGraphs:
    """The SeldonDeployments in a YAML file (several documents, or a `kind: List`); GraphConfigError naming
    the problem. Documents of other kinds are skipped, so a whole manifest file can be given."""
    if path is None:
        return NO_GRAPHS
    try:
        docs = list(yaml.safe_load_all(Path(path).read_text()))
    except OSError as exc:
        raise GraphConfigError(f"cannot read the Seldon graphs file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise GraphConfigError(f"Seldon graphs file {path} is not valid YAML: {exc}") from None
    items: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            items.extend(doc["items"])
        elif doc is not None:
            items.append(doc)
    graphs: list[Graph] = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("kind") == "SeldonDeployment":
            try:
                graphs.extend(_deployment_graphs(item))
            except GraphConfigError as exc:
                raise GraphConfigError(f"Seldon graphs file {path}, document {index + 1}: {exc}") from None
    if not graphs:
        raise GraphConfigError(f"Seldon graphs file {path} holds no SeldonDeployment with a predictor graph")
    return SeldonGraphs(graphs)


def _name(value: Any, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise GraphConfigError(f"{what} must be a Kubernetes name (lowercase letters, digits, '-'), got {str(value)[:70]!r}")
    return value


def _deployment_graphs(doc: dict[str, Any]) -> list[Graph]:
    metadata: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    deployment = _name(metadata.get("name"), "metadata.name", _RESOURCE_NAME)
    namespace = metadata.get("namespace")
    if namespace is not None:
        namespace = _name(namespace, "metadata.namespace", _RESOURCE_NAME)
    spec = doc.get("spec")
    predictors = spec.get("predictors") if isinstance(spec, dict) else None
    if not isinstance(predictors, list) or not predictors:
        raise GraphConfigError(f"SeldonDeployment {deployment!r} needs spec.predictors, a non-empty list")
    graphs = []
    for i, predictor in enumerate(predictors):
        if not isinstance(predictor, dict) or not isinstance(predictor.get("graph"), dict):
            raise GraphConfigError(f"SeldonDeployment {deployment!r}: spec.predictors[{i}] needs a 'graph' mapping")
        name = _name(predictor.get("name"), f"spec.predictors[{i}].name", _RESOURCE_NAME)
        parents: dict[str, str | None] = {}
        root = _walk(predictor["graph"], None, parents, depth=1, where=f"predictor {name!r}")
        graphs.append(Graph(deployment, name, namespace, root, parents))
    return graphs


def _walk(node: Any, parent: str | None, parents: dict[str, str | None], depth: int, where: str) -> str:
    """Record `node` and its children in `parents`; the node's name."""
    if depth > MAX_DEPTH:
        raise GraphConfigError(f"{where}: the graph nests deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict):
        raise GraphConfigError(f"{where}: every graph node must be a mapping with a 'name'")
    name = _name(node.get("name"), f"{where}: a graph node's name", _NODE_NAME)
    if name in parents:
        raise GraphConfigError(f"{where}: node name {name!r} appears twice (Seldon needs unique node names)")
    if len(parents) >= MAX_NODES:
        raise GraphConfigError(f"{where}: more than {MAX_NODES} graph nodes")
    parents[name] = parent
    children = node.get("children") or []
    if not isinstance(children, list):
        raise GraphConfigError(f"{where}: node {name!r} has 'children' that is not a list")
    for child in children:
        _walk(child, name, parents, depth + 1, where)
    return name
