"""A streamed chat turn: LM Studio's SSE answer read as typed events, within limits.

``ChatStream`` is both an async iterator and an async context manager; leaving the block closes
the HTTP response at once (that is how Stop cancels). After ``chat.end`` the stream is still read
to its end rather than left: qasync installs no async-generator hooks, and an abandoned httpx
byte stream would be finalised outside the loop (toolchain.md). An ``error`` event is an event,
not an exception; a stream that ends without ``chat.end`` raises, in the server's words when it
sent an ``error`` first. One line (one event) is limited in length, and the stream ends when no
event comes for ``Deadlines.stream_idle`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Self, cast

import httpx
import msgspec
from httpx_sse import EventSource

from lmgui.api.chat import CHAT_PATH, parse_chat_answer
from lmgui.api.errors import DeadlineExceeded, ServerError, ServerUnreachable
from lmgui.api.events import ChatEnd, ChatEvent, ErrorEvent, parse_event
from lmgui.api.limits import Deadlines
from lmgui.api.records import ChatResult
from lmgui.api.transport import Transport, sentence

__all__ = ["ChatStream"]


class ChatStream:
    """An async iterator of ``ChatEvent``s that is also an async context manager.

    ``async with client.chat_stream(...) as s: async for ev in s: ...``. Leaving the block (or
    ``aclose()``) closes the HTTP response at once, which is how a Stop button cancels cleanly.
    After ``chat.end``, ``result`` holds the ChatResult.
    """

    def __init__(self, transport: Transport, body: dict[str, Any], deadlines: Deadlines) -> None:
        self.body = body
        self.result: ChatResult | None = None
        self._gen = _stream_events(transport, body, deadlines)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatEvent:
        event = await self._gen.__anext__()
        if isinstance(event, ChatEnd):
            self.result = event.result
        return event

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def collect(self) -> ChatResult:
        """Run the stream to its end and return the result."""
        async for _ in self:
            pass
        assert self.result is not None  # _stream_events raises when chat.end never came
        return self.result


async def _stream_events(
    transport: Transport, body: dict[str, Any], deadlines: Deadlines
) -> AsyncGenerator[ChatEvent, None]:
    started = time.time()
    result: ChatResult | None = None
    error: ErrorEvent | None = None
    async with transport.stream(
        "POST", CHAT_PATH, json=body, accept="text/event-stream", read_timeout=deadlines.stream_idle
    ) as resp:
        ctype = resp.headers.get("content-type", "")
        if resp.status_code >= 400 or "text/event-stream" not in ctype:
            async with transport.deadline(deadlines.chat, "the chat answer"):
                raw = await transport.read(resp, transport.limits.body, "the chat answer")
            transport.check(resp, raw, ("output",))
            # A server that ignored stream=true: hand over its whole answer as one end.
            result = parse_chat_answer(transport, raw)
            yield ChatEnd(result=result)
        else:
            events = _sse_events(transport, resp, deadlines.stream_idle)
            async with contextlib.aclosing(events):
                async for event in events:
                    if result is not None:
                        continue  # drain after chat.end rather than break
                    if isinstance(event, ErrorEvent):
                        error = event = ErrorEvent(
                            msgspec.structs.replace(
                                event.error, message=transport.redact(event.error.message)
                            )
                        )
                    if isinstance(event, ChatEnd):
                        result = event.result
                    yield event
    transport.log(
        {
            "time": started,
            "method": "POST",
            "url": transport.display_url + CHAT_PATH,
            "request": body,
            "status": 200,
            "response": msgspec.to_builtins(result) if result else None,
            **({"error": msgspec.to_builtins(error.error)} if error else {}),
        }
    )
    if result is None and error is not None:
        # The server said what went wrong, then closed without chat.end: its words, not
        # "the stream ended", are what the user needs (and its code, for a lost thread).
        raise transport.err(
            ServerError,
            f"{transport.where} reported an error and ended the answer: "
            f"{sentence(error.message or 'no details')}",
            server_message=error.message,
            error_type=error.error.type,
            code=error.error.code,
        )
    if result is None:
        raise transport.err(
            ServerUnreachable,
            f"The stream from {transport.where} ended before the answer was complete.",
        )


async def _sse_events(
    transport: Transport, resp: httpx.Response, idle: float
) -> AsyncGenerator[ChatEvent, None]:
    """Typed events of an SSE answer, each within the idle deadline, no line over the limit."""
    loop = asyncio.get_running_loop()
    lines = _BoundedLines(resp, transport.limits.sse_line, transport)
    source = EventSource(cast(httpx.Response, lines))
    events = source.aiter_sse()
    try:
        while True:
            # Per event, not around the generator: a timeout must never fire while the
            # consumer holds an event (it would cancel the consumer's own work). Comments
            # are consumed inside httpx-sse and never reach here, so keep-alives do not
            # reset the deadline.
            try:
                async with asyncio.timeout_at(loop.time() + idle) as scope:
                    sse = await anext(events)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not scope.expired():
                    raise
                await resp.aclose()
                raise transport.err(
                    DeadlineExceeded,
                    f"{transport.where} sent nothing for {idle:g} s while answering; lmgui "
                    "stopped waiting (what arrived is kept).",
                ) from None
            try:
                data = msgspec.json.decode(sse.data) if sse.data else {}
            except msgspec.DecodeError:
                data = {"raw": sse.data}
            name = sse.event if sse.event != "message" else None
            if name is None and isinstance(data, dict):
                name = str(data.get("type", "message"))
            if name == "chat.end":
                result = data.get("result") if isinstance(data, dict) else None
                yield ChatEnd(result=parse_chat_answer(transport, result))
            else:
                yield parse_event(name or "message", data)
    finally:
        await events.aclose()


class _BoundedLines:
    """The part of an ``httpx.Response`` that httpx-sse reads, with a limit on one line's length:
    httpx-sse (like httpx's line reader) would grow a line without end."""

    def __init__(self, resp: httpx.Response, limit: int, transport: Transport) -> None:
        self._resp = resp
        self._limit = limit
        self._transport = transport
        self.headers = resp.headers

    async def aiter_text(self) -> AsyncIterator[str]:
        run = 0  # characters since the last line break
        async for text in self._resp.aiter_text():
            cut = max(text.rfind("\n"), text.rfind("\r"))
            run = run + len(text) if cut < 0 else len(text) - cut - 1
            if run > self._limit:
                await self._resp.aclose()
                raise self._transport.too_large("a stream line", self._limit)
            yield text
