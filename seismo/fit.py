"""`seismo fit drift|outlier|embedding`: fit a detector on a reference file and save it for the services."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


class FitError(ValueError):
    pass


def step(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV's first row when it is a header (not all numbers), else None."""
    with path.open() as fh:
        first = fh.readline().strip().split(",")
    try:
        [float(v) for v in first]
        return None
    except ValueError:
        return [v.strip().strip('"') for v in first]


def read_reference(path: Path) -> np.ndarray:
    """A numeric array from .npy, .csv (an optional header row is skipped) or .parquet (numeric columns)."""
    if not path.exists():
        raise FitError(f"reference file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:  # empty, truncated, pickled objects, not an .npy at all
            raise FitError(f"{path}: not a readable .npy array: {exc}") from None
    if suffix == ".csv":
        try:
            return np.loadtxt(path, delimiter=",", skiprows=1 if csv_header(path) else 0, ndmin=2)
        except ValueError as exc:
            raise FitError(f"{path}: not a numeric CSV: {exc}") from None
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise FitError("reading parquet needs pyarrow: pip install 'seismo[parquet]'") from None
        table = pq.read_table(path)
        try:
            return np.column_stack([table.column(i).to_numpy().astype(np.float64) for i in range(table.num_columns)])
        except (ValueError, TypeError) as exc:
            raise FitError(f"{path}: every column must be numeric: {exc}") from None
    raise FitError(f"unsupported reference format {suffix!r}: use .npy, .csv or .parquet")


def make_preprocess(spec: str, seed: int):
    from seismo.detect import PCA, ModelLayer, UntrainedAutoencoder

    kind, _, arg = spec.partition(":")
    if kind == "none":
        return None
    if kind == "pca":
        return PCA(int(arg or 32))
    if kind == "uae":
        return UntrainedAutoencoder(int(arg or 32), seed=seed)
    if kind == "layer":
        model_path, _, layer = arg.rpartition(":")
        return ModelLayer(model_path, int(layer) if layer.lstrip("-").isdigit() else layer)
    raise FitError(f"unknown preprocessing {spec!r}: use none, pca:N, uae:N or layer:MODEL_PATH:LAYER")


def make_detector(what: str, method: str | None, preprocess, p_val: float, correction: str, threshold_percentile: float, seed: int,
                  version: str | None = None, calibration_fraction: float = 0.3, effect_floor: float | None = None):
    from seismo import detect
    from seismo.detect.effect import DEFAULT_EFFECT_FLOOR
    from seismo.detect.embedding import METHODS

    floor = DEFAULT_EFFECT_FLOOR if effect_floor is None else effect_floor
    choices: dict[str, Any]
    if what == "embedding":
        choices = {m: (lambda m=m: detect.EmbeddingDrift(method=m, p_val=p_val, version=version, seed=seed, effect_floor=floor))
                   for m in METHODS}
        method = method or "euclidean"
    elif what == "drift":
        choices = {
            "ks": lambda: detect.KSDrift(p_val=p_val, correction=correction, preprocess=preprocess, effect_floor=floor),
            "chi2": lambda: detect.ChiSquareDrift(p_val=p_val, correction=correction, preprocess=preprocess, effect_floor=floor),
            "mmd": lambda: detect.MMDDrift(p_val=p_val, seed=seed, preprocess=preprocess, effect_floor=floor),
            "classifier": lambda: detect.ClassifierDrift(p_val=p_val, seed=seed, preprocess=preprocess, effect_floor=floor),
            "prediction": lambda: detect.PredictionDrift(p_val=p_val, preprocess=preprocess),
        }
        method = method or "ks"
    else:
        choices = {
            "mahalanobis": lambda: detect.MahalanobisOutlier(threshold_percentile, preprocess=preprocess, calibration_fraction=calibration_fraction),
            "iforest": lambda: detect.IsolationForestOutlier(threshold_percentile, seed=seed, preprocess=preprocess,
                                                             calibration_fraction=calibration_fraction),
            "vae": lambda: detect.VAEOutlier(threshold_percentile, seed=seed, preprocess=preprocess, calibration_fraction=calibration_fraction),
        }
        method = method or "mahalanobis"
    if method not in choices:
        raise FitError(f"unknown {what} method {method!r}; choose from {', '.join(choices)}")
    try:
        return choices[method]()
    except ValueError as exc:
        raise FitError(str(exc)) from None


MAX_STORE_INSTANCES = 100_000
MIN_REFERENCE_ROWS = 200
"""Below this many instances (or ten per feature), `fit` warns that the reference is too small to trust."""


def read_from_store(model: str, since: float | None, until: float | None, sqlite: Path | None = None,
                    max_instances: int = MAX_STORE_INSTANCES, store: str | None = None) -> tuple[np.ndarray, dict]:
    """Stored production requests of `model` in [since, until) as reference data, and where they came from.

    At most `max_instances` (the oldest): a reference needs thousands, not the whole store in memory."""
    from seismo.protocol.instances import Rejection
    from seismo.replay import instances_of_record
    from seismo.store.base import stored_records
    from seismo.store.settings import RecordStoreSettings
    from seismo.times import now_rfc3339, rfc3339

    settings = RecordStoreSettings.named(store, sqlite)
    try:
        opened = settings.open_existing_store()
    except FileNotFoundError as exc:
        raise FitError(str(exc)) from None
    rows: list[np.ndarray] = []
    skipped: dict[str, int] = {}
    versions: set[str] = set()
    first = last = None
    records = kept = 0
    shape = None
    try:
        for record in stored_records(opened, model, since, until):
            records += 1
            try:
                array = instances_of_record(record, model, shape)
            except Rejection as exc:
                skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
                continue
            shape = tuple(array.shape[1:])  # the first usable record fixes the shape; others must match
            rows.append(array)
            kept += len(array)
            versions.add(record.model_version or "unknown")
            first = first or record
            last = record
            if kept >= max_instances:
                step(f"      stopped at {max_instances} instances (the oldest in the range); narrow --since/--until to pick others")
                break
    finally:
        opened.close()
    if not rows or first is None or last is None:
        raise FitError(f"no usable stored requests of model {model!r} in {settings.describe_store()} for that time range "
                       f"({records} records, skipped: {skipped or 'none'})")
    data = np.concatenate(rows)[:max_instances]
    provenance = {
        "source": "store", "store": settings.describe_store(), "model": model, "model_versions": sorted(versions),
        "since": rfc3339(since) if since is not None else None, "until": rfc3339(until) if until is not None else None,
        "records": records, "instances": int(len(data)), "skipped": skipped,
        "first_prediction_id": first.prediction_id, "last_prediction_id": last.prediction_id,
        "first_created": rfc3339(first.created_at), "last_created": rfc3339(last.created_at), "fitted_at": now_rfc3339(),
    }
    return data, provenance


def fit_and_save(what: str, reference: Path | None, out: Path, method: str | None = None, preprocess: str = "none", p_val: float = 0.05,
                 correction: str = "bonferroni", threshold_percentile: float = 95.0, seed: int = 0, model: Path | None = None,
                 version: str | None = None, from_store: dict | None = None, calibration: Path | None = None,
                 calibration_fraction: float = 0.3, effect_floor: float | None = None):
    import os

    from seismo.detect import DetectorInputError, save_detector

    os.environ.setdefault("SEISMO_PROGRESS", "1")
    started = time.perf_counter()
    provenance = None
    if from_store is not None:
        if what == "embedding":
            raise FitError("--from-store fits drift and outlier detectors (embedding references come from a model: --model)")
        step(f"[1/3] reading stored requests of {from_store['model']!r}")  # the next line names the store
        data, provenance = read_from_store(from_store["model"], from_store.get("since"), from_store.get("until"), from_store.get("sqlite"),
                                             store=from_store.get("store"))
        step(f"      {provenance['records']} records from {provenance['store']}, model versions {provenance['model_versions']}")
    else:
        if reference is None:
            raise FitError("pass --reference FILE, or --from-store --model NAME")
        step(f"[1/3] reading {reference}")
        data = read_reference(Path(reference))
        provenance = {"source": "file", "reference": str(reference), "instances": int(len(data))}
    step(f"      {len(data)} instances of shape {list(data.shape[1:])}")
    features = int(np.prod(data.shape[1:])) if data.ndim > 1 else 1
    if what != "embedding" and len(data) < max(MIN_REFERENCE_ROWS, 10 * min(features, 1000)):
        step(f"      warning: {len(data)} instances is a small reference for {features} features (fewer than "
             f"{max(MIN_REFERENCE_ROWS, 10 * min(features, 1000))}): thresholds and p-values fitted on it will be noisy")
    if what == "embedding" and model is not None:
        from seismo.embeddings.extract import embed

        step(f"      embedding them with {model} (use inputs it did not train on: it embeds its own training inputs closer "
             "together, and clean production traffic would then look drifted)")
        try:
            data, model_version = embed(Path(model), data)
        except (ValueError, FileNotFoundError) as exc:
            raise FitError(str(exc)) from None
        version = version or model_version
    if what == "embedding" and version is None:
        raise FitError("an embedding detector records its reference's version: pass --embedding-version <model>/<space>@X.Y.Z "
                       "(or --model, whose metadata names it)")
    if calibration is not None and what != "outlier":
        raise FitError("--calibration sets an outlier detector's threshold; drift detectors test against the reference itself")
    held_out = read_reference(Path(calibration)) if calibration is not None else None
    try:
        detector = make_detector(what, method, make_preprocess(preprocess, seed), p_val, correction, threshold_percentile, seed, version,
                                 calibration_fraction, effect_floor)
    except ValueError as exc:
        raise FitError(str(exc)) from None
    step(f"[2/3] fitting {detector.kind}" + (f" with {preprocess} preprocessing" if preprocess != "none" else ""))
    try:
        detector.fit(data) if held_out is None else detector.fit(data, held_out)
    except DetectorInputError as exc:
        raise FitError(f"{'reference or calibration' if held_out is not None else 'reference'} data: {exc}") from None
    report = detector.calibration
    if report is not None:
        measured = report["measured_rate"]
        step(f"      threshold {detector.threshold:.6g}: {report['method']} from {report['threshold_rows']} rows ({report['source']})"
             + (f"; {measured:.1%} false positives measured on {report['check_rows']} more (nominal {report['nominal_rate']:.0%})"
                if measured is not None else ""))
    step(f"[3/3] saving to {out}")
    save_detector(detector, out, provenance)
    serve = (f"SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH={out} seismo serve drift" if what == "embedding"
             else f"seismo serve {what} --detector-path {out}")
    step(f"done in {time.perf_counter() - started:.1f}s: serve it with `{serve}`")
    return detector
