"""The broker spreads a subscriber's deliveries over its replicas, as a Kubernetes Service does."""

import pytest

from seismo.broker.replicas import ReplicaError, Replicas


def test_deliveries_go_to_each_replica_in_turn_and_others_are_untouched():
    replicas = Replicas("http://127.0.0.1:8093=http://127.0.0.1:8193,http://127.0.0.1:8293/; http://127.0.0.1:8094=http://127.0.0.1:8194")
    assert [replicas.pick("http://127.0.0.1:8093/") for _ in range(4)] == [
        "http://127.0.0.1:8093/", "http://127.0.0.1:8193/", "http://127.0.0.1:8293/", "http://127.0.0.1:8093/"]
    assert replicas.pick("http://127.0.0.1:8094/v1/x") == "http://127.0.0.1:8094/v1/x"
    assert replicas.pick("http://127.0.0.1:8094/v1/x") == "http://127.0.0.1:8194/v1/x"
    assert replicas.pick("http://127.0.0.1:80930/") == "http://127.0.0.1:80930/"  # another port, not a prefix match
    assert not Replicas(None) and Replicas(None).pick("http://a/") == "http://a/"


@pytest.mark.parametrize("spec", ["http://a:1", "http://a:1=", "a:1=http://b:2", "http://a:1=ftp://b"])
def test_a_malformed_spec_is_refused_naming_it(spec):
    with pytest.raises(ReplicaError, match="replicas"):
        Replicas(spec)
