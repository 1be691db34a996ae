"""Time on the wire, one way: RFC 3339 in UTC out; RFC 3339 (or epoch seconds) and durations in.

Every time Seismo writes (CloudEvent `time`, record and drift-window times, reports) is
`2026-11-22T10:00:00.500000Z`; every duration it reads (trigger delivery settings, metrics windows,
CLI options) goes through `parse_duration`.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_SHORT_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def rfc3339(seconds: float) -> str:
    """Epoch seconds as RFC 3339 in UTC, to the microsecond: `2026-11-22T10:00:00.500000Z`."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_last_second: tuple[int, str] = (-1, "")  # the latest second's text: every event carries the time, twice per prediction


def now_rfc3339() -> str:
    """The current time as `rfc3339` writes it; the date and time of day are formatted once a second."""
    global _last_second
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    cached_second, prefix = _last_second
    if cached_second != second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, prefix)
    return f"{prefix}.{micro:06d}Z"


def parse_timestamp(text: str) -> float:
    """RFC 3339 / ISO 8601 (a time without a zone is UTC) or epoch seconds; ValueError otherwise."""
    if not text.isascii():
        raise ValueError(f"not a time: {text[:60]!r}")
    try:
        seconds = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a time: {text[:60]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            seconds = parsed.timestamp()
        except (OverflowError, OSError):
            raise ValueError(f"not a time: {text[:60]!r}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite time: {text[:60]!r}")
    return seconds


def parse_duration(text: str, iso_only: bool = False) -> float:
    """Seconds from an ISO-8601 duration (`PT0.5S`, `PT1M30S`, `P1D`, as Knative writes them) or a
    short one (`250ms`, `30s`, `15m`, `1h`, `7d`, `1w`, as Prometheus writes them); ValueError otherwise.

    `iso_only` for files that Kubernetes reads too (the trigger file renders into Knative Triggers)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration such as PT0.5S or 30s")
    short = None if iso_only else _SHORT_DURATION.match(text)
    if short:
        return float(short.group(1)) * _UNITS[short.group(2)]
    match = _ISO_DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text[:60]!r} is not a duration such as PT0.5S, PT1M, 30s or 1h")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return parts.get("days", 0) * 86400 + parts.get("hours", 0) * 3600 + parts.get("minutes", 0) * 60 + parts.get("seconds", 0)
