"""Embedding versions: `<model>/<space>@MAJOR.MINOR.PATCH`, and what a change between two means.

The rules (DESIGN.md, from the embeddings document):
- major: another model architecture; the space (often its dimension) changed: never comparable.
- minor: another extraction method from the same model (another layer, pooling): dimensions and
  their meaning may change; refused unless a detector is told to allow it, and flagged when it is.
- patch: the same model and extraction, retrained on new data: scored, and noted on the result.
Another model or space name is as incomparable as a major change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_VERSION = re.compile(
    r"^(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/(?P<space>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})"
    r"@(?P<major>0|[1-9][0-9]{0,8})\.(?P<minor>0|[1-9][0-9]{0,8})\.(?P<patch>0|[1-9][0-9]{0,8})$"
)


class EmbeddingVersionError(ValueError):
    """An embedding version that is malformed, or one a detector refuses to score."""


class VersionChange(str, Enum):
    SAME = "same"
    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"
    OTHER_SPACE = "other_space"  # another model or space name: as incomparable as a major change


@dataclass(frozen=True, order=True)
class EmbeddingVersion:
    model: str
    space: str
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> EmbeddingVersion:
        """The version in `text`, or EmbeddingVersionError naming the expected form."""
        match = _VERSION.fullmatch(text) if isinstance(text, str) else None  # fullmatch: "$" would let a newline through
        if match is None:
            shown = text[:80] if isinstance(text, str) else type(text).__name__
            raise EmbeddingVersionError(
                f"embedding version {shown!r} is not of the form <model>/<space>@MAJOR.MINOR.PATCH "
                "(e.g. image-classifier/penultimate@1.0.0)"
            )
        g = match.groupdict()
        return cls(g["model"], g["space"], int(g["major"]), int(g["minor"]), int(g["patch"]))

    def __str__(self) -> str:
        return f"{self.model}/{self.space}@{self.major}.{self.minor}.{self.patch}"

    @property
    def space_name(self) -> str:
        return f"{self.model}/{self.space}"


def compare_versions(reference: EmbeddingVersion | str, other: EmbeddingVersion | str) -> VersionChange:
    """How `other` differs from `reference`: the largest component that changed (either direction)."""
    ref = reference if isinstance(reference, EmbeddingVersion) else EmbeddingVersion.parse(reference)
    new = other if isinstance(other, EmbeddingVersion) else EmbeddingVersion.parse(other)
    if ref.space_name != new.space_name:
        return VersionChange.OTHER_SPACE
    if ref.major != new.major:
        return VersionChange.MAJOR
    if ref.minor != new.minor:
        return VersionChange.MINOR
    if ref.patch != new.patch:
        return VersionChange.PATCH
    return VersionChange.SAME
