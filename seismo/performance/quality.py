"""Data quality of well-formed requests, against the schema of a model's reference inputs.

The model server refuses malformed requests; a well-formed one can still carry values the model never
saw. Per feature, from the reference (rows = instances):

- `missing`: NaN (JSON null) in a feature;
- `out_of_range`: a numeric value outside the reference's [min, max] widened by `margin` of its range;
- `unseen_category`: a categorical feature (at most `max_categories` distinct whole numbers in the
  reference) taking a value the reference never had;
- `shape`: an instance with another number of features than the reference's (counted once, feature `*`);
- `type`: a request whose values are not numbers (counted once per instance, feature `*`).

Feature labels are the config's `features` names, else the column index; only the reference's columns
(at most MAX_LABELLED_FEATURES, the rest as `other`) ever become labels, never a client's value.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ISSUES = ("missing", "out_of_range", "unseen_category", "shape", "type")
MAX_LABELLED_FEATURES = 100


@dataclass(frozen=True)
class QualitySchema:
    low: np.ndarray  # [features] the lowest value accepted (min - margin x range)
    high: np.ndarray
    categories: tuple[np.ndarray | None, ...]  # per feature: the reference's values when categorical, else None
    labels: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return len(self.low)

    def check(self, rows: np.ndarray | None, n_instances: int) -> Counter[tuple[str, str]]:
        """(feature label, issue) -> count for one request's instances; `rows` None when the values are not numbers."""
        found: Counter[tuple[str, str]] = Counter()
        if rows is None:
            found["*", "type"] += n_instances
            return found
        rows = rows.reshape(len(rows), -1)
        if rows.shape[1] != self.n_features:
            found["*", "shape"] += len(rows)
            return found
        missing = np.isnan(rows)
        with np.errstate(invalid="ignore"):
            outside = ~missing & ((rows < self.low) | (rows > self.high))
        for j, values in enumerate(self.categories):
            if values is not None:
                unseen = ~missing[:, j] & ~np.isin(rows[:, j], values)
                outside[:, j] = False  # a category is either known or unseen, not out of range
                if unseen.any():
                    found[self.labels[j], "unseen_category"] += int(unseen.sum())
        for issue, flags in (("missing", missing), ("out_of_range", outside)):
            for column in np.flatnonzero(flags.any(axis=0)).tolist():
                found[self.labels[column], issue] += int(flags[:, column].sum())
        return found


def schema_from_reference(reference: np.ndarray, names: tuple[str, ...] = (), margin: float = 0.1,
                          max_categories: int = 20) -> QualitySchema:
    """The schema of reference inputs [rows, ...] (flattened per row); NaN in the reference is ignored."""
    x = np.asarray(reference, dtype=np.float64)
    x = x.reshape(len(x), -1)
    if len(x) == 0 or not np.isfinite(x).any(axis=0).all():
        raise ValueError(f"a quality reference needs rows with a finite value in every column, got shape {list(x.shape)}")
    low, high = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    spread = (high - low) * margin
    categories = []
    for j in range(x.shape[1]):
        values = np.unique(x[~np.isnan(x[:, j]), j])
        whole = bool(np.all(values == np.round(values)))
        categories.append(values if whole and len(values) <= max_categories and len(values) < len(x) else None)
    labels = tuple((names[j] if j < len(names) else str(j)) if j < MAX_LABELLED_FEATURES else "other" for j in range(x.shape[1]))
    return QualitySchema(low - spread, high + spread, tuple(categories), labels)


def read_reference_array(path: Path) -> np.ndarray:
    """A reference file's rows: .npy, or .npz with `x_ref` (else its first array); what the diagnosis reads too."""
    if path.suffix == ".npz":
        with np.load(path) as archive:
            key = "x_ref" if "x_ref" in archive.files else archive.files[0]
            return np.asarray(archive[key])
    return np.asarray(np.load(path, allow_pickle=False))


def load_schema(path: Path, names: tuple[str, ...] = (), margin: float = 0.1, max_categories: int = 20) -> QualitySchema:
    """The schema of a reference file (read_reference_array)."""
    return schema_from_reference(read_reference_array(Path(path)), names, margin, max_categories)


__all__ = ["ISSUES", "MAX_LABELLED_FEATURES", "QualitySchema", "load_schema", "read_reference_array", "schema_from_reference"]
