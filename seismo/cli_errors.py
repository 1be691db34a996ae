"""What the command line prints for a bad setting: one line naming the variable and what it accepts,
never a traceback (`seismo.cli.main`)."""

from __future__ import annotations

import os

from pydantic import ValidationError
from pydantic_settings import BaseSettings


class SettingError(ValueError):
    """A setting read from the environment that cannot be used; its message is the line to print."""


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw[:40]!r} is not a whole number") from None
    if value < minimum:
        raise SettingError(f"{name}={value} must be at least {minimum}")
    return value


def _settings_classes(base: type = BaseSettings) -> dict[str, type[BaseSettings]]:
    found: dict[str, type[BaseSettings]] = {}
    cls: type[BaseSettings]
    for cls in base.__subclasses__():
        found[cls.__name__] = cls
        found.update(_settings_classes(cls))
    return found


def settings_error_lines(exc: ValidationError) -> list[str]:
    """One line per bad field of a settings class: the environment variable, the value, what it accepts."""
    cls = _settings_classes().get(exc.title)
    prefix = str(cls.model_config.get("env_prefix", "")) if cls is not None else ""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        info = cls.model_fields.get(field) if cls is not None else None
        name = (prefix + field).upper() if info is not None or prefix else field
        value = error.get("input")
        shown = f"={str(value)[:40]!r}" if isinstance(value, (str, int, float)) else ""
        lines.append(f"{name}{shown}: {error['msg']}")
    return lines
