"""The one way background work runs: references kept, failures logged and said, close waits."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lmgui.core.tasks import TaskSet


async def test_a_failure_is_logged_and_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    said: list[str] = []
    tasks = TaskSet("actions", said.append)

    async def boom() -> None:
        raise OSError("disk full")

    with caplog.at_level(logging.ERROR):
        tasks.spawn(boom(), "Saving the ledger")
        await tasks.settle()
    assert said == ["Saving the ledger failed: disk full"]
    assert "actions: Saving the ledger failed" in caplog.text and "OSError" in caplog.text
    assert len(tasks) == 0


async def test_close_cancels_and_waits_and_refuses_new_work() -> None:
    tasks = TaskSet("chat")
    ended: list[str] = []

    async def long() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append("cleaned up")

    tasks.spawn(long(), "Waiting")
    await asyncio.sleep(0)
    await tasks.aclose()
    assert ended == ["cleaned up"] and not tasks
    coro = long()
    with pytest.raises(RuntimeError, match="closed"):
        tasks.spawn(coro, "Too late")


async def test_a_result_comes_back_and_cancellation_is_not_a_failure() -> None:
    said: list[str] = []
    tasks = TaskSet("x", said.append)

    async def value() -> int:
        return 42

    assert await tasks.spawn(value(), "Counting") == 42
    t = tasks.spawn(asyncio.sleep(3600), "Sleeping")
    await asyncio.sleep(0)
    t.cancel()
    await tasks.settle()
    assert said == []
