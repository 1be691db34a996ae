"""`seismo.yaml`: one declaration of what to watch, read by `seismo up -f` (and written by `seismo init`).

```yaml
models:
  - name: iris
    artifact: iris.joblib          # served by Seismo's model server (or `endpoint:` for a KServe, Seldon or
                                   # Triton server of your own that logs its events to Seismo's broker)
    task: multiclass               # binary | multiclass | regression
    reference: iris-train.npy      # .npy, .csv (optional header row) or .parquet: rows like the model's inputs
    feature_names: [sepal_length, sepal_width, petal_length, petal_width]   # optional, for cohort rules
    watch: [drift, outliers, performance, diagnosis]   # optional: chosen from the data when absent
    window: 1000                   # drift: instances per window
    # embedding: true              # drift on the model's own embedding output (default: when its metadata.json names one)
    cohorts: [{name: long-petals, when: "petal_length > 5"}]                # optional
    business: {unit: EUR, correct: 1.0, incorrect: -3.0}                    # optional
```

Paths are relative to the file. Errors name the file, the line and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seismo.performance.config import BusinessSpec, CohortSpec

WATCHES = ("drift", "outliers", "performance", "diagnosis")
METRIC_TYPES = {"binary": "binary", "multiclass": "multiclass-onehot", "regression": "regression"}
"""The metrics server's type for each task: a model server answers class probabilities (one-hot truth welcome)."""
MAX_MODELS = 50
"""Models one declaration may list: each is three processes locally and its name a metric label value."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class DeclarationError(ValueError):
    """What is wrong with a declaration, one problem per line, each naming the file and line."""


class ModelDeclaration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    artifact: Path | None = None
    endpoint: str | None = None
    task: Literal["binary", "multiclass", "regression"]
    reference: Path
    feature_names: list[str] | None = None
    watch: list[Literal["drift", "outliers", "performance", "diagnosis"]] | None = None
    window: int = Field(1000, ge=2, le=1_000_000)
    embedding: bool | None = None
    quality: bool | None = None
    """Data-quality counts and annotations on each request against the reference's schema; by default for a model
    of at most 1,000 input values (the chart, which cannot read the reference: unless `embedding: true`)."""
    cohorts: list[CohortSpec] = []
    business: BusinessSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("a model name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _served_somewhere(self) -> ModelDeclaration:
        if (self.artifact is None) == (self.endpoint is None):
            raise ValueError("give exactly one of 'artifact' (Seismo serves it) or 'endpoint' (your server, logging to Seismo's broker)")
        return self

    @model_validator(mode="after")
    def _embedding_needs_an_artifact(self) -> ModelDeclaration:
        if self.embedding and self.artifact is None:
            raise ValueError("'embedding: true' needs the 'artifact' whose embedding output fits the reference")
        return self

    @property
    def served_here(self) -> bool:
        return self.artifact is not None

    def watches(self) -> tuple[str, ...]:
        return tuple(self.watch) if self.watch is not None else WATCHES


class Declaration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelDeclaration] = Field(min_length=1, max_length=MAX_MODELS)

    @model_validator(mode="after")
    def _unique(self) -> Declaration:
        names = [m.name for m in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"model names must be unique: {twice} declared more than once")
        return self


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (pydantic's error location), or of the nearest parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            match = node.value[key]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def load_declaration(path: Path) -> Declaration:
    """The declaration in `path`, paths resolved against its folder; DeclarationError naming each problem's line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DeclarationError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DeclarationError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        declaration = Declaration.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            field = ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in loc).replace(".[", "[") or "(top level)"
            line = _line_of(node, loc)
            lines.append(f"{path}:{line or 1}: {field}: {error['msg']}")
        raise DeclarationError("\n".join(lines)) from None
    base = path.resolve().parent
    for model in declaration.models:
        model.reference = model.reference if model.reference.is_absolute() else base / model.reference
        if model.artifact is not None and not model.artifact.is_absolute():
            model.artifact = base / model.artifact
        missing = [str(p) for p in (model.reference, model.artifact) if p is not None and not p.exists()]
        if missing:
            raise DeclarationError(f"{path}:{_line_of(node, ('models', declaration.models.index(model)))}: model {model.name!r}: "
                                   f"{', '.join(missing)} not found")
    return declaration


def render(models: list[dict[str, Any]]) -> str:
    """A declaration's YAML text (what `seismo init` writes), with a comment saying what each key does."""
    body = yaml.safe_dump({"models": models}, sort_keys=False, default_flow_style=None)
    return ("# What Seismo serves and watches: `seismo up -f seismo.yaml`. Keys: name, artifact (or endpoint), task\n"
            "# (binary | multiclass | regression), reference, feature_names, watch (drift, outliers, performance,\n"
            "# diagnosis; all when absent), window, embedding, cohorts, business. Paths are relative to this file.\n" + body)
