"""With auth on, no event, feedback or result enters without an identity, and each kind only from the
service that produces it. Before, the event ingress of the broker and of every subscriber was open:
a forged `is_drift: false` took the real drift result's place, forged feedback moved accuracy, a forged
request claimed a prediction id before the model server's. Real broker, logger and metrics server
processes with sender tokens; the drift and outlier services' ingress in process (their routes are the
same middleware and event reader; starting them costs a TensorFlow import each)."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from helpers import free_port, metric_sum, start_service, stop_process, wait_ready, wait_until

pytestmark = pytest.mark.integration

SENDERS = "model=model-secret,broker=broker-secret,drift=drift-secret,outlier=outlier-secret,feedback=feedback-secret"
CLIENT = "client-secret"
REQUEST, RESPONSE = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"
DRIFT, FEEDBACK = "org.kubeflow.serving.inference.drift", "io.seldon.serving.feedback"
AUTH_ENV = {"SEISMO_AUTH_TOKENS": CLIENT, "SEISMO_AUTH_SENDERS": SENDERS}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def event(event_type: str, event_id: str, **extensions: str) -> dict[str, str]:
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "http://test/", "ce-type": event_type,
               "ce-inferenceservicename": "m", "content-type": "application/json"}
    return headers | {f"ce-{k}": v for k, v in extensions.items()}


DRIFT_RESULT = orjson.dumps({"window": 0, "is_drift": False, "p_val": 0.9, "threshold": 0.05})
FEEDBACK_BODY = orjson.dumps({"truth": {"instances": [3]}})
INSTANCES = orjson.dumps({"instances": [[1.0, 2.0]]})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("identity")
    ports = {name: free_port() for name in ("broker", "logger", "metrics")}
    logger_url = f"http://127.0.0.1:{ports['logger']}"
    triggers = tmp / "triggers.yaml"
    delivery = ("{retry: 1, backoffPolicy: exponential, backoffDelay: PT0.05S, timeout: PT10S, deadLetterSink: {uri: "
                + f'"{logger_url}/v1/dead-letters"' + "}}")
    triggers.write_text(f"""triggers:
  - name: logger-all
    filter: {{attributes: {{}}}}
    subscriber: {{uri: "{logger_url}/"}}
    delivery: {delivery}
  - name: metrics-feedback
    filter: {{attributes: {{type: {FEEDBACK}}}}}
    subscriber: {{uri: "http://127.0.0.1:{ports['metrics']}/"}}
    delivery: {delivery}
""")
    metrics_config = tmp / "metrics.yaml"
    metrics_config.write_text("models:\n  m: {type: multiclass-numeric}\n")
    envs = {
        "logger": {"SEISMO_LOGGER_SQLITE_PATH": str(tmp / "records.db")},
        "metrics": {"SEISMO_METRICS_SQLITE_PATH": str(tmp / "records.db"), "SEISMO_METRICS_CONFIG_FILE": str(metrics_config),
                    "SEISMO_METRICS_STATE_PATH": str(tmp / "ledger.db")},
        "broker": {"SEISMO_BROKER_JOURNAL_PATH": str(tmp / "broker.db")},
    }
    processes = {}
    try:
        for name in ("logger", "metrics", "broker"):
            extra = ["--triggers", str(triggers)] if name == "broker" else None
            processes[name] = start_service(name, ports[name], AUTH_ENV | envs[name], tmp / f"{name}.log", extra)
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name, url in urls.items():
            wait_ready(url, processes[name], log_path=tmp / f"{name}.log")
        yield urls
    finally:
        for process in processes.values():
            stop_process(process)


def test_every_event_ingress_needs_an_identity(stack):
    with httpx.Client(timeout=10) as client:
        for url in (f"{stack['broker']}/", f"{stack['broker']}/default/default", f"{stack['logger']}/",
                    f"{stack['logger']}/v1/dead-letters", f"{stack['metrics']}/"):
            answer = client.post(url, headers=event(FEEDBACK, "no-token"), content=FEEDBACK_BODY)
            assert answer.status_code == 401, (url, answer.text)
            answer = client.post(url, headers=event(FEEDBACK, "bad-token") | bearer("guess"), content=FEEDBACK_BODY)
            assert answer.status_code == 403, (url, answer.text)
        # a sender token is for events only: it reads nothing
        answer = client.get(f"{stack['logger']}/v1/records", headers=bearer("broker-secret"))
        assert answer.status_code == 403 and "for posting events only" in answer.json()["error"]


@pytest.mark.parametrize("event_type,token", [(DRIFT, CLIENT), (DRIFT, "model-secret"), (DRIFT, "outlier-secret"),
                                              (REQUEST, CLIENT), (REQUEST, "drift-secret"), (FEEDBACK, "outlier-secret")])
def test_results_and_records_only_from_their_producers(stack, event_type, token):
    with httpx.Client(timeout=10) as client:
        for url in (f"{stack['broker']}/", f"{stack['logger']}/"):
            answer = client.post(url, headers=event(event_type, f"forged-{token}", requestid="order-1001") | bearer(token),
                                 content=DRIFT_RESULT if event_type == DRIFT else INSTANCES)
            assert answer.status_code == 403, (url, answer.text)
            assert "are accepted only from" in answer.json()["error"]
        # a batch: the forged item refused in its place, the good one journaled
        good = {"specversion": "1.0", "id": "batch-good", "source": "s", "type": "com.example.custom", "data": {}}
        forged = {"specversion": "1.0", "id": "batch-forged", "source": "s", "type": event_type, "data": {}}
        answer = client.post(f"{stack['broker']}/", headers={"content-type": "application/cloudevents-batch+json"} | bearer(token),
                             content=orjson.dumps([good, forged]))
        assert [r["status"] for r in answer.json()["results"]] == [202, 403]


def test_the_real_producers_still_get_through(stack):
    with httpx.Client(timeout=10) as client:
        ok = client.post(f"{stack['broker']}/", headers=event(REQUEST, "real-1", requestid="real-1") | bearer("model-secret"),
                         content=INSTANCES)
        assert ok.status_code == 202
        ok = client.post(f"{stack['broker']}/", headers=event(RESPONSE, "real-1r", requestid="real-1") | bearer("model-secret"),
                         content=orjson.dumps({"predictions": [3]}))
        assert ok.status_code == 202
        # feedback from a client token, as POST /feedback takes it, and from the feedback identity
        assert client.post(f"{stack['broker']}/", headers=event(FEEDBACK, "fb-1", requestid="real-1") | bearer(CLIENT),
                           content=FEEDBACK_BODY).status_code == 202
        record = wait_until(lambda: (r := client.get(f"{stack['logger']}/v1/records/real-1", headers=bearer(CLIENT))).status_code == 200
                            and FEEDBACK in r.json()["event_types"] and r.json(), 20, message="the real prediction and its feedback stored")
        assert record["request"] == {"instances": [[1.0, 2.0]]} and record["response"] == {"predictions": [3]}
        # the metrics server took the feedback it got from the broker (stamped `client`)
        wait_until(lambda: metric_sum(client.get(f"{stack['metrics']}/metrics").text, "seismo_metrics_feedback_received_total") >= 1,
                   20, message="the metrics server took the feedback")
        # the drift service's own result goes in
        assert client.post(f"{stack['broker']}/", headers=event(DRIFT, "drift-0", requestid="m-0") | bearer("drift-secret"),
                           content=DRIFT_RESULT).status_code == 202


def test_a_claimed_sender_stamp_is_only_trusted_from_the_broker(stack):
    with httpx.Client(timeout=10) as client:
        # a client claiming the drift service's stamp: the broker replaces the stamp, then refuses it
        forged = event(DRIFT, "stamp-1", seismosender="drift") | bearer(CLIENT)
        assert client.post(f"{stack['broker']}/", headers=forged, content=DRIFT_RESULT).status_code == 403
        assert client.post(f"{stack['logger']}/", headers=forged, content=DRIFT_RESULT).status_code == 403
        # the broker's own deliveries say who sent the event: a request stamped `client` is refused
        relayed = event(REQUEST, "stamp-2", seismosender="client") | bearer("broker-secret")
        assert client.post(f"{stack['logger']}/", headers=relayed, content=INSTANCES).status_code == 403
        relayed = event(FEEDBACK, "stamp-3", seismosender="drift") | bearer("broker-secret")
        assert client.post(f"{stack['metrics']}/", headers=relayed, content=FEEDBACK_BODY).status_code == 403
        # dead letters only from the broker
        assert client.post(f"{stack['logger']}/v1/dead-letters", headers=event(REQUEST, "dl-1") | bearer(CLIENT),
                           content=INSTANCES).status_code == 403
        assert client.post(f"{stack['logger']}/v1/dead-letters", headers=event(REQUEST, "dl-2") | bearer("broker-secret"),
                           content=INSTANCES).status_code == 202
        assert metric_sum(client.get(f"{stack['logger']}/metrics").text, "seismo_logger_events_rejected_total",
                          reason="forbidden_sender") >= 4


@pytest.mark.parametrize("service", ["drift", "outlier"])
def test_detector_ingress_needs_the_model_servers_identity(service, monkeypatch):
    """The detectors' `POST /`: no token 401, a client's forged request 403 (single and batched)."""
    from prometheus_client import CollectorRegistry

    for name, value in AUTH_ENV.items():
        monkeypatch.setenv(name, value)
    if service == "drift":
        from seismo.services.drift import DriftSettings as Settings
        from seismo.services.drift import create_app
    else:
        from seismo.services.outlier import OutlierSettings as Settings  # type: ignore[assignment]
        from seismo.services.outlier import create_app  # type: ignore[assignment]
    app = create_app(Settings(), CollectorRegistry())
    transport = httpx.ASGITransport(app=app)

    async def run():
        async with httpx.AsyncClient(transport=transport, base_url="http://detector") as client:
            assert (await client.post("/", headers=event(REQUEST, "x"), content=INSTANCES)).status_code == 401
            forged = await client.post("/", headers=event(REQUEST, "x") | bearer(CLIENT), content=INSTANCES)
            assert forged.status_code == 403 and "accepted only from model" in forged.json()["error"]
            batch = [{"specversion": "1.0", "id": "b", "source": "s", "type": REQUEST, "inferenceservicename": "m", "data": {"instances": [[1]]}}]
            answer = await client.post("/", headers={"content-type": "application/cloudevents-batch+json"} | bearer("drift-secret"),
                                       content=orjson.dumps(batch))
            assert answer.json()["results"][0]["status"] == 403

    asyncio.run(run())


def test_a_local_stack_with_auth_on_stores_predictions(tmp_path):
    """`seismo up` with a client token: the stack makes up sender tokens, the model server sends its
    events with its own, the broker relays them stamped, and the prediction is stored; the metrics
    server's data-quality finding on it travels the same way under its own identity."""
    from seismo.local import LocalStack, free_ports

    services = ("logger", "broker", "tabular", "metrics")
    with LocalStack(tmp_path, ports=free_ports(services), services=services, env={"SEISMO_AUTH_TOKENS": CLIENT}) as stack:
        with httpx.Client(timeout=30) as client:
            answer = client.post(f"{stack.url('tabular')}/v2/models/tabular-classifier/infer", headers={"x-request-id": "auth-stack-1"},
                                 json={"inputs": [{"name": "input-0", "shape": [1, 13], "datatype": "FP32", "data": [13.0] * 13}]})
            assert answer.status_code == 200, answer.text
            record = wait_until(lambda: (r := client.get(f"{stack.url('logger')}/v1/records/auth-stack-1", headers=bearer(CLIENT))).status_code == 200
                                and r.json()["response"] and r.json(), 30, message="the prediction stored through the broker")
            assert record["model"] == "tabular-classifier"
            # 13.0 in every feature is far outside several of the wine features' ranges.
            quality = wait_until(lambda: client.get(f"{stack.url('logger')}/v1/records/auth-stack-1", headers=bearer(CLIENT)).json()[
                "annotations"].get("quality"), 30, 0.2, "the metrics server's finding on the record")
            assert {i["issue"] for i in quality["issues"]} == {"out_of_range"}
            assert client.get(f"{stack.url('broker')}/metrics").text.count('reason="forbidden_sender"') == 0
