"""Retrying idempotent calls through transient failures (connect errors, timeouts, 5xx)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from lmgui.api.errors import DeadlineExceeded, ServerError, ServerUnreachable

T = TypeVar("T")

TRANSIENT: tuple[type[Exception], ...] = (ServerUnreachable, ServerError)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    first_delay: float = 0.5,
    factor: float = 2.0,
) -> T:
    """``await call()``, trying again after a transient failure, with exponential backoff.

    Only for idempotent calls: listing, status, unloading by id. Loads and chats are never retried,
    nor is a call that ran out of its whole deadline: a server that slow would only be waited on
    again (an answer that was too large is a ``ProtocolError``, not transient).
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except TRANSIENT as exc:
            if attempt == attempts or isinstance(exc, DeadlineExceeded):
                raise
        await asyncio.sleep(delay)
        delay *= factor
    raise AssertionError("unreachable")  # pragma: no cover
