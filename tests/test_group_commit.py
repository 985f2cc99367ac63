"""GroupCommit on its own, with an in-memory batch function: who goes with whom, and who is told
what."""

from __future__ import annotations

import asyncio

import pytest

from jobs.group_commit import GroupCommit


def test_a_lone_call_goes_at_once_and_calls_arriving_meanwhile_go_together():
    groups: list[list[int]] = []

    async def batch(items: list[int]) -> list[int | Exception]:
        groups.append(items)
        await asyncio.sleep(0.01)
        return [item * 10 for item in items]

    commit = GroupCommit(batch)

    async def go() -> list[int]:
        first = asyncio.ensure_future(commit.run(1))
        await asyncio.sleep(0)  # the first group starts
        rest = [commit.run(n) for n in (2, 3, 4)]
        return [await first, *await asyncio.gather(*rest)]

    assert asyncio.run(go()) == [10, 20, 30, 40]
    assert groups == [[1], [2, 3, 4]]


def test_a_groups_size_is_capped():
    groups: list[list[int]] = []

    async def batch(items: list[int]) -> list[int | Exception]:
        groups.append(items)
        return items

    commit = GroupCommit(batch, most=2)

    async def go() -> list[int]:
        return list(await asyncio.gather(*(commit.run(n) for n in range(5))))

    assert asyncio.run(go()) == [0, 1, 2, 3, 4]
    assert groups == [[0, 1], [2, 3], [4]]


def test_an_items_error_goes_to_its_caller_alone_and_a_batchs_failure_to_all_of_its_group():
    async def batch(items: list[int]) -> list[int | Exception]:
        if 99 in items:
            raise RuntimeError("the batch broke")
        return [ValueError(f"bad {n}") if n < 0 else n for n in items]

    commit = GroupCommit(batch)

    async def go() -> list[object]:
        return list(
            await asyncio.gather(*(commit.run(n) for n in (1, -2, 3)), return_exceptions=True)
        )

    one, bad, three = asyncio.run(go())
    assert (one, three) == (1, 3)
    assert isinstance(bad, ValueError) and str(bad) == "bad -2"

    async def broken() -> list[object]:
        return list(await asyncio.gather(commit.run(99), commit.run(5), return_exceptions=True))

    outcomes = asyncio.run(broken())
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    # The queue is free again afterwards.
    assert asyncio.run(commit.run(7)) == 7


def test_each_event_loop_has_its_own_queue():
    async def batch(items: list[int]) -> list[int | Exception]:
        await asyncio.sleep(0)
        return items

    commit = GroupCommit(batch)
    assert asyncio.run(commit.run(1)) == 1
    assert asyncio.run(commit.run(2)) == 2  # a new loop: nothing of the old one's is awaited


@pytest.mark.parametrize("size", [1, 3])
def test_a_cancelled_group_cancels_its_callers(size):
    async def batch(items: list[int]) -> list[int | Exception]:
        await asyncio.sleep(10)
        return items

    commit = GroupCommit(batch)

    async def go() -> list[object]:
        callers = [asyncio.ensure_future(commit.run(n)) for n in range(size)]
        await asyncio.sleep(0.01)
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and task not in callers:
                task.cancel()  # the drain
        return list(await asyncio.gather(*callers, return_exceptions=True))

    outcomes = asyncio.run(go())
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
