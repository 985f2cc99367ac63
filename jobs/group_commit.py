"""Group commit: concurrent calls in one server process share one run of a batch function.

An async view awaits `GroupCommit.run(item)`. When no batch is running, the item goes at once,
alone: a lone request waits for nothing. While one is running, the items that arrive wait, and
all of them go in the next batch. Under load a batch therefore holds what arrived during the last
one, so its fixed costs (for submits: the transaction, the database's one write lock, the team's
dispatch, the audit chain's head, the realtime trip) are paid once per batch instead of once per
request, and requests stop queueing one by one for the database.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


@dataclass
class _Queue(Generic[Item, Outcome]):
    waiting: list[tuple[Item, asyncio.Future[Outcome]]] = field(default_factory=list)
    draining: bool = False


class GroupCommit(Generic[Item, Outcome]):
    """`batch(items)` returns one outcome per item, in order: a value, or an exception that
    `run` raises to that item's caller alone. Each event loop has its own queue."""

    def __init__(
        self,
        batch: Callable[[list[Item]], Awaitable[Sequence[Outcome | Exception]]],
        most: int = 100,
    ) -> None:
        self._batch = batch
        self._most = most
        self._queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _Queue[Item, Outcome]
        ] = weakref.WeakKeyDictionary()

    async def run(self, item: Item) -> Outcome:
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(loop, _Queue())
        done: asyncio.Future[Outcome] = loop.create_future()
        queue.waiting.append((item, done))
        if not queue.draining:
            queue.draining = True
            loop.create_task(self._drain(queue))
        return await done

    async def _drain(self, queue: _Queue[Item, Outcome]) -> None:
        try:
            while queue.waiting:
                group, queue.waiting = queue.waiting[: self._most], queue.waiting[self._most :]
                try:
                    outcomes = await self._batch([item for item, _ in group])
                except asyncio.CancelledError:
                    for _, done in group:
                        done.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - every caller of the group is told
                    outcomes = [exc] * len(group)
                for (_, done), outcome in zip(group, outcomes, strict=True):
                    if done.cancelled():
                        continue
                    if isinstance(outcome, Exception):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        finally:
            queue.draining = False
