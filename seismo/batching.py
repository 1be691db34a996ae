"""Group work submitted concurrently from async code into batches run on one worker thread.

SQLite writes and model inference both gain from batching: one transaction (one fsync) for everything
that queued up while the previous batch ran, one forward pass for every waiting request. Under light
load a batch is a single item and nothing waits; under heavy load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from seismo.tasks import cancel_and_wait

T = TypeVar("T")
R = TypeVar("R")


def split_rows(result, parts: Sequence) -> list:
    """Cut a batched result (an array, or None) back into one piece per part, by the parts' row counts."""
    import numpy as np

    if result is None:
        return [None] * len(parts)
    return np.split(result, np.cumsum([len(p) for p in parts])[:-1])


class ThreadBatcher(Generic[T, R]):
    """`await submit(item)` returns `run_batch([..., item, ...])[i]` for that item.

    `max_wait` > 0 lets the first item of a batch wait that long for company (adaptive batching for
    inference), but only under load: when the last batch ran alone and nothing queued behind it, a
    lone item runs at once (an unloaded request must not pay the wait). 0 batches only what is
    already queued (group commit for writes). A failing batch is run again item by item, so only the
    items that fail on their own get the exception.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        max_batch: int = 512,
        max_wait: float = 0.0,
        name: str = "batcher",
        size_of: Callable[[T], int] = lambda item: 1,
    ):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.name = name
        self.size_of = size_of
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queue: asyncio.Queue[tuple[T, asyncio.Future]] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._held: tuple[T, asyncio.Future] | None = None  # an item that did not fit the last batch
        self._under_load = False  # the last batch had company, or work queued behind it

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def submit(self, item: T) -> R:
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def call(self, fn: Callable, *args):
        """Run `fn` on the batcher's thread (between batches): reads that must see every write."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def stopped(self) -> list[str]:
        """The batch loop's name if it ended before close() (it never should): for /healthz."""
        return [self.name] if self._task is not None and self._task.done() else []

    @property
    def queued(self) -> int:
        return self._queue.qsize() + (1 if self._held else 0)

    async def _collect(self) -> list[tuple[T, asyncio.Future]]:
        first = self._held or await self._queue.get()
        self._held = None
        batch, size = [first], self.size_of(first[0])
        deadline = asyncio.get_running_loop().time() + (self.max_wait if self._under_load else 0.0)
        while size < self.max_batch:
            if self._queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                entry = self._queue.get_nowait()
            if size + self.size_of(entry[0]) > self.max_batch:
                self._held = entry
                break
            batch.append(entry)
            size += self.size_of(entry[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                await self._answer(loop, batch)
            finally:
                # Under load when the batch had company or requests queued while it ran.
                self._under_load = len(batch) > 1 or not self._queue.empty()

    async def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[T, asyncio.Future]]) -> None:
        try:
            results = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            # One bad item must not fail the others: run each alone, so only the culprit fails.
            for entry in batch:
                await self._run_alone(loop, entry)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)

    async def _run_alone(self, loop: asyncio.AbstractEventLoop, entry: tuple[T, asyncio.Future]) -> None:
        item, future = entry
        try:
            result = (await loop.run_in_executor(self.executor, self.run_batch, [item]))[0]
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)

    async def close(self, finalize: Callable[[], None] | None = None) -> None:
        """Let queued work finish, stop, then run `finalize` (closing a file) on the worker thread."""
        for _ in range(500):
            if self.queued == 0:
                break
            await asyncio.sleep(0.01)
        await cancel_and_wait([self._task])
        if finalize is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, finalize)
        self.executor.shutdown(wait=True)
