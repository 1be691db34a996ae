"""Reading Seismo's config files: a service's `models:` YAML (the metrics server's and the explainer's
share the shape), pydantic's validation errors as one line naming the keys, and choice fields that
fail naming their choices (settings and files alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError

from seismo import topology


def read_models_mapping(path: Path, what: str, error: type[Exception], expand_env: bool = False) -> dict[str, Any]:
    """The file's non-empty `models` mapping, name -> spec; `error` naming the file otherwise.

    With `expand_env`, `${VAR:-default}` is substituted from the environment first (as the trigger file).
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
    if expand_env:
        text = topology.expand_env(text)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict) or not doc["models"]:
        raise error(f"{what} {path} needs a non-empty 'models' mapping")
    return {str(name): spec for name, spec in doc["models"].items()}


def validation_message(exc: ValidationError, model: type[BaseModel], keys: str = "keys") -> str:
    """pydantic's errors as one readable line: unknown keys with the known ones, a choice with its
    choices, a missing key by name; anything else as pydantic words it."""
    errors = exc.errors()
    unknown = sorted(".".join(str(p) for p in e["loc"]) for e in errors if e["type"] == "extra_forbidden")
    parts = [f"unknown {keys} {unknown}; known: {sorted(model.model_fields)}"] if unknown else []
    for e in errors:
        where = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            continue
        if e["type"] == "literal_error":
            parts.append(f"{where} must be one of {e['ctx']['expected']}, got {e['input']!r}")
        elif e["type"] == "missing":
            parts.append(f"'{where}' is required")
        else:
            message = e["msg"].removeprefix("Value error, ")
            parts.append(message if message.startswith(where) else f"{where}: {message}")
    return "; ".join(parts)


def one_of(name: str, choices: Any) -> BeforeValidator:
    """For `Annotated[Literal[...], one_of("setting", Literal[...])]`: a choice setting that fails at start
    with a message naming the setting and its choices (never a silent fallback to a default)."""
    allowed = get_args(choices)

    def check(value: Any) -> Any:
        if value not in allowed:
            listed = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
            raise ValueError(f"{name} must be {listed}, not {str(value)[:40]!r}")
        return value

    return BeforeValidator(check)
