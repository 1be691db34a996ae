from seismo.services.model import ModelSettings


def test_k_sink_names_the_sink_as_knative_sinkbinding_sets_it(monkeypatch):
    monkeypatch.setenv("K_SINK", "http://broker-ingress.knative-eventing.svc/default/default")
    assert ModelSettings().sink_url == "http://broker-ingress.knative-eventing.svc/default/default"
    monkeypatch.setenv("SEISMO_MODEL_SINK_URL", "http://127.0.0.1:8090/")
    assert ModelSettings().sink_url == "http://127.0.0.1:8090/"


def test_settings_come_from_prefixed_environment(monkeypatch):
    monkeypatch.setenv("SEISMO_MODEL_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("SEISMO_MODEL_LOG_MODE", "request")
    settings = ModelSettings()
    assert settings.max_batch_size == 8 and settings.log_mode == "request"
