"""End to end with real processes: model -> broker -> logger, through failures.

300 predictions (V1 and V2 mixed) must become exactly 300 complete records (request, response and
the outlier detector's annotation) while the logger's subscriber endpoint fails its first deliveries
and the broker is killed (SIGKILL) and restarted mid-run.
"""

import asyncio

import httpx
import numpy as np
import pytest
from helpers import ThreadServer, metric_sum, scrape, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.local import LocalStack, free_ports

pytestmark = pytest.mark.integration
MODEL = "image-classifier"


class FlakyProxy:
    """Fails its first `fail_first` deliveries with 503, then forwards to the real logger."""

    def __init__(self, target: str, fail_first: int):
        self.target, self.fail_first, self.failed = target, fail_first, 0

    def app(self) -> Starlette:
        import contextlib

        client: httpx.AsyncClient | None = None

        @contextlib.asynccontextmanager
        async def lifespan(app):
            nonlocal client
            async with httpx.AsyncClient(timeout=10) as client:
                yield

        async def handle(request: Request) -> Response:
            body = await request.body()
            if self.failed < self.fail_first:
                self.failed += 1
                return Response(b"warming up", status_code=503)
            upstream = await client.post(self.target, headers={k: v for k, v in request.headers.items() if k.lower() != "host"}, content=body)
            return Response(upstream.content, status_code=upstream.status_code)

        return Starlette(routes=[Route("/", handle, methods=["POST"])], lifespan=lifespan)


def body_for(i: int, image: np.ndarray) -> tuple[str, dict]:
    if i % 2 == 0:
        return f"/v1/models/{MODEL}:predict", {"instances": [image.tolist()]}
    return f"/v2/models/{MODEL}/infer", {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": image.ravel().tolist()}]}


async def predict(url: str, images: np.ndarray, indices: range) -> list[tuple[int, str, int]]:
    async with httpx.AsyncClient(timeout=30) as client:
        sem = asyncio.Semaphore(8)

        async def one(i):
            path, body = body_for(i, images[i % len(images)])
            async with sem:
                r = await client.post(url + path, json=body)
            return i, r.headers["x-prediction-id"], r.status_code

        return await asyncio.gather(*(one(i) for i in indices))


def test_300_predictions_become_300_complete_records_through_failures(tmp_path, example_model, example_images):
    ports = free_ports()
    proxy = FlakyProxy(f"http://127.0.0.1:{ports['logger']}/", fail_first=40)
    with ThreadServer(proxy.app()) as flaky:
        # The broker's logger triggers point at the flaky proxy in front of the real logger.
        # The input detectors on too: every request is also scored for outliers (the VAE) through the broker.
        stack = LocalStack(tmp_path, ports=ports, env={"SEISMO_LOGGER_URL": flaky.url, "SEISMO_BROKER_INPUT_DETECTORS": "true"})
        stack.start()
        try:
            model_url = stack.url("model")
            results = asyncio.run(predict(model_url, example_images, range(0, 150)))
            stack.kill_service("broker")  # a crash: no graceful shutdown
            results += asyncio.run(predict(model_url, example_images, range(150, 200)))  # broker down: predictions go on
            stack.start_service("broker")
            stack.wait_ready("broker")
            results += asyncio.run(predict(model_url, example_images, range(200, 300)))
            assert [code for _, _, code in results] == [200] * 300

            logger_url = stack.url("logger")

            def complete_records():
                records = httpx.get(f"{logger_url}/v1/records", params={"model": MODEL, "limit": 1000}).json()["records"]
                done = sum(1 for r in records if r["request"] and r["response"] and {"outlier", "adversarial"} <= set(r["annotations"]))
                return records if done == 300 else None

            records = wait_until(complete_records, 90, 0.5, "300 complete records")
            ids = {pid for _, pid, _ in results}
            assert len(ids) == 300
            assert {r["prediction_id"] for r in records} == ids  # no duplicates, nothing missing, nothing extra
            for r in records:  # request, response and the outlier service's two replies, each folded in once
                assert sorted(t for t in r["event_types"] if not t.endswith(".drift")) == [
                    "io.seismo.inference.adversarial", "org.kubeflow.serving.inference.outlier",
                    "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"]
            # The 200th response filled the one embedding window (SEISMO_DRIFT_EMBEDDING_WINDOW_SIZE's default):
            # its drift reply annotates that prediction's record; the input windows (1000) are not full yet.
            wait_until(lambda: sum("drift" in r["annotations"] for r in httpx.get(
                f"{logger_url}/v1/records", params={"model": MODEL, "limit": 1000}).json()["records"]) == 1, 120, 0.5, "the embedding window's reply")
            for r in records:
                assert r["status"] == 200 and len(r["annotations"]["outlier"]["is_outlier"]) == 1
                assert len(r["annotations"]["adversarial"]["is_adversarial"]) == 1
            # held-out digits are clean traffic: about the detector's 5 % false positive rate is flagged
            assert sum(r["annotations"]["adversarial"]["is_adversarial"][0] for r in records) <= 45
            # A V2 record holds exactly the request that was sent.
            i, pid, _ = next(x for x in results if x[0] % 2 == 1)
            record = httpx.get(f"{logger_url}/v1/records/{pid}").json()
            assert record["request"] == body_for(i, example_images[i % len(example_images)])[1]
            assert record["response"]["id"] == pid

            assert proxy.failed == 40
            model_metrics = scrape(model_url)
            assert metric_sum(model_metrics, "seismo_model_events_dropped_total") == 0
            assert metric_sum(model_metrics, "seismo_model_events_retried_total", reason="network") > 0  # while the broker was down
            assert metric_sum(model_metrics, "seismo_model_events_sent_total") == 600
            assert metric_sum(scrape(stack.url("broker")), "seismo_broker_dead_letters_total") == 0

            # 20 PGD images (eps 0.05, TensorFlow gradients on the served classifier): the records say so
            import keras

            from seismo.demo.attacks import pgd

            classifier = keras.models.load_model(example_model / "model.keras")
            clean = example_images[:20]
            attacked = pgd(classifier, clean, classifier.predict(clean, verbose=0).argmax(axis=1), 0.05, steps=10)
            attack_ids = {pid for _, pid, _ in asyncio.run(predict(model_url, attacked, range(20)))}

            def attack_records():
                records = [httpx.get(f"{logger_url}/v1/records/{pid}").json() for pid in attack_ids]
                return records if all("adversarial" in r.get("annotations", {}) for r in records) else None

            flagged = sum(r["annotations"]["adversarial"]["is_adversarial"][0] for r in wait_until(attack_records, 60, 0.5, "attack records"))
            assert flagged >= 18
            assert metric_sum(scrape(stack.url("outlier")), "seismo_adversarial_instances_total", outcome="adversarial") >= flagged
        finally:
            stack.stop()
