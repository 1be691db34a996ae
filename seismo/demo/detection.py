"""The demo's detection scenario: clean traffic, corrupted traffic (4 corruptions x 5 severities), outliers.

Each scenario sends exactly one drift window of predictions through the running stack, then waits
until the drift window's result is in the logger's drift log and the outlier detector has scored every
instance, so each table row shows what the services themselves decided for that traffic.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from seismo.demo.corruptions import CORRUPTIONS, SEVERITIES, corrupt, image_issue
from seismo.probes import scrape_samples, sum_by, wait_until

MODEL = "image-classifier"


def _outlier_counts(outlier_url: str) -> tuple[float, float]:
    by_outcome = sum_by(scrape_samples(outlier_url), "seismo_outlier_instances_total", "outcome")
    return by_outcome.get("outlier", 0.0), by_outcome.get("inlier", 0.0)


def _drift_windows(logger_url: str, model: str = MODEL) -> list[dict]:
    return httpx.get(f"{logger_url}/v1/drift", params={"model": model}, timeout=10).json()["windows"]


def _embedding_windows(logger_url: str) -> list[dict]:
    """The embedding drift windows (the drift service keeps them apart, under `<model>/embedding`)."""
    return _drift_windows(logger_url, f"{MODEL}/embedding")


def _fill(drift_url: str, metric: str) -> int:
    return int(sum(v for (name, _), v in scrape_samples(drift_url).items() if name == metric))


def scenarios(images: np.ndarray, window: int, rng: np.random.Generator):
    """(label, severity, images) per scenario; clean first, outliers last."""
    # Without replacement: a window that repeats images makes any two-sample test over-reject.
    pick = lambda: images[rng.choice(len(images), window, replace=window > len(images))]  # noqa: E731
    yield "clean", "-", pick()
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            yield name, str(severity), corrupt(pick(), name, severity, seed=int(rng.integers(1 << 30)))
    # The embeddings document's most common issue: objects the model never saw (here two digits in one image).
    yield "new objects (two digits)", "3", image_issue(pick(), "new_objects", 3, seed=int(rng.integers(1 << 30)))
    noise = rng.uniform(0, 1, size=(window // 2, *images.shape[1:])).astype(np.float32)
    inverted = 1.0 - pick()[: window - len(noise)]
    yield "outliers (noise, inverted)", "-", np.concatenate([noise, inverted])


def run_detection_scenario(stack, images: np.ndarray, window: int, say, send_predictions) -> list[tuple]:
    """Send every scenario through the stack; returns and prints the table rows."""
    rng = np.random.default_rng(0)
    logger_url, outlier_url = stack.url("logger"), stack.url("outlier")
    # Align with the drift service's windows: fill the window left open by earlier traffic with clean images.

    drift_url = stack.url("drift")
    pending = _fill(drift_url, "seismo_drift_window_fill")
    if pending:
        asyncio.run(send_predictions(stack.url("model"), images[rng.choice(len(images), window - pending, replace=False)], quiet=True))
        _wait(lambda: len(_drift_windows(logger_url)) >= 1, 120, "the first drift window")
    # Embedding windows (the response events' embeddings) line up with the input windows when both are empty.
    embeddings = "seismo_embedding_drift_window_fill" in {name for name, _ in scrape_samples(drift_url)}
    if embeddings and _fill(drift_url, "seismo_embedding_drift_window_fill") != 0:
        say("  (embedding windows are not aligned with the input windows here: their columns are left out)")
        embeddings = False
    rows = []
    say(f"  {'traffic':28} {'severity':>8} {'drift':>6} {'p-value':>10} {'outlier rate':>13}"
        + (f" {'embedding drift':>16} {'distance/threshold':>19}" if embeddings else ""))
    for label, severity, batch in scenarios(images, window, rng):
        windows_before, embedding_before = len(_drift_windows(logger_url)), len(_embedding_windows(logger_url)) if embeddings else 0
        out_before, in_before = _outlier_counts(outlier_url)
        asyncio.run(send_predictions(stack.url("model"), batch, quiet=True))
        _wait(lambda before=windows_before: len(_drift_windows(logger_url)) > before, 180, "the scenario's drift window")
        _wait(lambda seen=out_before + in_before, n=len(batch): sum(_outlier_counts(outlier_url)) - seen >= n, 120, "the outlier scores")
        result = _drift_windows(logger_url)[-1]
        outliers = _outlier_counts(outlier_url)[0] - out_before
        row: tuple = (label, severity, "yes" if result["is_drift"] else "no", result["p_val"], outliers / len(batch))
        line = f"  {row[0]:28} {row[1]:>8} {row[2]:>6} {row[3]:>10.2e} {row[4]:>12.0%}"
        if embeddings:
            _wait(lambda before=embedding_before: len(_embedding_windows(logger_url)) > before, 180, "the scenario's embedding window")
            emb = _embedding_windows(logger_url)[-1]
            ratio = emb["euclidean_distance"] / emb["distance_threshold"] if emb.get("distance_threshold") else float("nan")
            row = (*row, "yes" if emb["is_drift"] else "no", ratio)
            line += f" {row[5]:>16} {ratio:>19.2f}"
        rows.append(row)
        say(line)
    return rows


def _wait(predicate, timeout: float, what: str) -> None:
    wait_until(predicate, timeout, 0.2, f"{what}: the detectors did not report in time; see the services' logs")
