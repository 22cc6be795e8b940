"""Stopping a background task: its own cancellation ends there, the caller's does not."""

from __future__ import annotations

import asyncio

import pytest

from flagedge.tasks import stop_task


async def _forever(started: asyncio.Event) -> None:
    started.set()
    await asyncio.Event().wait()


def test_a_stopped_task_has_ended_and_its_cancellation_stays_inside() -> None:
    async def main() -> asyncio.Task[None]:
        started = asyncio.Event()
        task = asyncio.create_task(_forever(started))
        await started.wait()
        await stop_task(task)
        await stop_task(None)  # nothing to stop
        return task

    task = asyncio.run(main())
    assert task.done() and task.cancelled()


def test_a_task_that_ended_with_an_error_is_stopped_quietly_but_the_error_is_not_lost() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        task = asyncio.create_task(failing())
        await asyncio.sleep(0)
        await stop_task(task)

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(main())


def test_the_callers_own_cancellation_while_it_waits_still_reaches_it() -> None:
    async def stubborn(started: asyncio.Event, release: asyncio.Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # takes its time to end
            raise

    async def main() -> tuple[bool, bool]:
        started, release = asyncio.Event(), asyncio.Event()
        inner = asyncio.create_task(stubborn(started, release))
        await started.wait()
        stopper = asyncio.create_task(stop_task(inner))
        await asyncio.sleep(0.01)
        stopper.cancel()  # the caller is cancelled while it waits for the task
        release.set()
        try:
            await stopper
        except asyncio.CancelledError:
            return True, inner.cancelled()
        return False, inner.cancelled()

    reached, inner_cancelled = asyncio.run(main())
    assert reached and inner_cancelled
