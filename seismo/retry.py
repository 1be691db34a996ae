"""Retrying with backoff, one way: which failures are worth another try, and how long to wait.

Used by everything Seismo sends on its own account: the model server's event sender, the drift
detector's result publisher, the Elasticsearch store. The broker keeps Knative's rules instead
(`broker/dispatcher.py`: Knative's retryable statuses and the Trigger's linear or exponential
delivery spec), because a Knative user configures those and they must behave the same here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 429})
"""4xx answers that say "later", not "never": a timeout and throttling. Every 5xx is transient too."""


def is_transient(status: int | None) -> bool:
    """No answer at all (None: refused, reset, timed out), 408, 429 or any 5xx: another try may succeed."""
    return status is None or status >= 500 or status in TRANSIENT_STATUSES


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff; with jitter, callers that failed together do not retry together."""

    initial: float = 0.1
    maximum: float = 5.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        delay = min(self.initial * 2 ** (attempt - 1), self.maximum)
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay


def retry_call(fn: Callable[[], T], attempts: int, backoff: Backoff, what: str, transient: Callable[[Exception], str | None],
               sleep: Callable[[float], None] = time.sleep) -> T:
    """`fn()`, at most `attempts` calls. `transient(exc)` names the reason for a failure worth another
    try, or None for one that is final; a final failure, or the last one, propagates unchanged."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            reason = transient(exc)
            if reason is None or attempt == attempts:
                raise
            delay = backoff.delay(attempt)
            log.warning("%s failed (%s); retry %d in %.2fs", what, reason, attempt, delay)
            sleep(delay)
    raise ValueError("attempts must be at least 1")


async def retry_async(fn: Callable[[], Awaitable[T]], attempts: int, backoff: Backoff, what: str,
                      transient: Callable[[Exception], str | None]) -> T:
    """The async twin of `retry_call`."""
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except Exception as exc:
            reason = transient(exc)
            if reason is None or attempt == attempts:
                raise
            delay = backoff.delay(attempt)
            log.warning("%s failed (%s); retry %d in %.2fs", what, reason, attempt, delay)
            await asyncio.sleep(delay)
    raise ValueError("attempts must be at least 1")
