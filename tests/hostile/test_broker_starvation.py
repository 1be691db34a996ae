"""Events no subscriber will take cannot starve the pipeline: forged request events too large for the
logger are refused (413), dead-lettered and kept in the broker's journal; before, a few dozen of them
filled the journal and the broker answered 503 to everything while reporting ready. Real broker and
logger processes, the journal's limits made small so the flood stays small."""

from __future__ import annotations

import httpx
import pytest
from helpers import free_port, metric_sum, start_service, stop_process, wait_ready, wait_until

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
TYPE = "org.kubeflow.serving.inference.request"


def event_headers(event_id: str) -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "http://forger/", "ce-type": TYPE,
            "ce-inferenceservicename": "image-classifier", "content-type": "application/json"}


def test_dead_letters_cannot_fill_the_journal(tmp_path):
    logger_port, broker_port = free_port(), free_port()
    triggers = tmp_path / "triggers.yaml"
    triggers.write_text(f"""triggers:
  - name: logger-requests
    filter: {{attributes: {{type: {TYPE}}}}}
    subscriber: {{uri: "http://127.0.0.1:{logger_port}/"}}
    delivery: {{retry: 2, backoffPolicy: exponential, backoffDelay: PT0.05S, timeout: PT10S}}
""")
    logger_env = {"SEISMO_LOGGER_SQLITE_PATH": str(tmp_path / "records.db"), "SEISMO_LOGGER_MAX_EVENT_BYTES": str(MIB // 2)}
    broker_env = {"SEISMO_BROKER_JOURNAL_PATH": str(tmp_path / "broker.db"), "SEISMO_BROKER_MAX_JOURNAL_BYTES": str(12 * MIB),
                  "SEISMO_BROKER_MAX_DEAD_LETTER_BYTES": str(3 * MIB), "SEISMO_BROKER_MAX_EVENT_BYTES": str(4 * MIB)}
    logger = start_service("logger", logger_port, logger_env, tmp_path / "logger.log")
    broker = start_service("broker", broker_port, broker_env, tmp_path / "broker.log", ["--triggers", str(triggers)])
    broker_url, logger_url = f"http://127.0.0.1:{broker_port}", f"http://127.0.0.1:{logger_port}"
    try:
        wait_ready(logger_url, logger, log_path=tmp_path / "logger.log")
        wait_ready(broker_url, broker, log_path=tmp_path / "broker.log")
        forged = b'{"instances": [[' + b"0.5," * (MIB // 4) + b'0.5]]}'  # 1 MiB: the broker takes it, the logger refuses it
        with httpx.Client(timeout=30) as client:
            answers = []
            for i in range(40):  # 40 MiB of dead letters against a 12 MiB journal
                answers.append(client.post(f"{broker_url}/", headers=event_headers(f"forged-{i}"), content=forged).status_code)
                wait_until(lambda n=i + 1: metric_sum(client.get(f"{broker_url}/metrics").text, "seismo_broker_dead_letters_total") == n,
                           30, message="the forged event dead-lettered")
            assert answers == [202] * 40, answers  # the journal never filled
            def within_budget() -> tuple[float, float] | None:  # the budget is enforced every second (and at once when full)
                text = client.get(f"{broker_url}/metrics").text
                shed = metric_sum(text, "seismo_broker_retention_removed_total", what="dead_letters_shed")
                kept = metric_sum(text, "seismo_broker_dead_letter_table")
                return (shed, kept) if shed + kept == 40 and kept <= 3 else None

            shed, kept = wait_until(within_budget, 10, message="at most 3 MiB of dead letters kept, the rest counted as shed")
            assert kept >= 1  # the newest are kept
            text = client.get(f"{broker_url}/metrics").text
            assert metric_sum(text, "seismo_broker_dead_letters_total", destination="table") == 40
            assert metric_sum(text, "seismo_broker_journal_bytes") < 12 * MIB
            assert client.get(f"{broker_url}/readyz").status_code == 200
            # and the pipeline still stores a real prediction's request
            real = client.post(f"{broker_url}/", headers=event_headers("real-1"), content=b'{"instances": [[0.5, 0.5]]}')
            assert real.status_code == 202
            wait_until(lambda: client.get(f"{logger_url}/v1/records/real-1").status_code == 200, 30, message="the real event stored")
    finally:
        stop_process(broker)
        stop_process(logger)
