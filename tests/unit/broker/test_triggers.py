import random
from pathlib import Path

import pytest

from seismo.broker.triggers import Delivery, Trigger, TriggerConfigError, TriggerIndex, load_triggers, parse_duration
from seismo.services.broker import DEFAULT_TRIGGERS
from seismo.services.broker.settings import INPUT_TRIGGERS
from seismo.topology import SERVICE_PORTS, expand_env


@pytest.mark.parametrize("text, seconds", [("PT0.2S", 0.2), ("PT1M30S", 90), ("PT2H", 7200), ("P1D", 86400), ("P1DT1S", 86401)])
def test_iso8601_durations(text, seconds):
    assert parse_duration(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0.2s", "P", "PT", "PT-1S", "1S"])
def test_bad_durations_are_named(text):
    with pytest.raises(TriggerConfigError, match="ISO-8601"):
        parse_duration(text, "delivery.backoffDelay")


def test_backoff_policies_follow_knative_and_are_capped():
    linear = Delivery(backoff_policy="linear", backoff_delay=0.5)
    assert [linear.backoff(n, 60) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    exponential = Delivery(backoff_policy="exponential", backoff_delay=0.5)
    assert [exponential.backoff(n, 60) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert exponential.backoff(20, 3.0) == 3.0


def test_file_with_plain_entries_and_knative_objects(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text(
        """
triggers:
  - name: logger
    filter: {attributes: {type: org.kubeflow.serving.inference.request, inferenceservicename: m}}
    subscriber: {uri: "${LOGGER:-http://127.0.0.1:1}/"}
    delivery: {retry: 2, backoffPolicy: linear, backoffDelay: PT1S, timeout: PT3S, deadLetterSink: {uri: http://dls/}}
  - apiVersion: eventing.knative.dev/v1
    kind: Trigger
    metadata: {name: everything}
    spec:
      broker: default
      subscriber: {uri: http://all/}
"""
    )
    logger, everything = load_triggers(path, env={"LOGGER": "http://10.0.0.1:9"})
    assert logger.subscriber_uri == "http://10.0.0.1:9/"
    assert logger.delivery == Delivery(retry=2, backoff_policy="linear", backoff_delay=1.0, timeout=3.0, dead_letter_uri="http://dls/")
    assert logger.matches({"type": "org.kubeflow.serving.inference.request", "inferenceservicename": "m", "id": "1"})
    assert not logger.matches({"type": "org.kubeflow.serving.inference.request", "inferenceservicename": "other"})
    assert not logger.matches({"type": "org.kubeflow.serving.inference.request"})
    assert everything.matches({"type": "anything"})
    assert expand_env("${NOPE:-d} ${SET}", {"SET": "s"}) == "d s"


@pytest.mark.parametrize(
    "body, message",
    [
        ("triggers: [{name: a}]", "subscriber.uri is required"),
        ("triggers: [{name: Bad_Name, subscriber: {uri: x}}]", "DNS-1123"),
        ("triggers: [{name: a, subscriber: {uri: x}, delivery: {backoffPolicy: random}}]", "linear or exponential"),
        ("triggers: [{name: a, subscriber: {uri: x}, delivery: {retries: 3}}]", "unknown fields"),
        ("triggers: [{name: a, subscriber: {uri: x}}, {name: a, subscriber: {uri: y}}]", "duplicate trigger names"),
        ("triggers: {a: 1}", "needs a 'triggers' list"),
        ("triggers: [{name: a, subscriber: {uri: x}, filter: {attributes: {type: [1]}}}]", "filter.attributes"),
    ],
)
def test_bad_trigger_files_say_what_is_wrong(tmp_path: Path, body, message):
    path = tmp_path / "t.yaml"
    path.write_text(body)
    with pytest.raises(TriggerConfigError, match=message):
        load_triggers(path)


def test_shipped_trigger_file_routes_every_request_and_response_type_to_the_logger():
    triggers = load_triggers(DEFAULT_TRIGGERS, env={})
    types = {t.filter_attributes["type"] for t in triggers if t.subscriber_uri == "http://127.0.0.1:8091/"}
    assert types == {
        "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response",
        "io.seldon.serving.inference.request", "io.seldon.serving.inference.response",
        "org.kubeflow.serving.inference.outlier", "org.kubeflow.serving.inference.drift", "io.seldon.serving.feedback",
        "io.seismo.inference.adversarial", "io.seismo.inference.quality",
    }
    feedback = {t.filter_attributes["type"] for t in triggers if t.subscriber_uri == "http://127.0.0.1:8094/"}
    assert feedback == {"io.seldon.serving.feedback"}
    requests = {"org.kubeflow.serving.inference.request", "io.seldon.serving.inference.request"}
    # triggers.yaml sends both detectors Seismo's response events: they carry the embeddings (drift windows,
    # adversarial checks). triggers-inputs.yaml (the broker adds it unless SEISMO_BROKER_INPUT_DETECTORS=false)
    # adds the request events for the input detectors.
    responses = {"org.kubeflow.serving.inference.response"}
    pixels = load_triggers(INPUT_TRIGGERS, env={})
    for port in (SERVICE_PORTS["outlier"], SERVICE_PORTS["drift"]):
        watched = {t.filter_attributes["type"] for t in triggers if t.subscriber_uri == f"http://127.0.0.1:{port}/"}
        assert watched == responses, port
        assert {t.filter_attributes["type"] for t in pixels if t.subscriber_uri == f"http://127.0.0.1:{port}/"} == requests
    assert {t.name for t in pixels}.isdisjoint(t.name for t in triggers)


def test_the_broker_adds_the_input_detectors_triggers_only_when_told_to(tmp_path: Path):
    from prometheus_client import CollectorRegistry

    from seismo.services.broker import BrokerSettings, create_app

    names = {}
    for inputs in (False, True):
        settings = BrokerSettings(journal_path=tmp_path / f"{inputs}.db", input_detectors=inputs)
        names[inputs] = {t.name for t in create_app(settings, CollectorRegistry()).state.broker.triggers}
    assert names[True] - names[False] == {t.name for t in load_triggers(INPUT_TRIGGERS, env={})}
    assert BrokerSettings(journal_path=tmp_path / "d.db").input_detectors is False  # by default the embedding detectors alone
    own = tmp_path / "own.yaml"  # a trigger file of one's own gets nothing added
    own.write_text("triggers: [{name: mine, subscriber: {uri: 'http://127.0.0.1:9/'}}]")
    settings = BrokerSettings(journal_path=tmp_path / "own.db", triggers_file=own)
    assert [t.name for t in create_app(settings, CollectorRegistry()).state.broker.triggers] == ["mine"]


def test_batch_is_seismos_extension_checked_and_kept(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text("triggers: [{name: a, subscriber: {uri: x}, batch: 64}, {name: b, subscriber: {uri: y}}]")
    assert [t.batch for t in load_triggers(path)] == [64, 1]
    for bad in ("0", "1001", "true", "'64'"):
        path.write_text(f"triggers: [{{name: a, subscriber: {{uri: x}}, batch: {bad}}}]")
        with pytest.raises(TriggerConfigError, match="batch must be an integer from 1 to 1000"):
            load_triggers(path)


def test_the_trigger_index_matches_exactly_what_asking_every_trigger_matches_in_the_same_order():
    rng = random.Random(7)
    values = {"type": ["a", "b", "c", ""], "source": ["s1", "s2"], "inferenceservicename": ["m1", "m2"]}

    def some_filter() -> dict[str, str]:
        return {name: rng.choice(choices) for name, choices in values.items() if rng.random() < 0.5}

    for _ in range(200):
        triggers = [Trigger(f"t{i}", "http://127.0.0.1:1/", some_filter()) for i in range(rng.randint(0, 12))]
        index = TriggerIndex(triggers)
        for _ in range(20):
            attributes = some_filter()  # some events lack an attribute a filter names, even `type`
            expected = tuple(t.name for t in triggers if t.matches(attributes))
            assert index.matching(attributes) == expected


def test_shipped_triggers_through_the_index():
    triggers = load_triggers(DEFAULT_TRIGGERS) + load_triggers(INPUT_TRIGGERS)
    index = TriggerIndex(triggers)
    request = {"type": "org.kubeflow.serving.inference.request", "inferenceservicename": "image-classifier"}
    assert set(index.matching(request)) >= {"logger-kserve-request", "outlier-kserve-request", "drift-kserve-request"}
    assert index.matching({"type": "org.kubeflow.serving.inference.request", "inferenceservicename": "other"}) == ("logger-kserve-request",)
    assert index.matching({"type": "no.such.type"}) == ()
