"""The one loop-in-a-thread that the blocking facade and the console share."""

from __future__ import annotations

import asyncio

import pytest

from stripe_sync_core.loop_thread import LoopThread


def test_a_coroutine_runs_on_the_thread_and_its_result_comes_back() -> None:
    thread = LoopThread()

    async def where() -> bool:
        return thread.is_current

    assert thread.run_blocking(where(), timeout=5) is True
    assert not thread.is_current
    thread.stop()
    thread.stop()  # twice is fine
    assert thread.closed


def test_waiting_on_the_loop_from_its_own_thread_is_refused_not_a_deadlock() -> None:
    thread = LoopThread()

    async def nested() -> None:
        async def inner() -> int:
            return 1

        thread.run_blocking(inner(), timeout=1)

    with pytest.raises(RuntimeError, match="its own thread"):
        thread.run_blocking(nested(), timeout=5)
    thread.stop()


async def test_cancelling_the_caller_cancels_the_work_on_the_loop() -> None:
    thread = LoopThread()
    cancelled = asyncio.Event()
    started = asyncio.Event()
    caller_loop = asyncio.get_running_loop()

    async def long_work() -> None:
        caller_loop.call_soon_threadsafe(started.set)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            caller_loop.call_soon_threadsafe(cancelled.set)
            raise

    task = asyncio.create_task(thread.run(long_work()))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    await asyncio.wait_for(cancelled.wait(), 10)
    thread.stop()
