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


def _outlier_counts(outlier_url: str, metric: str = "seismo_outlier_instances_total", flagged: str = "outlier") -> tuple[float, float]:
    """(flagged, not flagged) instances so far: the pixel detector's outcomes, or the embedding check's
    (`seismo_adversarial_instances_total`, outcomes adversarial / clean)."""
    by_outcome = sum_by(scrape_samples(outlier_url), metric, "outcome")
    return by_outcome.get(flagged, 0.0), sum(v for k, v in by_outcome.items() if k != flagged)


def _embedding_flags(outlier_url: str) -> tuple[float, float]:
    return _outlier_counts(outlier_url, "seismo_adversarial_instances_total", "adversarial")


def _input_detectors_on(broker_url: str) -> bool:
    """Whether the broker sends request images to the pixel detectors (SEISMO_BROKER_INPUT_DETECTORS)."""
    triggers = httpx.get(f"{broker_url}/v1/triggers", timeout=10).json()["triggers"]
    return any(t["name"] == "drift-kserve-request" for t in triggers)


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
    """Send every scenario through the stack; returns and prints the table rows. The default detectors read
    the classifier's embedding (drift: centroid distance; per instance: the class-Mahalanobis check); with
    the pixel detectors on (`seismo up --input-detectors`) their columns are added."""
    rng = np.random.default_rng(0)
    logger_url, outlier_url, drift_url = stack.url("logger"), stack.url("outlier"), stack.url("drift")
    pixels = _input_detectors_on(stack.url("broker"))
    # Align with the drift service's windows: fill the windows left open by earlier traffic with clean images.
    pending = _fill(drift_url, "seismo_embedding_drift_window_fill")
    if pending:
        before = len(_embedding_windows(logger_url))
        asyncio.run(send_predictions(stack.url("model"), images[rng.choice(len(images), window - pending, replace=False)], quiet=True))
        _wait(lambda: len(_embedding_windows(logger_url)) > before, 120, "the first embedding window")
    if pixels and _fill(drift_url, "seismo_drift_window_fill") != 0:
        say("  (pixel windows are not aligned with the embedding windows here: their columns are left out)")
        pixels = False
    rows = []
    say(f"  {'traffic':28} {'severity':>8} {'drift':>6} {'distance/threshold':>19} {'flagged':>8}"
        + (f" {'pixel drift':>12} {'p-value':>10} {'VAE outliers':>13}" if pixels else ""))
    for label, severity, batch in scenarios(images, window, rng):
        embedding_before, pixel_before = len(_embedding_windows(logger_url)), len(_drift_windows(logger_url)) if pixels else 0
        flags_before, outliers_before = _embedding_flags(outlier_url), _outlier_counts(outlier_url) if pixels else (0.0, 0.0)
        asyncio.run(send_predictions(stack.url("model"), batch, quiet=True))
        _wait(lambda before=embedding_before: len(_embedding_windows(logger_url)) > before, 180, "the scenario's embedding window")
        _wait(lambda seen=sum(flags_before), n=len(batch): sum(_embedding_flags(outlier_url)) - seen >= n, 120, "the embedding checks")
        emb = _embedding_windows(logger_url)[-1]
        ratio = emb["euclidean_distance"] / emb["distance_threshold"] if emb.get("distance_threshold") else float("nan")
        flagged = (_embedding_flags(outlier_url)[0] - flags_before[0]) / len(batch)
        row: tuple = (label, severity, "yes" if emb["is_drift"] else "no", ratio, flagged)
        line = f"  {row[0]:28} {row[1]:>8} {row[2]:>6} {ratio:>19.2f} {flagged:>8.0%}"
        if pixels:
            _wait(lambda before=pixel_before: len(_drift_windows(logger_url)) > before, 180, "the scenario's pixel drift window")
            _wait(lambda seen=sum(outliers_before), n=len(batch): sum(_outlier_counts(outlier_url)) - seen >= n, 120, "the VAE scores")
            result = _drift_windows(logger_url)[-1]
            outliers = (_outlier_counts(outlier_url)[0] - outliers_before[0]) / len(batch)
            row = (*row, "yes" if result["is_drift"] else "no", result["p_val"], outliers)
            line += f" {row[5]:>12} {row[6]:>10.2e} {outliers:>12.0%}"
        rows.append(row)
        say(line)
    return rows


def _wait(predicate, timeout: float, what: str) -> None:
    wait_until(predicate, timeout, 0.2, f"{what}: the detectors did not report in time; see the services' logs")
