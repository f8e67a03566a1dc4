"""One way to run background work: a set of tasks that keeps a reference to each (asyncio holds
only weak ones), logs and reports every failure, and cancels and awaits them all on close.

Used by the actions, the chat pane and session, and the app's server switch, so a failure in
any of them reaches the log and the user the same way, and none is collected unread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["TaskSet"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSet:
    """``spawn()`` coroutines; ``aclose()`` cancels what is still running and waits for it.

    ``report(sentence)`` hears every failure as one sentence ("Loading the list failed: ...");
    the traceback goes to the log. Cancellation is not a failure.
    """

    def __init__(self, name: str, report: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.report = report
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        """Run ``coro`` in the background; ``what`` names it in a failure ("Saving the thread")."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self.name}: closed, cannot start {what!r}")
        task = asyncio.ensure_future(coro)
        self._tasks[task] = what
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        what = self._tasks.pop(task, "a background task")
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("%s: %s failed", self.name, what, exc_info=exc)
        if self.report is not None:
            self.report(f"{what} failed: {exc or type(exc).__name__}")

    async def settle(self) -> None:
        """Wait until no task is running (tests, and before a snapshot is taken)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel every task and wait for each to end; nothing is started afterwards."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
