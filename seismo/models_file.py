"""Reading a services' `models:` YAML file (the metrics server's and the explainer's share the shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
