"""`seismo init`: a declaration (seismo.yaml) for one model, its task read from the model where it can be."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from seismo.declaration import NAME, DeclarationError, load_declaration, render


class InitError(ValueError):
    pass


def task_of(model: Path) -> str:
    """binary, multiclass or regression, from a scikit-learn model or a metadata.json naming classes."""
    metadata = model / "metadata.json" if model.is_dir() else None
    if metadata is not None and metadata.exists():
        meta = json.loads(metadata.read_text())
        classes = meta.get("class_names") or meta.get("classes")
        if meta.get("task") in ("binary", "multiclass", "regression"):
            return str(meta["task"])
        if classes:
            return "binary" if len(classes) == 2 else "multiclass"
    if model.suffix == ".joblib":
        import joblib
        from sklearn.base import is_classifier, is_regressor

        estimator = joblib.load(model)  # the user's own artifact, as the model server will load it
        if is_classifier(estimator):
            return "binary" if len(getattr(estimator, "classes_", ())) == 2 else "multiclass"
        if is_regressor(estimator):
            return "regression"
    raise InitError(f"cannot tell the task of {model}: pass --task binary, multiclass or regression")


def feature_names_of(reference: Path) -> list[str] | None:
    """Column names of a CSV header or a parquet file, when they are names (not numbers)."""
    if reference.suffix.lower() == ".csv":
        from seismo.fit import csv_header

        return csv_header(reference)
    if reference.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(reference).names)
    return None


def write_declaration(model: Path, reference: Path, task: str | None, name: str | None, out: Path, window: int = 1000,
                      force: bool = False) -> Path:
    from seismo.fit import FitError, read_reference

    if out.exists() and not force:
        raise InitError(f"{out} exists: pass --force to overwrite it, or --out another file")
    if not model.exists():
        raise InitError(f"model artifact {model} not found")
    try:
        data = read_reference(reference)
    except FitError as exc:
        raise InitError(str(exc)) from None
    if len(data) < 2:
        raise InitError(f"{reference} holds {len(data)} rows: a reference needs many (hundreds at least)")
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", model.stem if model.is_file() else model.name).strip("-._").lower()
    if not NAME.match(name):
        raise InitError(f"{name!r} cannot be a model name: pass --name (letters, digits, '.', '_', '-')")
    base = out.resolve().parent
    relative = lambda p: os.path.relpath(p.resolve(), base)  # noqa: E731 (the file moves with its folder)
    entry: dict = {"name": name, "artifact": relative(model), "task": task or task_of(model), "reference": relative(reference)}
    names = feature_names_of(reference)
    if names is not None:
        if data.ndim != 2 or len(names) != data.shape[1]:
            raise InitError(f"{reference}: {len(names)} column names for rows of shape {list(data.shape[1:])}")
        entry["feature_names"] = names
    entry["window"] = window
    out.write_text(render([entry]))
    try:
        load_declaration(out)  # what init writes, up -f reads
    except DeclarationError as exc:
        raise InitError(f"the declaration written to {out} does not load: {exc}") from None
    return out
