"""Background asyncio tasks: stopping them, and telling which stopped although they must run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task | None]) -> None:
    """Cancel the tasks and wait until each has ended; shutting down, there is no one left to report an error to."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def stopped_tasks(tasks: Iterable[asyncio.Task | None]) -> list[str]:
    """Names of background tasks that ended although they must run until shutdown (for /healthz)."""
    return [task.get_name() for task in tasks if task is not None and task.done()]
