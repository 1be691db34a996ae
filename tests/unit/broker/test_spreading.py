"""The broker spreads a subscriber's deliveries over its replicas, as a Kubernetes Service does."""

import pytest

from seismo.broker.replicas import ReplicaError, Replicas


def test_deliveries_go_to_each_replica_in_turn_and_others_are_untouched():
    replicas = Replicas("http://drift:9000=http://drift-2:9000,http://drift-3:9000/; http://metrics:9000=http://metrics-2:9000")
    assert [replicas.pick("http://drift:9000/") for _ in range(4)] == [
        "http://drift:9000/", "http://drift-2:9000/", "http://drift-3:9000/", "http://drift:9000/"]
    assert replicas.pick("http://metrics:9000/v1/x") == "http://metrics:9000/v1/x"
    assert replicas.pick("http://metrics:9000/v1/x") == "http://metrics-2:9000/v1/x"
    assert replicas.pick("http://drift:90000/") == "http://drift:90000/"  # another port, not a prefix match
    assert not Replicas(None) and Replicas(None).pick("http://a/") == "http://a/"


@pytest.mark.parametrize("spec", ["http://a:1", "http://a:1=", "a:1=http://b:2", "http://a:1=ftp://b"])
def test_a_malformed_spec_is_refused_naming_it(spec):
    with pytest.raises(ReplicaError, match="replicas"):
        Replicas(spec)
