"""Per-model metric configuration and cohort rules, read from one YAML file.

```yaml
models:
  credit-model:
    type: binary                # binary | multiclass-onehot | multiclass-numeric | regression
    threshold: 0.5              # binary: positive when the score is >= threshold
    features: [income, fico]    # names of positional request columns, for rules
    cohort_extension: cohort    # request event extension naming the cohort (default "cohort")
    holdout_extension: holdout  # request event extension flagging holdout traffic (default "holdout")
    cohorts:
      - {name: high-income, when: "income > 100000"}
      - {name: subprime, when: "fico < 600 and income <= 50000"}
    diagnosis:                  # optional: what `GET /v1/diagnosis` compares production with
      reference: ../models/credit/reference.npy   # training inputs (rows = instances); relative to this file
      inputs: features          # features: the request's first tensor; embedding: the response's embedding
      metadata: ../models/credit/metadata.json    # validation performance (accuracy/heldout_accuracy/test_accuracy/mae)
      validation: {accuracy: 0.93}                # or give it here (wins over metadata)
      tolerance: 0.05           # error above validation by more than this is a regression
      window: 200               # labelled instances in the first and the latest window
    quality:                    # optional: count values unlike the reference's (seismo.performance.quality)
      reference: ../models/credit/reference.npy   # default: diagnosis.reference when its inputs are features
      margin: 0.1               # out of range: beyond [min, max] widened by this share of the range
      max_categories: 20        # a column of at most this many whole numbers is categorical
    estimation:                 # optional: calibrate the estimates on labelled reference data (as NannyML's CBPE)
      reference: ../models/credit/validation.npz  # arrays `scores` (as the responses carry them) and `truth`
    business:                   # optional: what outcomes are worth (seismo.performance.business)
      unit: EUR                 # a label for the values
      values: [[0, -5], [-50, 20]]   # value[true class][predicted class]; binary: [[TN, FP], [FN, TP]]
      # or correct: 1 / incorrect: -3 for every cell on / off the diagonal; regression: per_unit_error: -2
```

Rules are a tiny grammar, never `eval`: `feature OP value` joined by `and`, OP one of
`> >= < <= == !=`, value a number or a quoted string. A rule on a feature the request lacks does not
match. Every instance belongs to cohort `all` too.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError, field_validator

from seismo.config_files import read_models_mapping, validation_message
from seismo.performance.business import BusinessValues, check_matrix
from seismo.performance.quality import QualitySchema, load_schema
from seismo.stats.model_metrics import Calibrator, fit_calibrator

METRIC_TYPES = ("binary", "multiclass-onehot", "multiclass-numeric", "regression")  # ModelSpec.type
ALL = "all"
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_CONDITION = re.compile(r"""^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|==|!=|>|<)\s*("[^"]*"|'[^']*'|[-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*$""")
COHORT_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
"""A cohort name: also what the model server accepts in X-Seismo-Cohort / X-Seismo-Holdout."""


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    feature: str
    op: str
    value: float | str

    def holds(self, features: dict[str, Any]) -> bool:
        if self.feature not in features:
            return False
        actual = features[self.feature]
        if isinstance(self.value, str):
            return _OPS[self.op](str(actual), self.value)
        try:
            return bool(_OPS[self.op](float(actual), self.value))
        except (TypeError, ValueError):
            return False


@dataclass(frozen=True)
class CohortRule:
    name: str
    when: str
    conditions: tuple[Condition, ...]

    def matches(self, features: dict[str, Any]) -> bool:
        return all(c.holds(features) for c in self.conditions)


def parse_rule(name: str, when: str) -> CohortRule:
    if not isinstance(when, str) or not when.strip():
        raise ConfigError(f"cohort {name!r}: 'when' must be a condition such as \"income > 100000\"")
    conditions = []
    for part in re.split(r"\s+and\s+", when.strip()):
        match = _CONDITION.match(part)
        if not match:
            raise ConfigError(f"cohort {name!r}: cannot read condition {part!r}; write FEATURE OP VALUE with OP one of {' '.join(_OPS)}")
        feature, op, raw = match.groups()
        value: float | str = raw[1:-1] if raw[0] in "\"'" else float(raw)
        conditions.append(Condition(feature, op, value))
    return CohortRule(name, when, tuple(conditions))


@dataclass(frozen=True)
class DiagnosisConfig:
    reference: Path | None = None
    inputs: str = "features"
    metadata: Path | None = None
    validation: tuple[tuple[str, float], ...] = ()
    tolerance: float = 0.05
    window: int = 200


@dataclass(frozen=True)
class ModelConfig:
    name: str
    type: str
    threshold: float = 0.5
    features: tuple[str, ...] = ()
    cohort_extension: str = "cohort"
    holdout_extension: str = "holdout"
    rules: tuple[CohortRule, ...] = field(default_factory=tuple)
    self_contained_feedback: bool = True
    """False: feedback must name a logged prediction; a client cannot score predictions it made up."""
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    business: BusinessValues | None = None
    """What outcomes are worth, when the config says."""
    calibrator: Calibrator | None = None
    """Maps the model's scores to the chance of being right (binary: of a positive), fitted on `estimation.reference`."""
    quality: QualitySchema | None = None
    """The reference's schema the data-quality counts compare each request with."""

    @property
    def classification(self) -> bool:
        return self.type != "regression"

    @property
    def has_probabilities(self) -> bool:
        """Whether responses carry scores that confidence-based estimation can use."""
        return self.type in ("binary", "multiclass-onehot")


def check_cohort_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not COHORT_NAME.match(name):
        raise ConfigError(f"{where}: cohort names are 1-64 letters, digits, '_', '.' or '-', got {name!r}")
    return name


class CohortSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    when: str


class DiagnosisSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str | None = None
    inputs: Literal["features", "embedding"] = "features"
    metadata: str | None = None
    validation: dict[Literal["accuracy", "mae"], float] = {}
    tolerance: float = Field(0.05, ge=0, le=1)
    window: int = Field(200, ge=20, le=100_000)


class QualitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str | None = None
    margin: float = Field(0.1, ge=0, le=10)
    max_categories: int = Field(20, ge=0, le=10_000)


class EstimationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str
    """An .npz with `scores` (binary: the positive probability per row; multiclass-onehot: [rows, classes]) and `truth`."""


class BusinessSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str = Field("value", min_length=1, max_length=32)
    values: list[list[float]] | None = None
    correct: float | None = None
    incorrect: float | None = None
    per_unit_error: float | None = None


class ModelSpec(BaseModel):
    """One entry of the metrics config file, as written (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["binary", "multiclass-onehot", "multiclass-numeric", "regression"]
    threshold: float = Field(0.5, ge=0, le=1, strict=True)
    features: list[StrictStr] = []
    cohort_extension: str = "cohort"
    holdout_extension: str = "holdout"
    cohorts: list[CohortSpec] = []
    self_contained_feedback: StrictBool = True
    diagnosis: DiagnosisSpec = Field(default_factory=lambda: DiagnosisSpec.model_validate({}))
    business: BusinessSpec | None = None
    estimation: EstimationSpec | None = None
    quality: QualitySpec | None = None

    @field_validator("features", "cohorts", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


def _diagnosis(spec: DiagnosisSpec, base: Path | None) -> DiagnosisConfig:
    def resolve(path: str | None) -> Path | None:
        if path is None:
            return None
        return Path(path) if base is None or Path(path).is_absolute() else base / path

    metadata = resolve(spec.metadata)
    reference = resolve(spec.reference)
    if metadata is None and reference is not None and spec.inputs == "features":
        metadata = reference.parent / "metadata.json"  # the example models keep it beside their reference
    return DiagnosisConfig(reference, spec.inputs, metadata, tuple(sorted(spec.validation.items())), spec.tolerance, spec.window)


def _business(spec: BusinessSpec | None, model_type: str, where: str) -> BusinessValues | None:
    """The business block checked against the model's type, or ConfigError naming what is wrong."""
    if spec is None:
        return None
    numbers = [v for v in (spec.correct, spec.incorrect, spec.per_unit_error) if v is not None]
    if not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"{where}: business values must be finite numbers")
    if model_type == "regression":
        if spec.per_unit_error is None or spec.values is not None or spec.correct is not None or spec.incorrect is not None:
            raise ConfigError(f"{where}: a regression model's business block takes `per_unit_error` (value per unit of absolute error) only")
        return BusinessValues(spec.unit, per_unit_error=spec.per_unit_error)
    if spec.per_unit_error is not None:
        raise ConfigError(f"{where}: `per_unit_error` is for regression models; a classifier gives `values` or `correct` and `incorrect`")
    if spec.values is not None:
        if spec.correct is not None or spec.incorrect is not None:
            raise ConfigError(f"{where}: business gives `values` or `correct`/`incorrect`, not both")
        try:
            matrix = check_matrix(spec.values)
        except ValueError as exc:
            raise ConfigError(f"{where}: business {exc}") from None
        if model_type == "binary" and len(matrix) != 2:
            raise ConfigError(f"{where}: a binary model's business values are 2x2 ([[TN, FP], [FN, TP]]), got {len(matrix)}x{len(matrix)}")
        return BusinessValues(spec.unit, matrix=matrix)
    if spec.correct is None or spec.incorrect is None:
        raise ConfigError(f"{where}: a classifier's business block gives `values` (value[true][predicted]) or both `correct` and `incorrect`")
    return BusinessValues(spec.unit, correct=spec.correct, incorrect=spec.incorrect)


def _calibrator(spec: EstimationSpec | None, model_type: str, base: Path | None, where: str) -> Calibrator | None:
    """The estimation reference's calibration map, or ConfigError naming what is wrong with the file."""
    if spec is None:
        return None
    if model_type not in ("binary", "multiclass-onehot"):
        raise ConfigError(f"{where}: estimation calibrates class probabilities; a {model_type} model's responses carry none")
    path = Path(spec.reference) if base is None or Path(spec.reference).is_absolute() else base / spec.reference
    try:
        with np.load(path, allow_pickle=False) as data:
            scores, truth = np.asarray(data["scores"], dtype=np.float64), np.asarray(data["truth"])
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: estimation reference {path}: an .npz with arrays `scores` and `truth` is needed ({exc})") from None
    if model_type == "binary":
        scores = scores.reshape(len(scores), -1)[:, -1] if scores.ndim == 2 else scores  # [rows, 1] or the positive column
        outcomes = truth.astype(np.float64) == 1
    else:
        if scores.ndim != 2 or scores.shape[1] < 2:
            raise ConfigError(f"{where}: estimation reference {path}: multiclass scores are [rows, classes], got {list(scores.shape)}")
        outcomes = scores.argmax(axis=1) == truth.astype(np.int64)
        scores = scores.max(axis=1)
    try:
        return fit_calibrator(scores, outcomes.astype(np.float64))
    except ValueError as exc:
        raise ConfigError(f"{where}: estimation reference {path}: {exc}") from None


def _quality(spec: QualitySpec | None, diagnosis: DiagnosisConfig, names: tuple[str, ...], base: Path | None,
             where: str) -> QualitySchema | None:
    if spec is None:
        return None
    if spec.reference is not None:
        path = Path(spec.reference) if base is None or Path(spec.reference).is_absolute() else base / spec.reference
    elif diagnosis.reference is not None and diagnosis.inputs == "features":
        path = diagnosis.reference
    else:
        raise ConfigError(f"{where}: quality needs a reference of the model's inputs: `quality.reference` (or `diagnosis.reference`)")
    if not Path(path).exists():  # as the diagnosis does with its reference: the server runs, without this check
        logging.getLogger(__name__).warning("%s: quality reference %s not found: data quality is not checked", where, path)
        return None
    try:
        return load_schema(path, names, spec.margin, spec.max_categories)
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise ConfigError(f"{where}: quality reference {path}: {exc}") from None


def model_config(name: str, doc: Any, base: Path | None = None) -> ModelConfig:
    where = f"model {name!r}"
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'type'")
    try:
        spec = ModelSpec.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {validation_message(exc, ModelSpec)}") from None
    rules = [parse_rule(check_cohort_name(rule.name, f"{where} cohorts[{i}]"), rule.when) for i, rule in enumerate(spec.cohorts)]
    diagnosis = _diagnosis(spec.diagnosis, base)
    return ModelConfig(name, spec.type, float(spec.threshold), tuple(spec.features), spec.cohort_extension, spec.holdout_extension,
                       tuple(rules), spec.self_contained_feedback, diagnosis,
                       _business(spec.business, spec.type, where),
                       _calibrator(spec.estimation, spec.type, base, where),
                       _quality(spec.quality, diagnosis, tuple(spec.features), base, where))


def load_models(path: Path) -> dict[str, ModelConfig]:
    """Paths in the file are relative to it; `${VAR:-default}` is expanded (`${SEISMO_EXAMPLE_ARTIFACTS}`: the examples)."""
    return {name: model_config(name, spec, Path(path).parent)
            for name, spec in read_models_mapping(path, "metrics config", ConfigError, expand_env=True).items()}
