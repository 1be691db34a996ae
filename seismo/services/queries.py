"""Query parameters with one meaning in every service: `since`, `until`, `window`, `limit`.

Each parser answers the value or a ValueError naming the parameter and what it takes (a 400)."""

from __future__ import annotations

import time

from seismo.performance.ledger import Lookback
from seismo.times import parse_duration, parse_timestamp


def parse_window(text: str | None, default: Lookback) -> Lookback:
    """`30s`/`15m`/`1h`/`7d` (time), `1000` (newest instances), `all`; ValueError naming the problem."""
    if text is None or text == "":
        return default
    if text == "all":
        return Lookback()
    if text.isascii() and text.isdigit() and int(text) > 0:
        return Lookback(count=int(text))
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = 0.0
    if seconds > 0:
        return Lookback(seconds=seconds)
    raise ValueError(f"'window' must be a duration like 30s, 15m, 1h or 7d, a positive count like 1000, or 'all'; got {text!r}")


def parse_since(text: str | None, name: str = "since") -> float | None:
    """`since` (or `until`): an RFC 3339 time or epoch seconds, or a duration meaning that long ago (7d);
    None when absent."""
    if text is None or text == "":
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(f"'{name}' must be epoch seconds or an ISO-8601 time (2026-11-22T10:00:00Z), or a duration meaning "
                         f"that long ago (7d); got {text[:60]!r}") from None


def parse_limit(text: str, maximum: int) -> int:
    """A positive count of at most `maximum`; ValueError naming the problem (`²` is a digit to Python, not here)."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        raise ValueError(f"'limit' must be an integer between 1 and {maximum}, got {text[:40]!r}")
    return int(text)
