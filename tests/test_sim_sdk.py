"""The simulator's SDK websocket API, driven by the official ``lmstudio`` SDK and by raw sockets.

The SDK checks what the official client expects (message shapes, the auth handshake, its own
errors); raw sockets check what the SDK hides (``ttlMs``, ``lastUsedTime``, processing states,
communication warnings). Every test runs a real simulator on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import lmstudio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from lmgui.sim import ManualClock, Simulator
from lmgui.sim.__main__ import build_parser
from lmgui.sim.sdk import AUTH_INVALID_TOKEN, AUTH_TOKEN_REQUIRED
from tests.conftest import SimFactory, wait_until

TOKEN = "sk-lm-Abcd1234:abcdefghij0123456789"
WAIT = 10.0  # seconds: the bound on every wait for a server message


def host_of(sim: Simulator) -> str:
    return f"127.0.0.1:{sim.port}"


@contextlib.asynccontextmanager
async def sdk(sim: Simulator, token: str | None = None) -> AsyncIterator[lmstudio.AsyncClient]:
    """The official async client on the simulator's port (the host always given explicitly)."""
    async with lmstudio.AsyncClient(host_of(sim), api_token=token) as client:
        yield client


async def rest_instances(sim: Simulator) -> dict[str, dict[str, Any]]:
    """REST ``loaded_instances`` by id, each with its model key added."""
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.get("/api/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    r.raise_for_status()
    return {
        i["id"]: {**i, "key": m["key"]} for m in r.json()["models"] for i in m["loaded_instances"]
    }


async def rest_load(sim: Simulator, model: str, **options: Any) -> str:
    async with httpx.AsyncClient(base_url=sim.url, timeout=WAIT) as h:
        r = await h.post("/api/v1/models/load", json={"model": model, **options})
    r.raise_for_status()
    return str(r.json()["instance_id"])


class RawSdk:
    """A bare client of one namespace socket: the wire protocol with nothing hidden."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def next(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
        return message

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def call_raw(self, endpoint: str, parameter: Any = None) -> dict[str, Any]:
        """The rpcResult or rpcError answering one call (other messages are skipped)."""
        call_id = next(self._ids)
        message: dict[str, Any] = {"type": "rpcCall", "endpoint": endpoint, "callId": call_id}
        if parameter is not None:
            message["parameter"] = parameter
        await self.send(message)
        while True:
            answer = await self.next()
            if answer.get("callId") == call_id:
                return answer

    async def call(self, endpoint: str, parameter: Any = None) -> Any:
        answer = await self.call_raw(endpoint, parameter)
        assert answer["type"] == "rpcResult", answer
        return answer.get("result")

    async def channel(self, endpoint: str, parameter: Any) -> list[dict[str, Any]]:
        """Every message of one channel, up to and including its channelClose/channelError."""
        channel_id = next(self._ids)
        await self.send(
            {
                "type": "channelCreate",
                "endpoint": endpoint,
                "channelId": channel_id,
                "creationParameter": parameter,
            }
        )
        seen = []
        while True:
            message = await self.next()
            if message.get("channelId") != channel_id:
                continue
            seen.append(message)
            if message["type"] in ("channelClose", "channelError"):
                return seen


@contextlib.asynccontextmanager
async def raw_socket(
    sim: Simulator,
    namespace: str,
    ident: str = "guest:raw-test",
    passkey: str = "raw-passkey",
) -> AsyncIterator[RawSdk]:
    async with connect(f"ws://{host_of(sim)}/{namespace}", open_timeout=WAIT) as ws:
        raw = RawSdk(ws)
        await raw.send({"authVersion": 1, "clientIdentifier": ident, "clientPasskey": passkey})
        assert await raw.next() == {"success": True}
        yield raw


def by_identifier(query: str) -> dict[str, Any]:
    return {"type": "query", "query": {"identifier": query}}


# ----------------------------------------------------------------------------- the probe


async def test_the_greeting_says_lmstudio_even_when_a_token_is_required(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(token=TOKEN)
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.get("/lmstudio-greeting")
        assert r.status_code == 200 and r.json() == {"lmstudio": True}
        assert (await h.get("/api/v1/models")).status_code == 401  # REST still needs the token


# ----------------------------------------------------------------------------- the official SDK


async def test_sdk_lists_the_catalog_and_the_loaded_instances(sim: Simulator) -> None:
    rest_id = await rest_load(sim, "google/gemma-3-270m", context_length=8192)
    await rest_load(sim, "text-embedding-nomic-embed-text-v1.5")
    async with sdk(sim) as client:
        downloaded = await client.list_downloaded_models()
        keys = {m.model_key for m in downloaded}
        assert keys == {e["key"] for e in sim.state.list_models()}
        assert {m.type for m in downloaded} == {"llm", "embedding"}
        llms = await client.llm.list_downloaded()
        assert all(m.type == "llm" for m in llms)
        mlx = next(m for m in llms if m.model_key.startswith("mlx-community/"))
        assert mlx.info.format == "safetensors"  # REST's "mlx" is the SDK's safetensors

        loaded = await client.llm.list_loaded()
        assert [m.identifier for m in loaded] == [rest_id]  # a REST load, seen over the SDK
        info = await loaded[0].get_info()
        assert info.model_key == "google/gemma-3-270m" and info.context_length == 8192
        assert [m.identifier for m in await client.embedding.list_loaded()] == [
            "text-embedding-nomic-embed-text-v1.5"
        ]


async def test_sdk_load_with_config_ttl_and_identifier_is_one_state_with_rest(
    sim: Simulator,
) -> None:
    progress: list[float] = []
    async with sdk(sim) as client:
        model = await client.llm.load_new_instance(
            "google/gemma-3-270m",
            "my-gemma",
            ttl=90,
            config={
                "contextLength": 8192,
                "gpu": {"ratio": 0.5},
                "flashAttention": False,
                "evalBatchSize": 256,
                "offloadKVCacheToGpu": False,
            },
            on_load_progress=progress.append,
        )
        assert model.identifier == "my-gemma"
        assert progress[-1] == 1.0 and progress == sorted(progress)

        rest = await rest_instances(sim)
        assert rest["my-gemma"]["key"] == "google/gemma-3-270m"
        assert rest["my-gemma"]["config"] == {
            "context_length": 8192,
            "eval_batch_size": 256,
            "parallel": 4,
            "flash_attention": False,
            "offload_kv_cache_to_gpu": False,
        }
        inst = sim.state.instances["my-gemma"]
        assert inst.ttl == 90 and inst.gpu == 0.5  # the server's TTL, the requested offload

        info = await model.get_info()
        assert info.identifier == "my-gemma" and info.context_length == 8192
        config = await model.get_load_config()
        assert isinstance(config, lmstudio.LlmLoadModelConfig)
        assert config.context_length == 8192
        assert config.gpu is not None and config.gpu.ratio == 0.5
        assert config.flash_attention is False and config.eval_batch_size == 256
        assert config.offload_kv_cache_to_gpu is False
        assert await model.get_context_length() == 8192


async def test_sdk_gpu_max_and_off_round_trip(sim: Simulator) -> None:
    async with sdk(sim) as client:
        on = await client.llm.load_new_instance(
            "google/gemma-3-270m", "on", config={"gpu": {"ratio": "max"}}
        )
        off = await client.llm.load_new_instance(
            "google/gemma-3-270m", "off", config={"gpu": {"ratio": "off"}}
        )
        on_cfg, off_cfg = await on.get_load_config(), await off.get_load_config()
        assert on_cfg.gpu is not None and on_cfg.gpu.ratio == "max"
        assert off_cfg.gpu is not None and off_cfg.gpu.ratio == "off"
        assert sim.state.instances["off"].vram_bytes == 0


async def test_sdk_load_errors_are_the_sdks_own(sim: Simulator) -> None:
    async with sdk(sim) as client:
        await client.llm.load_new_instance("google/gemma-3-270m", "taken")
        with pytest.raises(lmstudio.LMStudioServerError, match="already loaded"):
            await client.llm.load_new_instance("qwen/qwen3-4b", "taken")
        with pytest.raises(lmstudio.LMStudioModelNotFoundError):
            await client.llm.load_new_instance("nobody/nothing")
        with pytest.raises(lmstudio.LMStudioServerError, match="exceeds the model's maximum"):
            await client.llm.load_new_instance(
                "google/gemma-3-270m", config={"contextLength": 10_000_000}
            )
        with pytest.raises(lmstudio.LMStudioServerError, match='not "llm"'):
            await client.llm.load_new_instance("text-embedding-nomic-embed-text-v1.5")
        with pytest.raises(lmstudio.LMStudioModelNotFoundError):
            await client.llm.get_model_info("no-such-instance")
    assert set(await rest_instances(sim)) == {"taken"}  # the failed loads left nothing behind


async def test_sdk_unload_is_seen_over_rest_and_rest_unload_over_the_sdk(sim: Simulator) -> None:
    async with sdk(sim) as client:
        model = await client.llm.load_new_instance("google/gemma-3-270m", "a")
        other = await rest_load(sim, "qwen/qwen3-4b")
        await model.unload()
        assert set(await rest_instances(sim)) == {other}
        sim.state.unload(other)
        assert await client.llm.list_loaded() == []
        with pytest.raises(lmstudio.LMStudioServerError, match="No model found"):
            await client.llm.unload("a")


async def test_sdk_get_or_load_loads_once_as_jit(sim: Simulator) -> None:
    async with sdk(sim) as client:
        first = await client.llm.model("qwen/qwen3-4b", ttl=300)
        again = await client.llm.model("qwen/qwen3-4b")
        assert first.identifier == again.identifier == "qwen/qwen3-4b"
        assert [m.identifier for m in await client.llm.list_loaded()] == ["qwen/qwen3-4b"]
    inst = sim.state.instances["qwen/qwen3-4b"]
    assert inst.jit and inst.ttl == 300


async def test_sdk_ttl_expires_on_the_simulators_clock(sim: Simulator, clock: ManualClock) -> None:
    async with sdk(sim) as client:
        await client.llm.load_new_instance("google/gemma-3-270m", "short", ttl=60)
        clock.advance(59)
        assert [m.identifier for m in await client.llm.list_loaded()] == ["short"]
        clock.advance(2)
        assert await client.llm.list_loaded() == []
    assert await rest_instances(sim) == {}
    assert ("expired", "short") in sim.state.events


async def test_sdk_with_the_right_token_is_accepted(make_sim: SimFactory) -> None:
    sim = make_sim(token=TOKEN)
    async with sdk(sim, TOKEN) as client:
        await client.llm.load_new_instance("google/gemma-3-270m", "tokened")
        assert "tokened" in await rest_instances(sim)


@pytest.mark.parametrize(
    ("token", "refusal"),
    [
        ("sk-lm-Abcd1234:abcdefghij0123456788", AUTH_INVALID_TOKEN),  # wrong passkey
        ("sk-lm-Xbcd1234:abcdefghij0123456789", AUTH_INVALID_TOKEN),  # wrong identifier
        (None, AUTH_TOKEN_REQUIRED),  # a guest
    ],
)
async def test_sdk_with_a_wrong_token_or_none_is_refused_with_its_auth_error(
    make_sim: SimFactory, token: str | None, refusal: str
) -> None:
    sim = make_sim(token=TOKEN)
    client = lmstudio.AsyncClient(host_of(sim), api_token=token)
    try:
        with pytest.raises(lmstudio.LMStudioServerError, match="Authentication failed") as err:
            await client.__aenter__()
    finally:
        await client.aclose()  # a failed __aenter__ leaves the SDK's task manager to close
    assert refusal in str(err.value)


async def test_without_the_sdk_api_the_sdk_and_websockets_are_refused(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(sdk_api=False)
    async with httpx.AsyncClient(base_url=sim.url) as h:
        assert (await h.get("/lmstudio-greeting")).status_code == 404
        assert (await h.get("/api/v1/models")).status_code == 200  # REST is still there
    client = lmstudio.AsyncClient(host_of(sim))
    try:
        with pytest.raises(lmstudio.LMStudioClientError, match="not reachable"):
            await client.__aenter__()
    finally:
        await client.aclose()
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"ws://{host_of(sim)}/llm", open_timeout=WAIT)
    assert refused.value.response.status_code == 403
    assert [r.path for r in sim.received("WEBSOCKET", "/llm")] == ["/llm"]


def test_the_command_line_turns_the_sdk_api_off() -> None:
    assert build_parser().parse_args(["--no-sdk-api"]).no_sdk_api is True
    assert build_parser().parse_args([]).no_sdk_api is False


# ----------------------------------------------------------------------------- raw sockets


async def test_list_loaded_has_ttl_ms_and_last_used_time_that_rest_chat_moves(
    sim: Simulator, clock: ManualClock
) -> None:
    rest_id = await rest_load(sim, "google/gemma-3-270m")
    async with raw_socket(sim, "llm") as raw:
        await raw.channel(
            "loadModel",
            {
                "modelKey": "qwen/qwen3-4b",
                "identifier": "with-ttl",
                "ttlMs": 600_000,
                "loadConfigStack": {"layers": []},
            },
        )
        before = {i["identifier"]: i for i in await raw.call("listLoaded")}
        assert before[rest_id]["ttlMs"] is None  # REST loads have no TTL
        assert before["with-ttl"]["ttlMs"] == 600_000
        assert abs(before[rest_id]["lastUsedTime"] - time.time() * 1000) < 60_000

        clock.advance(30)
        async with httpx.AsyncClient(base_url=sim.url, timeout=WAIT) as h:
            r = await h.post("/api/v1/chat", json={"model": rest_id, "input": "hello"})
            assert r.status_code == 200
        after = {i["identifier"]: i for i in await raw.call("listLoaded")}
        moved = after[rest_id]["lastUsedTime"] - before[rest_id]["lastUsedTime"]
        assert abs(moved - 30_000) <= 1  # the chat reset the idle timer, by the sim's clock
        assert after["with-ttl"]["lastUsedTime"] == before["with-ttl"]["lastUsedTime"]
        info = await raw.call(
            "getModelInfo", {"specifier": by_identifier(rest_id), "throwIfNotFound": True}
        )
        assert info["lastUsedTime"] == after[rest_id]["lastUsedTime"]
        assert info["instanceReference"] and info["deviceIdentifier"] is None


async def test_processing_state_is_generating_during_a_slow_rest_stream(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(tokens_per_second=20.0, answer_tokens=400)  # a 20 s answer
    iid = await rest_load(sim, "google/gemma-3-270m")
    async with raw_socket(sim, "llm") as raw:

        async def state() -> dict[str, Any]:
            param = {"specifier": by_identifier(iid), "throwIfNotFound": True}
            result: dict[str, Any] = await raw.call("getInstanceProcessingState", param)
            return result

        assert await state() == {"status": "idle", "queued": 0}
        async with (
            httpx.AsyncClient(base_url=sim.url, timeout=WAIT) as h,
            h.stream(
                "POST", "/api/v1/chat", json={"model": iid, "input": "hi", "stream": True}
            ) as r,
        ):
            lines = r.aiter_lines()
            async for line in lines:
                if line == "event: message.delta":
                    break
            assert await state() == {"status": "generating", "queued": 1}
            # leaving the block mid-answer drops the stream

        async def idle() -> bool:
            return bool((await state())["status"] == "idle")

        await wait_until(idle, within=WAIT)


async def test_a_busy_instance_does_not_expire(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim(clock=clock, tokens_per_second=20.0, answer_tokens=400)
    async with sdk(sim) as client:
        await client.llm.load_new_instance("google/gemma-3-270m", "busy", ttl=10)
        async with (
            httpx.AsyncClient(base_url=sim.url, timeout=WAIT) as h,
            h.stream(
                "POST", "/api/v1/chat", json={"model": "busy", "input": "x", "stream": True}
            ) as r,
        ):
            async for line in r.aiter_lines():
                if line == "event: message.delta":
                    break
            clock.advance(60)
            assert "busy" in await rest_instances(sim)  # working: the idle timer waits

        async def idle() -> bool:
            return not sim.state.instances["busy"].busy

        await wait_until(idle, within=WAIT)  # the dropped stream has ended its work
        assert "busy" in await rest_instances(sim)  # its end reset the idle timer
        clock.advance(11)
        assert "busy" not in await rest_instances(sim)


async def test_load_model_channel_messages(sim: Simulator) -> None:
    async with raw_socket(sim, "llm") as raw:
        messages = await raw.channel(
            "loadModel",
            {
                "modelKey": "google/gemma-3-270m",
                "loadConfigStack": {
                    "layers": [
                        {
                            "layerName": "apiOverride",
                            "config": {
                                "fields": [
                                    {"key": "llm.load.contextLength", "value": 2048},
                                    {"key": "llm.load.numParallelSessions", "value": 2},
                                    {
                                        "key": "llm.load.llama.acceleration.offloadRatio",
                                        "value": 0.25,
                                    },
                                ]
                            },
                        }
                    ]
                },
            },
        )
    kinds = [m["message"]["type"] if m["type"] == "channelSend" else m["type"] for m in messages]
    assert kinds[0] == "resolved" and kinds[-2:] == ["success", "channelClose"]
    assert set(kinds[1:-2]) == {"progress"}
    assert messages[0]["message"]["info"]["modelKey"] == "google/gemma-3-270m"
    success = messages[-2]["message"]["info"]
    assert success["identifier"] == "google/gemma-3-270m" and success["contextLength"] == 2048
    assert sim.state.instances["google/gemma-3-270m"].config["parallel"] == 2
    async with raw_socket(sim, "llm", ident="guest:second") as raw:
        config = await raw.call(
            "getLoadConfig", {"specifier": by_identifier(success["identifier"])}
        )
    fields = {f["key"]: f["value"] for f in config["fields"]}
    assert fields["llm.load.numParallelSessions"] == 2
    assert fields["llm.load.llama.acceleration.offloadRatio"] == 0.25


async def test_unknown_and_unimplemented_endpoints_answer_like_the_real_server(
    sim: Simulator,
) -> None:
    async with raw_socket(sim, "llm") as raw:
        await raw.send({"type": "keepAlive"})
        assert await raw.next() == {"type": "keepAliveAck"}
        await raw.send({"type": "rpcCall", "endpoint": "noSuchThing", "callId": 99})
        warning = await raw.next()
        assert warning["type"] == "communicationWarning"
        assert warning["kind"] == "rpcEndpointUnknown" and "noSuchThing" in warning["warning"]
        answer = await raw.call_raw("tokenize", {"specifier": by_identifier("x")})
        assert answer["type"] == "rpcError" and "not implemented" in answer["error"]["title"]
        missing = await raw.call_raw(
            "getModelInfo", {"specifier": by_identifier("x"), "throwIfNotFound": False}
        )
        assert missing == {"type": "rpcResult", "callId": missing["callId"]}  # undefined
        await raw.send({"type": "channelCreate", "endpoint": "nope", "channelId": 1})
        assert (await raw.next())["kind"] == "channelEndpointUnknown"
        assert await raw.call("listLoaded") == []  # the socket still serves


async def test_every_namespace_the_sdks_open_accepts_a_client(sim: Simulator) -> None:
    names = [
        "llm",
        "embedding",
        "system",
        "files",
        "repository",
        "diagnostics",
        "plugins",
        "runtime",
    ]
    for name in names:
        async with raw_socket(sim, name) as raw:
            await raw.send({"type": "keepAlive"})
            assert await raw.next() == {"type": "keepAliveAck"}
    with pytest.raises(InvalidStatus):
        await connect(f"ws://{host_of(sim)}/nowhere", open_timeout=WAIT)


async def test_hardware_survey_and_version(make_sim: SimFactory) -> None:
    sim = make_sim(vram_gb=12.0)
    async with raw_socket(sim, "runtime") as raw:
        survey = await raw.call("surveyHardware")
    gpus = survey["engines"][0]["hardwareSurvey"]["gpuSurveyResult"]["gpuInfo"]
    assert [g["totalMemoryCapacityBytes"] for g in gpus] == [12_000_000_000]
    assert survey["engines"][0]["memoryInfo"]["vramCapacity"] == 12_000_000_000
    async with raw_socket(sim, "system") as raw:
        version = await raw.call("version")
    assert set(version) == {"version", "build"}


async def test_auth_packet_rules(sim: Simulator) -> None:
    async with connect(f"ws://{host_of(sim)}/system", open_timeout=WAIT) as ws:
        raw = RawSdk(ws)
        await raw.send({"authVersion": 2, "clientIdentifier": "a", "clientPasskey": "b"})
        await raw.send({"authVersion": 1, "clientIdentifier": "guest:a", "clientPasskey": "b"})
        assert await raw.next() == {"success": True}  # the bad packet was ignored
        # First come, first served: the same identifier with another passkey is refused.
        async with connect(f"ws://{host_of(sim)}/llm", open_timeout=WAIT) as other:
            second = RawSdk(other)
            await second.send(
                {"authVersion": 1, "clientIdentifier": "guest:a", "clientPasskey": "c"}
            )
            refusal = await second.next()
            assert refusal["success"] is False and "Invalid client passkey" in refusal["error"]


async def test_stop_is_prompt_with_websocket_clients_connected(make_sim: SimFactory) -> None:
    sim = make_sim()
    async with sdk(sim) as client, raw_socket(sim, "system") as raw:
        await client.llm.load_new_instance("google/gemma-3-270m")
        await raw.send({"type": "channelCreate", "endpoint": "alive", "channelId": 7})
        started = time.monotonic()
        await asyncio.to_thread(sim.stop)
        assert time.monotonic() - started < 3.0


async def test_sdk_predict_is_a_use_that_resets_the_idle_timer(
    sim: Simulator, clock: ManualClock
) -> None:
    async with sdk(sim) as client:
        model = await client.llm.load_new_instance("google/gemma-3-270m", "talker", ttl=60)
        clock.advance(50)
        fragments: list[str] = []
        result = await model.respond(
            "hello there", on_prediction_fragment=lambda f: fragments.append(f.content)
        )
        assert "You said" in result.content and result.content == "".join(fragments)
        assert result.stats.stop_reason == "eosFound"
        assert result.model_info.model_key == "google/gemma-3-270m"
        clock.advance(50)  # 100 s after the load, but only 50 after the answer
        assert [m.identifier for m in await client.llm.list_loaded()] == ["talker"]
        short = await model.respond("again", config={"maxTokens": 3})
        assert short.stats.stop_reason == "maxPredictedTokensReached"
        assert short.stats.predicted_tokens_count == 3


async def test_get_or_load_evicts_the_previous_jit_load_and_says_so(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url, timeout=WAIT) as h:
        r = await h.post("/api/v1/chat", json={"model": "qwen/qwen3-4b", "input": "hi"})
        assert r.json()["model_instance_id"] == "qwen/qwen3-4b"  # a JIT load over REST
    async with raw_socket(sim, "llm") as raw:
        stack: dict[str, Any] = {"layers": []}
        messages = await raw.channel(
            "getOrLoad", {"identifier": "google/gemma-3-270m", "loadConfigStack": stack}
        )
        kinds = [m["message"]["type"] for m in messages if m["type"] == "channelSend"]
        assert kinds[:2] == ["unloadingOtherJITModel", "startLoading"]
        assert kinds[-1] == "loadSuccess" and set(kinds[2:-1]) == {"loadProgress"}
        assert messages[0]["message"]["info"]["identifier"] == "qwen/qwen3-4b"
        assert messages[-1]["type"] == "channelClose"
        again = await raw.channel(
            "getOrLoad", {"identifier": "google/gemma-3-270m", "loadConfigStack": stack}
        )
        assert again[0]["message"]["type"] == "alreadyLoaded"
        estimate = await raw.call(
            "estimateModelUsage", {"modelKey": "qwen/qwen3.5-9b", "loadConfigStack": stack}
        )
        memory = estimate["memory"]
        assert memory["totalVramBytes"] == memory["modelVramBytes"] + memory["contextVramBytes"]
        assert estimate["passesGuardrails"] is True
    assert set(await rest_instances(sim)) == {"google/gemma-3-270m"}
