"""One object that lives on one worker thread (a SQLite store): opened there by the first call,
every call run there in order, closed there after the calls already queued. The GUI thread awaits
the calls and never waits on the disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

__all__ = ["OnWorker"]

T = TypeVar("T")


class _Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)


class OnWorker(Generic[S]):
    def __init__(self, make: Callable[[], S], *, thread: str, closed: str) -> None:
        """``make()`` opens the object (on the worker, at the first call; a failed open is tried
        again by the next call); ``closed`` is the sentence a call after ``aclose`` raises."""
        self._make = make
        self._closed_sentence = closed
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread)
        self._obj: S | None = None
        """Touched on the worker thread only."""
        self._closed = False

    def _on_worker(self, job: Callable[[S], T]) -> T:
        if self._obj is None:
            self._obj = self._make()
        return job(self._obj)

    async def run(self, job: Callable[[S], T]) -> T:
        """``job(obj)`` on the worker thread."""
        if self._closed:
            raise RuntimeError(self._closed_sentence)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._on_worker, job)

    async def aclose(self) -> None:
        """Close the object (if it was ever opened) after the calls already queued."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._obj is not None:
                self._obj.close()
                self._obj = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)
