"""The client on LM Studio's SDK channel, against the simulator over real sockets: loads with every
option applied by the server, the instance truth merged into each poll, the fallback to REST, and
the token on the new path."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import Any

import pytest

from lmgui.api import ApiError, AuthError, Instance, LMStudioClient, Model
from lmgui.sim import ManualClock, Simulator
from tests.conftest import SimFactory, wait_until

TOKEN = "sk-lm-Zq8Xb2Rt:Vw9Lp4Km7Nh3Jd6FAbCd"


def wall(sim: Simulator, clock: ManualClock) -> float:
    """The simulator's clock as the server's wall time (what ``last_used`` is measured in)."""
    return sim.state.wall_ms(clock.now) / 1000


def loaded(models: Sequence[Model] | None) -> dict[str, Instance]:
    return {i.id: i for m in models or () for i in m.instances}


async def test_a_load_with_gpu_ttl_and_identifier_is_applied_by_the_server(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim(clock=clock, token=TOKEN)
    progress: list[float] = []
    async with LMStudioClient(sim.url, TOKEN, lms=None) as c:
        result = await c.load(
            "qwen/qwen3-4b",
            gpu=0.5,
            ttl=300,
            identifier="my-qwen",
            context_length=8192,
            on_progress=progress.append,
        )
        assert (result.instance_id, result.via, result.not_applied) == ("my-qwen", "sdk", ())
        assert result.load_config["context_length"] == 8192
        assert progress and progress == sorted(progress) and progress[-1] <= 1.0
        models = await c.poll_models()
        assert models is not None
        inst = loaded(models)["my-qwen"]
    assert inst.gpu_offload == 0.5
    assert inst.ttl_seconds == 300
    assert inst.status == "idle"
    assert inst.ttl_left(wall(sim, clock)) == pytest.approx(300, abs=1)


async def test_parallel_is_applied_by_the_server_on_the_sdk_channel(sim: Simulator) -> None:
    async with LMStudioClient(sim.url, lms=None) as c:
        result = await c.load("google/gemma-3-270m", ttl=60, parallel=2)
        listed = await c.list_models(with_truth=True)
    assert result.via == "sdk" and result.not_applied == () and result.not_applied_reason is None
    assert sim.state.instances[result.instance_id].config["parallel"] == 2
    (inst,) = [i for m in listed for i in m.instances if i.id == result.instance_id]
    assert inst.parallel == 2


async def test_the_servers_ttl_starts_again_when_another_client_chats(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim(clock=clock)
    async with (
        LMStudioClient(sim.url, lms=None) as c,
        LMStudioClient(sim.url, lms=None, sdk=False) as other,
    ):
        await c.load("google/gemma-3-270m", ttl=300, identifier="g")
        clock.advance(100)
        first = loaded(await c.poll_models() or [])["g"]
        assert first.ttl_left(wall(sim, clock)) == pytest.approx(200, abs=1)
        await other.chat("g", "hello")  # another app uses the instance
        again = await c.poll_models()
        assert again is not None, "the server's last use changed: that is a change"
        inst = loaded(again)["g"]
    assert inst.ttl_left(wall(sim, clock)) == pytest.approx(300, abs=1)


async def test_an_instance_answering_is_generating(make_sim: SimFactory) -> None:
    sim = make_sim(tokens_per_second=20.0)
    async with (
        LMStudioClient(sim.url, lms=None) as c,
        LMStudioClient(sim.url, lms=None, sdk=False) as other,
    ):
        await c.load("google/gemma-3-270m", ttl=600, identifier="g")
        seen: list[str | None] = []

        async def answer() -> None:
            async with other.chat_stream("g", "tell me a long story") as stream:
                async for ev in stream:
                    if ev.type == "message.delta" and not seen:
                        models = await c.poll_models()
                        seen.append(loaded(models or [])["g"].status)

        await asyncio.wait_for(answer(), 60)
        after = loaded(await c.list_models() or [])
        assert seen == ["generating"]
        final = await c.poll_models()
        assert final is not None and loaded(final)["g"].status == "idle"
        assert "g" in after


async def test_without_the_channel_loads_fall_back_to_rest(rest_sim: Simulator) -> None:
    async with LMStudioClient(rest_sim.url, lms=None) as c:
        result = await c.load("google/gemma-3-270m", ttl=600, gpu=0.5)
        models = await c.poll_models()
        assert c.sdk is not None
        assert c.sdk.unavailable == "the server does not offer LM Studio's SDK channel"
    assert result.via == "rest" and result.not_applied == ("gpu", "ttl")
    inst = loaded(models or [])["google/gemma-3-270m"]
    assert inst.ttl_seconds is None and inst.gpu_offload is None


async def test_a_wrong_token_on_the_channel_is_one_sentence_without_it(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(token=TOKEN)
    wrong = "sk-lm-Zq8Xb2Rt:AAAAAAAAAAAAAAAAAAAA"
    async with LMStudioClient(sim.url, wrong, lms=None) as c:
        with pytest.raises(AuthError) as info:
            await c.load("google/gemma-3-270m", ttl=60)
    said = str(info.value)
    assert said.startswith(f"LM Studio at {sim.url} refused the API token on its SDK channel: ")
    assert said.endswith("Check the token in lmgui's settings.")
    assert "AAAAAAAAAA" not in said and "Zq8Xb2Rt" not in said


async def test_a_token_that_is_not_lm_studios_keeps_to_rest(make_sim: SimFactory) -> None:
    sim = make_sim(token="proxy-token-123456")
    async with LMStudioClient(sim.url, "proxy-token-123456", lms=None) as c:
        models = await c.poll_models()
        assert c.sdk is not None
        assert c.sdk.unavailable == "the API token is not an LM Studio token (sk-lm-...)"
    assert models is not None


async def test_an_error_on_the_channel_leaves_the_poll_to_rest(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("google/gemma-3-270m", ttl=60, identifier="g")
        handler = sim.sdk.rpc_handler

        def older_server(namespace: str, endpoint: str) -> object:
            return None if endpoint == "listLoaded" else handler(namespace, endpoint)

        # A server without the endpoint: it answers the call with an rpcError.
        monkeypatch.setattr(sim.sdk, "rpc_handler", older_server)
        models = await c.poll_models()
    assert models is not None and "g" in loaded(models)
    assert loaded(models)["g"].status is None, "REST's figures, without the channel's"
    assert "answered listLoaded on its SDK channel with an error" in caplog.text


async def test_the_servers_gpus_and_vram_come_from_its_hardware_survey(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(vram_gb=48.0, token=TOKEN)
    async with LMStudioClient(sim.url, TOKEN, lms=None) as c:
        hardware = await c.server_hardware()
    assert hardware is not None
    assert hardware.vram_bytes == 48 * 10**9
    assert [g.name for g in hardware.gpus] == ["Simulated GPU (lmgui-sim)"]


async def test_without_the_channel_there_is_no_survey_and_no_server_estimate(
    rest_sim: Simulator,
) -> None:
    async with LMStudioClient(rest_sim.url, lms=None) as c:
        assert await c.server_hardware() is None
        assert await c.estimate_load("qwen/qwen3-4b", context_length=8192) is None


async def test_lm_studios_estimate_follows_the_load_options_and_says_what_fits(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(vram_gb=8.0)
    async with LMStudioClient(sim.url, lms=None) as c:
        small = await c.estimate_load("qwen/qwen3-4b", context_length=4096)
        long = await c.estimate_load("qwen/qwen3-4b", context_length=32768)
        half = await c.estimate_load("qwen/qwen3-4b", context_length=4096, gpu=0.5)
        parallel = await c.estimate_load("qwen/qwen3-4b", context_length=4096, parallel=8)
        big = await c.estimate_load("qwen/qwen3.5-9b", context_length=262144)
    assert small is not None and long is not None and half is not None and big is not None
    assert small.passes_guardrails is True and big.passes_guardrails is False
    assert long.vram_bytes > small.vram_bytes > half.vram_bytes > 0
    assert parallel is not None  # the server took the parallel field LM Studio uses
    assert not sim.state.instances  # an estimate loads nothing


async def test_a_token_in_the_environment_is_never_sent_to_the_configured_server(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A token meant for another server, where the SDK would look when lmgui has none.
    for name in ("LMSTUDIO_API_TOKEN", "LM_API_TOKEN"):  # the SDK's, and LM Studio docs' name
        monkeypatch.setenv(name, "sk-lm-Other123:Abcdefghij0123456789")
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.list_models(with_truth=True)
        assert await c.server_hardware() is not None  # lmgui's own socket too
        assert c.sdk is not None and c.sdk.connected
        held = set(sim.sdk.identities._held)
    assert held and all(i.startswith("guest:") for i in held)


async def test_a_server_slower_than_the_sdks_own_probe_loads_over_rest_and_still_tells_the_truth(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(latency_ms=1500)  # every answer takes 1.5 s: past the SDK's 1 s probe
    async with LMStudioClient(sim.url, lms=None) as c:
        result = await c.load("google/gemma-3-270m", ttl=600)  # no error: over REST
        models = await c.poll_models()
        assert c.sdk is not None and c.sdk.client_unavailable is not None
    assert result.via == "rest"
    # lmgui's own sockets wait as long as REST does: the poll has the channel's figures.
    assert loaded(models)["google/gemma-3-270m"].status == "idle"


async def test_opening_the_channel_builds_no_tls_context(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building one loads the CA bundle (about 20 ms of the GUI thread): the channel's probe and
    its sockets use lmgui's one context, so a server coming back does not stall the window."""
    from lmgui.api.transport import tls_context

    tls_context()  # the one shared context, built once per process
    built: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        built.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    async with LMStudioClient(sim.url, None, lms=None) as c:
        models = await c.poll_models()
        assert c.sdk is not None and c.sdk.connected  # the channel opened
    assert models is not None
    assert built == []


# ------------------------------------------------------------------ polls that reuse the list


def lists_asked(sim: Simulator) -> int:
    return len(sim.received("GET", "/api/v1/models"))


async def test_a_steady_server_is_asked_only_the_truth_while_the_list_is_reused(
    sim: Simulator, clock: ManualClock
) -> None:
    sim.state.finish_load(sim.state.begin_load("google/gemma-3-270m", {}).id)
    async with (
        LMStudioClient(sim.url, lms=None) as c,
        LMStudioClient(sim.url, lms=None, sdk=False) as other,
    ):
        first = await c.poll_models(reuse_list_for=30)
        asked = lists_asked(sim)
        assert await c.poll_models(reuse_list_for=30) is None  # nothing changed
        clock.advance(5)
        await other.chat("google/gemma-3-270m", "hi")  # another client uses the instance
        used = await c.poll_models(reuse_list_for=30)
        assert lists_asked(sim) == asked, "only the channel was asked"
        full = await c.list_models(with_truth=True)
    before = loaded(first)["google/gemma-3-270m"].last_used
    after = loaded(used)["google/gemma-3-270m"].last_used
    assert before is not None and after is not None and after > before
    assert after == pytest.approx(wall(sim, clock), abs=0.01)
    assert used == full, "the same models as a poll that asks everything"


async def test_an_instance_loaded_or_unloaded_elsewhere_asks_the_list_again(
    sim: Simulator,
) -> None:
    sim.state.finish_load(sim.state.begin_load("google/gemma-3-270m", {}).id)
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.poll_models(reuse_list_for=30)
        other = sim.state.begin_load("qwen/qwen3-4b", {})
        # Loading: the list shows it, the channel not yet; a reused list misses it until it
        # finishes (the window asks every poll; this is the tray's rate).
        assert await c.poll_models(reuse_list_for=30) is None
        sim.state.finish_load(other.id)
        asked = lists_asked(sim)
        loaded_elsewhere = await c.poll_models(reuse_list_for=30)
        assert lists_asked(sim) == asked + 1
        sim.state.unload("google/gemma-3-270m")
        unloaded_elsewhere = await c.poll_models(reuse_list_for=30)
        assert lists_asked(sim) == asked + 2
    assert set(loaded(loaded_elsewhere)) == {"google/gemma-3-270m", "qwen/qwen3-4b"}
    assert loaded(loaded_elsewhere)["qwen/qwen3-4b"].status == "idle"
    assert set(loaded(unloaded_elsewhere)) == {"qwen/qwen3-4b"}


async def test_the_list_is_asked_again_once_it_is_older_than_the_reuse_time(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    async with LMStudioClient(sim.url, lms=None) as c:
        monkeypatch.setattr(c, "_monotonic", lambda: now[0])
        await c.poll_models(reuse_list_for=30)
        asked = lists_asked(sim)
        now[0] += 29
        await c.poll_models(reuse_list_for=30)
        assert lists_asked(sim) == asked
        now[0] += 2
        await c.poll_models(reuse_list_for=30)
        assert lists_asked(sim) == asked + 1
        await c.poll_models()  # reuse 0: a poll asked for, or the window shown
        assert lists_asked(sim) == asked + 2


async def test_without_the_channel_every_poll_asks_the_list(rest_sim: Simulator) -> None:
    async with LMStudioClient(rest_sim.url, lms=None) as c:
        await c.poll_models(reuse_list_for=30)
        asked = lists_asked(rest_sim)
        await c.poll_models(reuse_list_for=30)
    assert lists_asked(rest_sim) == asked + 1


async def test_an_instance_loaded_again_under_the_same_identifier_asks_the_list_again(
    sim: Simulator,
) -> None:
    first = sim.state.begin_load("qwen/qwen3-4b", {"context_length": 4096})
    sim.state.finish_load(first.id)
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.poll_models(reuse_list_for=30)
        sim.state.unload(first.id)  # another client loads it again, with a longer context
        again = sim.state.begin_load("qwen/qwen3-4b", {"context_length": 8192})
        sim.state.finish_load(again.id)
        assert again.id == first.id
        models = await c.poll_models(reuse_list_for=30)
    assert loaded(models)["qwen/qwen3-4b"].config["context_length"] == 8192


async def test_a_channel_closed_while_its_sockets_open_keeps_none_of_them(
    make_sim: SimFactory,
) -> None:
    sim = make_sim()
    async with LMStudioClient(sim.url, lms=None) as c:
        assert c.sdk is not None
        await c.poll_models()  # greeted, sockets open
        for sock in list(c.sdk._sockets.values()):
            await sock.aclose()  # broken: the next poll opens new ones
        opening = asyncio.ensure_future(c.sdk.truth())
        while not c.sdk._sockets_lock().locked():  # noqa: ASYNC110 (a step of the loop each)
            await asyncio.sleep(0)
        await c.sdk.aclose()  # as a token change closes the old client mid-poll
        with contextlib.suppress(ApiError):
            await opening
        assert c.sdk.closed and not c.sdk._sockets

    async def all_gone() -> bool:
        return not sim.sdk.identities._held

    await wait_until(all_gone)  # the server saw every socket of lmgui's go


async def test_a_channel_that_stops_opening_is_tried_again_only_after_a_while(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmgui.sim.sdk import SdkApi, refuse

    sim.state.finish_load(sim.state.begin_load("google/gemma-3-270m", {}).id)
    async with LMStudioClient(sim.url, lms=None) as c:
        assert c.sdk is not None
        await c.poll_models()
        for sock in list(c.sdk._sockets.values()):
            await sock.aclose()  # broken: the next poll opens new ones

        async def refuse_all(self: SdkApi, scope: object, receive: object, send: Any) -> None:
            await refuse(send)  # a proxy in between that now refuses websockets

        monkeypatch.setattr(SdkApi, "__call__", refuse_all)
        tried = len(sim.received("WEBSOCKET", "/llm"))
        first = await c.poll_models()
        assert len(sim.received("WEBSOCKET", "/llm")) == tried + 1
        second = await c.poll_models()
        assert len(sim.received("WEBSOCKET", "/llm")) == tried + 1, "not tried again at once"
    # Both polls keep REST's figures without the channel's.
    assert first is not None and loaded(first)["google/gemma-3-270m"].status is None
    assert second is None
