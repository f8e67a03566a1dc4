"""lmgui's own sockets on LM Studio's SDK channel, for the calls it makes every few seconds.

The channel's wire format is small: the client speaks first with ``{"authVersion": 1,
"clientIdentifier", "clientPasskey"}``, the server answers ``{"success": true}`` (or a refusal and
closes), then ``rpcCall {endpoint, callId, parameter?}`` is answered by ``rpcResult {callId,
result?}`` or ``rpcError {callId, error}`` (docs: ../shared/lmstudio-api.md). A poll asks the
instance truth (``listLoaded`` on two namespaces, then each instance's processing state) on every
poll of every server, so its cost is paid all day: through the official SDK it took 1.3 ms of CPU
per poll on a plain asyncio loop and 1.8 ms under qasync (httpx-ws reads through anyio task groups
and memory streams, and under qasync every step is a Qt timer event); on ``RpcSocket``s 0.48 and
0.66 ms (two instances loaded, the same measurement). Loads, which need a
channel with progress and the SDK's load config, stay with the SDK (api/sdk.py).

Built on ``websockets`` (asyncio): a maintained implementation of the websocket protocol, already
a dependency (the simulator serves the channel with it), whose connection reads frames in one
protocol callback rather than through task groups and memory streams. Everything that crosses an
``RpcSocket`` leaves as one of ``errors.py``'s types, named by the transport as REST's are; the
token goes only in the first message, to the configured server, and never into a sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from lmgui import __version__
from lmgui.api.errors import (
    ApiError,
    AuthError,
    ProtocolError,
    ResponseTooLarge,
    ServerError,
    ServerUnreachable,
    first_readable_line,
)
from lmgui.api.transport import Transport

__all__ = ["Call", "RpcSocket", "as_sentence", "call_all", "first_line"]

log = logging.getLogger(__name__)

_TOO_BIG = 1009
"""The close code a websocket peer (websockets itself) uses for a message over the size limit."""


def as_sentence(text: str) -> str:
    """The first readable line of ``text`` (at most 200 characters), ending as a sentence;
    "no reason given." when it has none."""
    line = (first_readable_line(text) if text.strip() else "") or "no reason given"
    return line if line.endswith((".", "!", "?", "…")) else line + "."


def first_line(exc: BaseException) -> str:
    """The first line of an error's text as one sentence (its type's name when it has none)."""
    return as_sentence(str(exc) if str(exc).strip() else type(exc).__name__)


class RpcSocket:
    """One socket to one namespace (``/llm``, ``/runtime``...) of a server's SDK channel: opened
    and admitted by ``open``, then any number of calls, side by side, until ``aclose`` or the
    connection breaks (``closed``; the owner opens a new one)."""

    def __init__(
        self,
        transport: Transport,
        host: str,
        namespace: str,
        auth: Mapping[str, Any],
        *,
        has_token: bool,
        max_bytes: int,
        open_seconds: float,
        call_seconds: float,
    ) -> None:
        """``host``: ``host:port`` of the server (ws://, as the channel is not used over https);
        ``auth``: the first message (the token's halves, or a guest's)."""
        self._t = transport
        self._url = f"ws://{host}/{namespace}"
        self.namespace = namespace
        self._auth = dict(auth)
        self._has_token = has_token
        self._max_bytes = max_bytes
        self._open_seconds = open_seconds
        self._call_seconds = call_seconds
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._last_id = 0
        self._broken: ApiError | None = None
        """Why the connection ended, for the calls still waiting and those made after."""

    def __repr__(self) -> str:
        return f"RpcSocket({self._t.display_url!r}, /{self.namespace})"

    @property
    def closed(self) -> bool:
        """Not open: never opened, closed, or the connection broke."""
        return self._ws is None or self._broken is not None

    # ------------------------------------------------------------------ opening

    async def open(self) -> None:
        """Connect and be admitted. Raises ``AuthError`` when the server refuses the token (or a
        guest), ``ServerUnreachable`` when it cannot be reached or does not answer in time."""
        t = self._t
        try:
            async with asyncio.timeout(self._open_seconds):
                ws = await connect(
                    self._url,
                    compression=None,
                    max_size=self._max_bytes,
                    open_timeout=None,  # the deadline above covers the whole opening
                    close_timeout=1,  # then it is dropped: closing never waits on a stuck server
                    user_agent_header=f"lmgui/{__version__}",
                )
                try:
                    await ws.send(msgspec.json.encode(self._auth).decode())
                    answer = msgspec.json.decode(await ws.recv())
                except BaseException:
                    await _close_quietly(ws)
                    raise
        except TimeoutError:
            raise t.err(
                ServerUnreachable,
                f"{t.where} did not open its SDK channel (/{self.namespace}) within "
                f"{self._open_seconds:g} s.",
            ) from None
        except msgspec.DecodeError:
            raise t.err(
                ProtocolError,
                f"{t.where} answered lmgui's greeting on /{self.namespace} with something that "
                "is not JSON.",
            ) from None
        except (OSError, WebSocketException) as exc:
            raise t.err(
                ServerUnreachable,
                f"lmgui's socket to {t.where} (/{self.namespace}) failed: {first_line(exc)}",
            ) from None
        if not (isinstance(answer, dict) and answer.get("success") is True):
            await _close_quietly(ws)
            error = answer.get("error") if isinstance(answer, dict) else None
            said = as_sentence(
                (first_readable_line(str(error)) if error else "") or "no reason given"
            )
            if self._has_token:
                sentence = (
                    f"{t.where} refused the API token on its SDK channel: {said} Check the token "
                    "in lmgui's settings."
                )
            else:
                sentence = (
                    f"{t.where} refused lmgui without an API token on its SDK channel: {said} "
                    "Set the server's token in lmgui's settings."
                )
            raise t.err(AuthError, sentence, server_message=said)
        self._ws = ws
        self._broken = None
        self._reader = asyncio.ensure_future(self._read(ws))

    # ------------------------------------------------------------------ calls

    async def call(self, endpoint: str, param: Any = None) -> Any:
        """``endpoint``'s result (None for a void one). Raises ``ServerError`` for the server's
        rpcError, ``ServerUnreachable`` when the socket is closed, breaks or the answer takes
        longer than the call deadline."""
        (result,) = await call_all([Call(self, endpoint, param)], self._call_seconds)
        if isinstance(result, ApiError):
            raise result
        return result

    async def _send(self, endpoint: str, param: Any) -> tuple[int, asyncio.Future[Any]]:
        """Send one call; its id and the future its answer will settle."""
        ws = self._ws
        if ws is None or self._broken is not None:
            raise self._broken or self._t.err(
                ServerUnreachable, f"lmgui's socket to {self._t.where} is not open."
            )
        self._last_id += 1
        call_id = self._last_id
        message: dict[str, Any] = {"type": "rpcCall", "endpoint": endpoint, "callId": call_id}
        if param is not None:
            message["parameter"] = param
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = (endpoint, future)
        try:
            await ws.send(msgspec.json.encode(message).decode())
        except BaseException as exc:
            self._waiting.pop(call_id, None)
            _settle(future)
            if isinstance(exc, ConnectionClosed):
                raise self._ended(exc) from None
            raise
        return call_id, future

    def _late(self, endpoint: str, seconds: float) -> ApiError:
        return self._t.err(
            ServerUnreachable,
            f"{self._t.where} did not answer {endpoint} on its SDK channel within {seconds:g} s.",
        )

    async def _read(self, ws: ClientConnection) -> None:
        """Hand each answer to its call; anything else (warnings, keep-alive acks) is dropped."""
        try:
            async for raw in ws:
                try:
                    message = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    self._break(
                        self._t.err(
                            ProtocolError,
                            f"{self._t.where} sent something that is not JSON on its SDK channel.",
                        )
                    )
                    await _close_quietly(ws)
                    return
                if not isinstance(message, dict):
                    continue
                waiting = self._waiting.get(message.get("callId"))  # type: ignore[arg-type]
                if waiting is None:
                    continue
                endpoint, future = waiting
                if future.done():
                    continue
                kind = message.get("type")
                if kind == "rpcResult":
                    future.set_result(message.get("result"))
                elif kind == "rpcError":
                    future.set_exception(self._rpc_error(endpoint, message.get("error")))
        except ConnectionClosed as exc:
            self._break(self._ended(exc))
        except Exception as exc:  # a bug or an OS error under the library: the calls must end
            log.warning("lmgui's socket to %s broke: %s", self._t.display_url, exc)
            self._break(self._ended(exc))
        else:
            self._break(self._ended(None))

    def _rpc_error(self, endpoint: str, error: Any) -> ApiError:
        title = error.get("title") if isinstance(error, dict) else None
        said = as_sentence(str(title) if title else "")
        return self._t.err(
            ServerError,
            f"{self._t.where} answered {endpoint} on its SDK channel with an error: {said}",
            server_message=str(error)[:500],
        )

    def _ended(self, exc: BaseException | None) -> ApiError:
        """Why the connection ended, as one sentence."""
        if self._broken is not None:
            return self._broken
        t = self._t
        sent = exc.sent if isinstance(exc, ConnectionClosed) else None
        if sent is not None and sent.code == _TOO_BIG:
            return t.err(
                ResponseTooLarge,
                f"{t.where} sent a message over {self._max_bytes // 2**20} MB on its SDK "
                "channel; lmgui closed the socket.",
            )
        return t.err(ServerUnreachable, f"The SDK channel to {t.where} was closed.")

    def _break(self, error: ApiError) -> None:
        if self._broken is None:
            self._broken = error
        for _, future in self._waiting.values():
            if not future.done():
                future.set_exception(self._broken)

    # ------------------------------------------------------------------ closing

    async def aclose(self) -> None:
        """Close the socket; calls still waiting end as unreachable."""
        ws, self._ws = self._ws, None
        reader, self._reader = self._reader, None
        self._break(self._ended(None))
        if ws is not None:
            await _close_quietly(ws)
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _close_quietly(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await ws.close()


class Call(NamedTuple):
    """One call for ``call_all``."""

    sock: RpcSocket
    endpoint: str
    param: Any = None


_UNSET: Any = object()


async def call_all(calls: Sequence[Call], seconds: float) -> list[Any]:
    """Every call's result in order, or in its place the ``ApiError`` it ended with: all sent at
    once, on whichever sockets, and answered within one deadline of ``seconds``.

    No task per call and one timer for the lot: a poll makes a few of these every two seconds
    for every server, and under qasync each task step and each timer is a Qt event."""
    out: list[Any] = [_UNSET] * len(calls)
    sent: list[tuple[int, int, asyncio.Future[Any]]] = []
    try:
        async with asyncio.timeout(seconds):
            for i, c in enumerate(calls):
                try:
                    call_id, future = await c.sock._send(c.endpoint, c.param)
                except ApiError as exc:
                    out[i] = exc
                else:
                    sent.append((i, call_id, future))
            for i, _, future in sent:
                try:
                    out[i] = await future
                except ApiError as exc:
                    out[i] = exc
    except TimeoutError:
        for i, _, future in sent:
            if out[i] is _UNSET and future.done() and not future.cancelled():
                error = future.exception()
                out[i] = error if error is not None else future.result()
        for i, c in enumerate(calls):
            if out[i] is _UNSET:
                out[i] = c.sock._late(c.endpoint, seconds)
    finally:
        for i, call_id, future in sent:
            calls[i].sock._waiting.pop(call_id, None)
            _settle(future)  # cancelled half-way: an answer nobody reads is no error to log
    return out


def _settle(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen (or cancel it), so asyncio never logs an error in it that
    nobody was left to read."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()
