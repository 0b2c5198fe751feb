"""Coalescing concurrent requests into batches.

Scoring 32 listeners at once costs about as much as scoring 3 one by one (the user tower
and the catalogue product are matrix work), so under load a server answers more, and
sooner, if requests that arrive while a batch is being scored wait and run together as
the next batch. There is no added delay when the server is idle: a lone request runs at
once, as a batch of one. BENCHMARKS.md ("mirkit serve under load") has the measurement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from starlette.concurrency import run_in_threadpool


class Coalescer:
    """`await submit(key, item)` returns `work(key, [item, ...])`'s result for `item`;
    items with the same key that wait together are passed to one call of `work` (at
    most `max_batch` of them), which runs in a worker thread, one call at a time."""

    def __init__(self, work: Callable[[Hashable, list[Any]], list[Any]], max_batch: int = 64):
        self.work = work
        self.max_batch = max_batch
        self.pending: dict[Hashable, list[tuple[Any, asyncio.Future]]] = {}
        self.wakeup = asyncio.Event()
        self.runner: asyncio.Task | None = None

    async def submit(self, key: Hashable, item: Any) -> Any:
        if self.runner is None or self.runner.done():
            self.runner = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self.pending.setdefault(key, []).append((item, future))
        self.wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                key = next(iter(self.pending))
                batch = self.pending[key][: self.max_batch]
                rest = self.pending.pop(key)[self.max_batch :]
                if rest:
                    self.pending[key] = rest
                waiting = [future for _, future in batch]
                try:
                    results = await run_in_threadpool(self.work, key, [i for i, _ in batch])
                except Exception as err:  # every waiting request gets the error
                    for future in waiting:
                        if not future.done():  # done: its client went away
                            future.set_exception(err)
                    continue
                for future, result in zip(waiting, results, strict=True):
                    if not future.done():
                        future.set_result(result)
