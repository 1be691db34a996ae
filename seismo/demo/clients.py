"""What the demo's scenarios share to send traffic: a few concurrent clients working through a list."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx


async def for_each_concurrently(n: int, handle: Callable[[httpx.AsyncClient, int], Awaitable[None]], concurrency: int = 8,
                                timeout: float = 30.0) -> None:
    """`handle(client, i)` for every i in range(n), from `concurrency` workers sharing one HTTP client."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            await handle(client, queue.get_nowait())

    async with httpx.AsyncClient(timeout=timeout) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
