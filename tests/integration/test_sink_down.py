"""The model server while its event sink is down: predictions do not wait, nothing is lost silently."""

import time

import httpx
import numpy as np
import pytest
from helpers import free_port, metric_sum, scrape, start_service, stop_process, wait_ready, wait_until

pytestmark = pytest.mark.integration
CAPACITY = 100


def timed_predictions(url: str, images: np.ndarray, n: int) -> list[float]:
    latencies = []
    with httpx.Client(timeout=30) as client:
        for i in range(n):
            body = {"instances": [images[i % len(images)].tolist()]}
            started = time.perf_counter()
            r = client.post(f"{url}/v1/models/image-classifier:predict", json=body)
            latencies.append(time.perf_counter() - started)
            assert r.status_code == 200
    return latencies


def test_sink_outage_costs_no_latency_and_the_excess_is_counted(tmp_path, example_model, example_images):
    model_port, sink_port = free_port(), free_port()
    model_url, sink_url = f"http://127.0.0.1:{model_port}", f"http://127.0.0.1:{sink_port}"
    env = {"SEISMO_MODEL_SINK_URL": sink_url + "/", "SEISMO_MODEL_LOG_QUEUE_CAPACITY": str(CAPACITY), "SEISMO_DATA_DIR": str(tmp_path)}
    model = start_service("model", model_port, env, tmp_path / "model.log")
    logger = None
    try:
        wait_ready(model_url, model, log_path=tmp_path / "model.log")
        timed_predictions(model_url, example_images, 10)  # warm-up; its 20 events wait in the queue too
        # Sink down: 50 more predictions = 100 events; the queue holds 100 in all, so 20 are dropped.
        down = timed_predictions(model_url, example_images, 50)
        metrics = scrape(model_url)
        assert metric_sum(metrics, "seismo_model_events_dropped_total", reason="queue_full") == 20
        assert metric_sum(metrics, "seismo_model_event_queue_depth") == CAPACITY
        assert metric_sum(metrics, "seismo_model_events_retried_total", reason="network") > 0

        # The sink comes back (a real logger, which takes events directly): everything held arrives.
        logger = start_service("logger", sink_port, {"SEISMO_DATA_DIR": str(tmp_path)}, tmp_path / "logger.log")
        wait_ready(sink_url, logger, log_path=tmp_path / "logger.log")
        wait_until(lambda: metric_sum(scrape(model_url), "seismo_model_events_sent_total") == CAPACITY, 60, 0.2, "held events delivered")
        up = timed_predictions(model_url, example_images, 50)
        wait_until(lambda: metric_sum(scrape(model_url), "seismo_model_events_sent_total") == CAPACITY + 100, 30, 0.2, "new events delivered")

        records = httpx.get(f"{sink_url}/v1/records", params={"limit": 1000}).json()["records"]
        complete = [r for r in records if r["request"] and r["response"]]
        assert len(complete) == 50 + 50  # the first 50 predictions fitted the queue, then the 50 sent with the sink up
        metrics = scrape(model_url)
        assert metric_sum(metrics, "seismo_model_events_dropped_total") == 20  # every event: sent or counted
        assert metric_sum(metrics, "seismo_model_events_sent_total") + 20 == 2 * 110

        # Predictions never wait for the sink (ratio, same process, same run). Waiting would cost the
        # send timeout (seconds) per prediction, a ratio in the hundreds; the bound leaves room for the
        # senders' retry work and this 2-core VM's noise (a 1.5 bound failed once at 1.52 in CI). What
        # logging costs a prediction is measured in bench/logging_overhead.py, not asserted here.
        ratio = np.median(down) / np.median(up)
        assert ratio < 3.0, f"p50 with the sink down is {ratio:.2f}x the p50 with it up: predictions wait for the sink"
    finally:
        stop_process(model)
        if logger is not None:
            stop_process(logger)
