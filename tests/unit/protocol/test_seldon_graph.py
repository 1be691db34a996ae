"""SeldonDeployment graphs: parsing the manifests, and where each node's events belong."""

from pathlib import Path

import pytest

from seismo.protocol.limits import MAX_ID_CHARS
from seismo.protocol.seldon_graph import GraphConfigError, load_graphs

MANIFESTS = Path(__file__).resolve().parents[2] / "data" / "seldon-graphs.yaml"


def ext(node, deployment="assistant", endpoint="default", namespace="voice"):
    return {"inferenceservicename": deployment, "modelid": node, "endpoint": endpoint, "namespace": namespace}


@pytest.fixture
def graphs():
    return load_graphs(MANIFESTS)


def test_each_non_root_node_gets_its_own_record_with_its_graph_parent(graphs):
    assert len(graphs) == 2  # two predictors
    assert graphs.place(ext("audio-prep"), "p-1") is None  # the root keeps the puid and the deployment's name
    asr = graphs.place(ext("asr"), "p-1")
    assert (asr.prediction_id, asr.model, asr.parent_id) == ("p-1:asr", "assistant.asr", "p-1")
    intent = graphs.place(ext("intent"), "p-1")
    assert (intent.prediction_id, intent.model, intent.parent_id) == ("p-1:intent", "assistant.intent", "p-1:asr")
    assert graphs.place(ext("asr-v2", endpoint="canary"), "p-2") is None  # the canary's root


def test_events_the_file_does_not_describe_are_left_as_they_are(graphs):
    assert graphs.place(ext("asr", deployment="other"), "p") is None
    assert graphs.place(ext("asr", namespace="elsewhere"), "p") is None  # the manifest names its namespace
    assert graphs.place(ext("asr", endpoint="shadow"), "p") is None
    assert graphs.place({"inferenceservicename": "assistant"}, "p") is None  # no modelid: not a graph node's event
    # No endpoint: the deployment has two predictors, so which graph is meant is unknown
    assert graphs.place({"inferenceservicename": "assistant", "modelid": "asr", "namespace": "voice"}, "p") is None
    # A node the manifest does not list (an older file): its own record, no parent claimed
    unknown = graphs.place(ext("new-node"), "p")
    assert (unknown.prediction_id, unknown.model, unknown.parent_id) == ("p:new-node", "assistant.new-node", None)


def test_hostile_node_names_and_long_puids_are_refused_naming_the_problem(graphs):
    with pytest.raises(ValueError, match="DNS-1123"):
        graphs.place(ext("Bad:Name"), "p")
    with pytest.raises(ValueError, match="DNS-1123"):
        graphs.place(ext("x\n"), "p")
    longest = "p" * (MAX_ID_CHARS - len(":intent"))
    assert graphs.place(ext("intent"), longest).prediction_id == longest + ":intent"
    with pytest.raises(ValueError, match="too long for graph node 'intent'"):
        graphs.place(ext("intent"), longest + "p")


@pytest.mark.parametrize("text, message", [
    ("kind: Service\nmetadata: {name: a}\n", "holds no SeldonDeployment"),
    ("kind: SeldonDeployment\nmetadata: {name: a}\nspec: {predictors: []}\n", "non-empty list"),
    ("kind: SeldonDeployment\nmetadata: {name: A_B}\nspec: {predictors: []}\n", "metadata.name must be a Kubernetes name"),
    ("kind: SeldonDeployment\nmetadata: {name: a}\nspec: {predictors: [{name: p}]}\n", "needs a 'graph' mapping"),
    ("kind: SeldonDeployment\nmetadata: {name: a}\nspec: {predictors: [{name: p, graph: {name: x, children: [{name: x}]}}]}\n",
     "appears twice"),
    ("kind: SeldonDeployment\nmetadata: {name: a}\nspec: {predictors: [{name: p, graph: {name: 'a.b'}}]}\n", "node's name"),
    ("kind: SeldonDeployment\nmetadata: {name: a}\nspec: {predictors: [{name: p, graph: {name: x, children: 3}}]}\n", "not a list"),
    ("kind: SeldonDeployment\n  bad: [\n", "not valid YAML"),
])
def test_bad_files_fail_at_start_naming_the_problem(tmp_path, text, message):
    (tmp_path / "g.yaml").write_text(text)
    with pytest.raises(GraphConfigError, match=message):
        load_graphs(tmp_path / "g.yaml")


def test_deep_wide_and_missing_files_are_refused(tmp_path):
    def chain(depth):
        node = {"name": f"n{depth}"}
        for i in range(depth - 1, 0, -1):
            node = {"name": f"n{i}", "children": [node]}
        return node

    import yaml

    def write(graph):
        doc = {"kind": "SeldonDeployment", "metadata": {"name": "a"}, "spec": {"predictors": [{"name": "p", "graph": graph}]}}
        (tmp_path / "g.yaml").write_text(yaml.safe_dump(doc))
        return tmp_path / "g.yaml"

    assert len(load_graphs(write(chain(16)))) == 1
    with pytest.raises(GraphConfigError, match="deeper than 16"):
        load_graphs(write(chain(17)))
    with pytest.raises(GraphConfigError, match="more than 64 graph nodes"):
        load_graphs(write({"name": "root", "children": [{"name": f"c{i}"} for i in range(64)]}))
    with pytest.raises(GraphConfigError, match="cannot read"):
        load_graphs(tmp_path / "missing.yaml")
    # A `kind: List` (what `kubectl get sdep -o yaml` prints) is read too
    (tmp_path / "list.yaml").write_text("kind: List\nitems:\n- kind: SeldonDeployment\n  metadata: {name: a}\n"
                                        "  spec: {predictors: [{name: p, graph: {name: r, children: [{name: c}]}}]}\n")
    assert load_graphs(tmp_path / "list.yaml").place({"inferenceservicename": "a", "modelid": "c"}, "q").parent_id == "q"
