"""lmgui's own sockets on LM Studio's SDK channel (api/rpc.py): against the simulator, and against a
websocket server that misbehaves on purpose, over real loopback sockets. Every failure is one
sentence of the client's own error types, and none of them leaves a call waiting."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from websockets.asyncio.server import ServerConnection, serve

from lmgui.api import AuthError, LMStudioClient
from lmgui.api.errors import ProtocolError, ResponseTooLarge, ServerError, ServerUnreachable
from lmgui.api.limits import Limits
from lmgui.api.rpc import Call, RpcSocket, call_all
from lmgui.api.transport import Transport
from lmgui.sim import SimConfig, Simulator
from tests.conftest import SimFactory

TOKEN = "sk-lm-Zq8Xb2Rt:Vw9Lp4Km7Nh3Jd6FAbCd"
GUEST = {"authVersion": 1, "clientIdentifier": "guest:test", "clientPasskey": "p"}


@contextlib.asynccontextmanager
async def socket_to(
    url: str,
    namespace: str = "llm",
    *,
    token: str | None = None,
    auth: dict[str, Any] | None = None,
    max_bytes: int = 1 << 20,
    seconds: float = 5.0,
) -> AsyncIterator[RpcSocket]:
    transport = Transport(url, token, timeout=10, limits=Limits())
    host = url.split("//", 1)[1].rstrip("/")
    sock = RpcSocket(
        transport,
        host,
        namespace,
        auth or GUEST,
        has_token=token is not None,
        max_bytes=max_bytes,
        open_seconds=seconds,
        call_seconds=seconds,
    )
    try:
        yield sock
    finally:
        await sock.aclose()
        await transport.aclose()


Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def misbehaving(after_greeting: Handler, *, greet: bool = True) -> AsyncIterator[str]:
    """A websocket server that reads the greeting, admits (``greet``) and hands the connection
    to ``after_greeting``; yields its http:// URL."""

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        if greet:
            await ws.send('{"success": true}')
        await after_greeting(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"http://127.0.0.1:{port}"


async def forever(ws: ServerConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


# ------------------------------------------------------------------ against the simulator


async def test_calls_side_by_side_each_get_their_own_answer(sim: Simulator) -> None:
    for key in ("google/gemma-3-270m", "qwen/qwen3-4b"):
        sim.state.finish_load(sim.state.begin_load(key, {}).id)
    async with socket_to(sim.url) as sock:
        await sock.open()
        listed = await sock.call("listLoaded")
        refs = [i["instanceReference"] for i in listed]
        states, again = await asyncio.gather(
            asyncio.gather(
                *(
                    sock.call(
                        "getInstanceProcessingState",
                        {"specifier": {"type": "instanceReference", "instanceReference": r}},
                    )
                    for r in refs
                )
            ),
            sock.call("listLoaded"),
        )
    assert sorted(i["identifier"] for i in listed) == ["google/gemma-3-270m", "qwen/qwen3-4b"]
    assert [s["status"] for s in states] == ["idle", "idle"]
    assert again == listed


async def test_an_error_the_server_answers_is_one_sentence_and_the_socket_stays(
    sim: Simulator,
) -> None:
    async with socket_to(sim.url) as sock:
        await sock.open()
        with pytest.raises(ServerError) as info:
            await sock.call("getLoadConfig", {"specifier": {"type": "query", "query": {}}})
        assert not sock.closed
        assert await sock.call("listLoaded") == []
    said = str(info.value)
    assert said.startswith(f"LM Studio at {sim.url} answered getLoadConfig on its SDK channel")
    assert "\n" not in said


async def test_a_refused_token_is_an_auth_error_that_never_shows_it(make_sim: SimFactory) -> None:
    sim = make_sim(token=TOKEN)
    wrong = {"authVersion": 1, "clientIdentifier": "Zq8Xb2Rt", "clientPasskey": "A" * 20}
    async with socket_to(sim.url, token="sk-lm-Zq8Xb2Rt:" + "A" * 20, auth=wrong) as sock:
        with pytest.raises(AuthError) as info:
            await sock.open()
        assert sock.closed
    said = str(info.value)
    assert said.startswith(f"LM Studio at {sim.url} refused the API token on its SDK channel: ")
    assert said.endswith("Check the token in lmgui's settings.")
    assert "AAAAAAAAAA" not in said and "Zq8Xb2Rt" not in said


async def test_a_guest_on_a_server_that_wants_a_token_is_told_to_set_one(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(token=TOKEN)
    async with socket_to(sim.url) as sock:
        with pytest.raises(AuthError) as info:
            await sock.open()
    assert "without an API token" in str(info.value)
    assert str(info.value).endswith("Set the server's token in lmgui's settings.")


async def test_a_restarted_server_gets_a_new_socket_at_the_next_poll(
    make_sim: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_sim()
    first.state.finish_load(first.state.begin_load("google/gemma-3-270m", {}).id)
    port = first.port
    async with LMStudioClient(first.url, lms=None) as c:
        models = await c.poll_models()
        assert models is not None
        assert {i.status for m in models for i in m.instances} == {"idle"}
        first.stop()
        with pytest.raises(ServerUnreachable):
            await c.poll_models()
        # The list's failure says it all: nothing about the channel besides.
        assert "no instance truth" not in caplog.text
        back = Simulator(SimConfig(port=port, tokens_per_second=0)).start()
        try:
            back.state.finish_load(back.state.begin_load("qwen/qwen3-4b", {}).id)
            models = await c.poll_models()
        finally:
            back.stop()
    assert models is not None
    truth = {i.id: i.status for m in models for i in m.instances}
    assert truth == {"qwen/qwen3-4b": "idle"}, "the channel's figures again, from the new server"


# ------------------------------------------------------------------ a server that misbehaves


async def test_a_server_that_never_greets_back_ends_within_the_deadline() -> None:
    async with (
        misbehaving(forever, greet=False) as url,
        socket_to(url, seconds=0.3) as sock,
    ):
        with pytest.raises(ServerUnreachable) as info:
            await sock.open()
    assert "did not open its SDK channel (/llm) within 0.3 s" in str(info.value)


async def test_a_call_never_answered_ends_within_the_deadline() -> None:
    async with misbehaving(forever) as url, socket_to(url, seconds=0.3) as sock:
        await sock.open()
        with pytest.raises(ServerUnreachable) as info:
            await sock.call("listLoaded")
    assert "did not answer listLoaded on its SDK channel within 0.3 s" in str(info.value)


async def test_a_message_over_the_limit_closes_the_socket() -> None:
    async def huge(ws: ServerConnection) -> None:
        await ws.recv()
        with contextlib.suppress(Exception):
            await ws.send('{"type": "rpcResult", "callId": 1, "result": "' + "x" * 3_000_000 + '"}')
        await forever(ws)

    async with misbehaving(huge) as url, socket_to(url, max_bytes=2 * 2**20) as sock:
        await sock.open()
        with pytest.raises(ResponseTooLarge) as info:
            await sock.call("listLoaded")
        assert sock.closed
    assert "sent a message over 2 MB on its SDK channel" in str(info.value)


async def test_something_that_is_not_json_closes_the_socket() -> None:
    async def garbage(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send("<html>proxy error</html>")
        await forever(ws)

    async with misbehaving(garbage) as url, socket_to(url) as sock:
        await sock.open()
        with pytest.raises(ProtocolError) as info:
            await sock.call("listLoaded")
        assert sock.closed
    assert "sent something that is not JSON on its SDK channel" in str(info.value)


async def test_a_socket_closed_mid_call_ends_every_call_waiting() -> None:
    async def hang_up(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.recv()
        await ws.close()

    async with misbehaving(hang_up) as url, socket_to(url) as sock:
        await sock.open()
        results = await asyncio.gather(
            sock.call("listLoaded"), sock.call("listLoaded"), return_exceptions=True
        )
        assert sock.closed
        with pytest.raises(ServerUnreachable):
            await sock.call("listLoaded")  # closed: at once, not after the deadline
    assert all(isinstance(r, ServerUnreachable) for r in results)
    assert all(str(r) == f"The SDK channel to LM Studio at {url} was closed." for r in results)


async def test_answers_for_no_call_of_ours_are_ignored() -> None:
    async def chatty(ws: ServerConnection) -> None:
        call = msgspec.json.decode(await ws.recv())
        for noise in ('{"type": "warning"}', "[1, 2]", '{"type": "rpcResult", "callId": 99}'):
            await ws.send(noise)
        await ws.send(msgspec.json.encode({"type": "rpcResult", "callId": call["callId"]}))
        await forever(ws)

    async with misbehaving(chatty) as url, socket_to(url) as sock:
        await sock.open()
        assert await sock.call("unloadModel") is None
        assert not sock.closed


async def test_a_batch_keeps_every_answer_it_got_when_one_never_comes() -> None:
    async def partly(ws: ServerConnection) -> None:
        ids = [msgspec.json.decode(await ws.recv())["callId"] for _ in range(3)]
        await ws.send(msgspec.json.encode({"type": "rpcResult", "callId": ids[0], "result": 1}))
        error = {"title": "No such model"}
        await ws.send(msgspec.json.encode({"type": "rpcError", "callId": ids[1], "error": error}))
        await forever(ws)  # the third is never answered

    async with misbehaving(partly) as url, socket_to(url) as sock:
        await sock.open()
        first, second, third = await call_all(
            [Call(sock, "listLoaded"), Call(sock, "getLoadConfig"), Call(sock, "unloadModel")],
            0.5,
        )
        assert not sock.closed
    assert first == 1
    assert isinstance(second, ServerError) and "No such model." in str(second)
    assert isinstance(third, ServerUnreachable)
    assert "did not answer unloadModel on its SDK channel within 0.5 s" in str(third)


async def test_a_batch_cancelled_half_way_leaves_no_error_for_asyncio_to_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answered = asyncio.Event()

    async def second_fails(ws: ServerConnection) -> None:
        ids = [msgspec.json.decode(await ws.recv())["callId"] for _ in range(2)]
        error = {"title": "No such model"}
        await ws.send(msgspec.json.encode({"type": "rpcError", "callId": ids[1], "error": error}))
        answered.set()
        await forever(ws)  # the first is never answered

    async with misbehaving(second_fails) as url, socket_to(url) as sock:
        await sock.open()
        batch = asyncio.ensure_future(
            call_all([Call(sock, "listLoaded"), Call(sock, "getLoadConfig")], 5)
        )
        await answered.wait()
        while not any(f.done() for _, f in sock._waiting.values()):  # noqa: ASYNC110
            await asyncio.sleep(0)  # until the reader has settled the second call with its error
        batch.cancel()  # a poll cancelled: the app shutting down, a server removed
        with pytest.raises(asyncio.CancelledError):
            await batch
        del batch
    gc.collect()
    await asyncio.sleep(0)  # asyncio reports an unread error from a callback
    assert "never retrieved" not in caplog.text
