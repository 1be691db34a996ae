"""`seismo demo`: start the local stack, send predictions, show what the pipeline logged, stop.

It uses the example classifier's held-out images (shipped in its artifact folder), sends them through
both protocols (KServe V1 and OIP V2) with a few concurrent clients, adds one malformed request to
show that errors are logged too, waits until the logger has stored every prediction, and prints
counts per event type, one stored record, and where each service's metrics are.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from seismo.demo.clients import for_each_concurrently
from seismo.local import LocalStack, PortInUse, StartupError, configured_ports, table
from seismo.probes import free_port, scrape_samples, sum_by
from seismo.services.common import check_port_free
from seismo.topology import EXAMPLE_MODEL

MODEL = "image-classifier"


def say(text: str = "") -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:  # the reader went away (`| head`); keep going so everything stops cleanly
        pass


def progress(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    end = "\n" if done >= total else ""
    sys.stdout.write(f"\r  {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
    sys.stdout.flush()


def pick_ports() -> dict[str, int]:
    """The default ports when free (so the printed URLs are the documented ones), else free ones."""
    ports = {}
    for name, port in configured_ports().items():
        try:
            check_port_free("127.0.0.1", port, name)
            ports[name] = port
        except PortInUse:
            ports[name] = free_port()
            say(f"  port {port} ({name}) is in use; the demo uses {ports[name]} instead")
    return ports


def v1_body(image: np.ndarray) -> dict:
    return {"instances": [image.tolist()]}


def v2_body(image: np.ndarray) -> dict:
    return {"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, *image.shape], "data": image.ravel().tolist()}]}


async def send_predictions(model_url: str, images: np.ndarray, concurrency: int = 8, quiet: bool = False) -> tuple[list[str], dict[str, int]]:
    ids: list[str] = []
    codes: dict[str, int] = {}
    done = 0

    async def send(client: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        if i % 2 == 0:
            r = await client.post(f"{model_url}/v1/models/{MODEL}:predict", json=v1_body(images[i]))
        else:
            r = await client.post(f"{model_url}/v2/models/{MODEL}/infer", json=v2_body(images[i]))
        key = f"{'v1' if i % 2 == 0 else 'v2'} {r.status_code}"
        codes[key] = codes.get(key, 0) + 1
        ids.append(r.headers["x-prediction-id"])
        done += 1
        if not quiet and (done % 10 == 0 or done == len(images)):
            progress("predictions", done, len(images))

    await for_each_concurrently(len(images), send, concurrency)
    return ids, codes


def wait_for_records(logger_url: str, expected: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    complete = 0
    while time.monotonic() < deadline:
        records = httpx.get(f"{logger_url}/v1/records", params={"model": MODEL, "limit": 1000}, timeout=10).json()["records"]
        complete = sum(1 for r in records if r["request"] is not None and r["response"] is not None)
        progress("records stored", min(complete, expected), expected)
        if complete >= expected:
            return complete
        time.sleep(0.5)
    say()
    return complete


def summarize_record(record: dict) -> dict:
    """The record with its image payload shortened to its shape, so it fits a terminal."""
    shown = dict(record)
    request = record.get("request")
    if isinstance(request, dict) and "instances" in request:
        shown["request"] = {"instances": f"<array shape {list(np.asarray(request['instances']).shape)}>"}
    elif isinstance(request, dict) and "inputs" in request:
        shown["request"] = {"inputs": [{**t, "data": f"<{len(t['data'])} values>"} for t in request["inputs"]]}
    return shown


def _embedding_report(stack: LocalStack, demo_dir: Path) -> bool:
    """Write the embeddings report of everything the demo sent (`seismo report embeddings`)."""
    from seismo.embeddings.report import write_report
    from seismo.topology import EXAMPLE_DETECTORS

    say("\nembeddings report (seismo report embeddings --model image-classifier):")
    try:
        out = write_report(demo_dir / "embeddings-report.html", stack.url("logger"), MODEL, EXAMPLE_DETECTORS / "embedding", limit=500,
                           metrics_url=stack.url("metrics"))
    except (ValueError, OSError) as exc:
        say(f"  could not write it: {exc}")
        return False
    say(f"  open {out.resolve()} in a browser (self-contained: no network needed)")
    return True


def run_demo(data_dir: Path, predictions: int = 300, window: int = 300, detection: bool = True, cascade_per_phase: int = 150) -> int:
    reference = EXAMPLE_MODEL / "reference.npy"
    if not reference.exists():
        say(f"seismo demo: the example model is missing ({EXAMPLE_MODEL}); run `make demo` or `make model` first")
        return 2
    images = np.load(reference)
    images = images[np.arange(predictions) % len(images)]
    demo_dir = data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)

    say("== Seismo demo: logged inference, drift, outliers, performance from ground truth and explanations, end to end")
    say(f"starting the services (state in {demo_dir}; drift windows of {window} instances) ...")
    stack = LocalStack(demo_dir, ports=pick_ports(), env={"SEISMO_DRIFT_WINDOW_SIZE": str(window),
                                                          "SEISMO_DRIFT_EMBEDDING_WINDOW_SIZE": str(window)})
    started = time.perf_counter()
    try:
        stack.start(progress=lambda name: say(f"  {name} ready after {time.perf_counter() - started:.1f}s"))
    except (PortInUse, StartupError) as exc:
        say(f"seismo demo: {exc}")
        return 2
    try:
        say("\n" + table(stack) + "\n")
        say(f"sending {predictions} predictions (V1 and V2 alternating, 8 concurrent clients) ...")
        t0 = time.perf_counter()
        ids, codes = asyncio.run(send_predictions(stack.url("model"), images))
        seconds = time.perf_counter() - t0
        say(f"  answered: {codes} in {seconds:.1f}s ({predictions / seconds:.0f}/s)")

        bad = httpx.post(f"{stack.url('model')}/v1/models/{MODEL}:predict", json={"instances": [[1.0, 2.0]]})
        say(f"one malformed request (wrong shape) -> {bad.status_code} {bad.json()['error']}")
        say("  (its request and its error response are logged too, with status 400)")

        say("waiting until the logger has stored every prediction ...")
        complete = wait_for_records(stack.url("logger"), predictions + 1)
        logger_metrics = scrape_samples(stack.url("logger"))
        broker_metrics = scrape_samples(stack.url("broker"))
        model_metrics = scrape_samples(stack.url("model"))

        say("\nevents per type")
        received = sum_by(broker_metrics, "seismo_broker_events_received_total", "type")
        stored = sum_by(logger_metrics, "seismo_logger_events_stored_total", "type")
        dupes = sum_by(logger_metrics, "seismo_logger_events_duplicate_total", "type")
        say(f"  {'type':45} {'broker received':>16} {'logger stored':>14} {'duplicates':>11}")
        for event_type in sorted(set(received) | set(stored)):
            say(f"  {event_type:45} {received.get(event_type, 0):>16.0f} {stored.get(event_type, 0):>14.0f} {dupes.get(event_type, 0):>11.0f}")
        sent = sum(sum_by(model_metrics, "seismo_model_events_sent_total", "type").values())
        dropped = sum(sum_by(model_metrics, "seismo_model_events_dropped_total", "reason").values())
        say(f"  model server: {sent:.0f} events sent to the broker, {dropped:.0f} dropped")
        say(f"  complete records (request + response): {complete} of {predictions + 1}")

        say("\none stored record (GET /v1/records/{id}):")
        record = httpx.get(f"{stack.url('logger')}/v1/records/{ids[1]}").json()
        for key, value in summarize_record(record).items():
            say(f"  {key:22} {json.dumps(value)[:160]}")
        error_record = httpx.get(f"{stack.url('logger')}/v1/records/{bad.headers['x-prediction-id']}").json()
        say(f"\nthe malformed request's record: status {error_record['status']}, response {error_record['response']}")

        if detection:
            from seismo.demo.detection import run_detection_scenario

            say(f"\ndetection: one drift window ({window} predictions) of each kind of traffic, read from the classifier's own "
                "penultimate layer (no second network)")
            run_detection_scenario(stack, images, window, say, send_predictions)
            say("  (drift: the window's centroid distance against the reference's fluctuation; flagged: the share of instances whose")
            say("   embedding lies far from every class, the check that also catches adversarial inputs)")
            say("  (on these 4x-upscaled digits, pixelate at severity 4 (32 -> 24 pixels) leaves every image unchanged)")
            report_ok = _embedding_report(stack, demo_dir)

        say("\nground truth: predictions in two cohorts (web, mobile), then feedback by prediction id; accuracy per phase")
        from seismo.demo.feedback import run_feedback_scenario

        feedback_ok = run_feedback_scenario(stack, images, min(100, len(images)), say)

        say("\ncascade: scan-gain estimates each scan's gain, the image classifier reads the corrected scan (X-Seismo-Parent-Id)")
        from seismo.demo.cascade import run_cascade_scenario

        cascade_ok = run_cascade_scenario(stack, np.load(reference), np.load(EXAMPLE_MODEL / "reference_labels.npy"), demo_dir,
                                          cascade_per_phase, say)

        say("\nexplanations (the explainer calls the model servers as black boxes):")
        from seismo.demo.explain import run_explain_scenario

        explain_ok = run_explain_scenario(stack, images, demo_dir, say)

        say("\nmetrics (Prometheus text format):")
        for name in stack.processes:
            say(f"  {name:7} {stack.url(name)}/metrics")
        ok = complete >= predictions + 1 and feedback_ok and explain_ok and (report_ok if detection else True)
        say("\n" + ("demo finished: every prediction was logged, every feedback joined, both explanations made." if ok
                    else "demo finished, but some records or feedback joins are missing (see the logs above)."))
        if not cascade_ok:
            say("the cascade's diagnosis did not name scan-gain's upgrade (see above).")
        ok = ok and cascade_ok
        return 0 if ok else 1
    finally:
        stack.stop()  # before any print: a closed stdout (`seismo demo | head`) must not orphan the services
        say("services stopped.")
