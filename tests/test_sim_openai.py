"""Third-party clients against lmgui-sim's OpenAI- and Anthropic-compatible surfaces, as they
would meet a real LM Studio: the official ``openai`` SDK's basic flows, tool calls, structured
output, the errors, JIT loads and busy instances that lmgui sees, and the token checks."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from lmgui.api import LMStudioClient
from lmgui.api.records import Instance
from lmgui.sim import ManualClock, Simulator
from lmgui.sim.__main__ import main as sim_main
from tests.conftest import SimFactory, wait_until

TOKEN = "sk-lm-Ab12Cd34:Ef56Gh78Ij90Kl12Mn34"
SMALL = "google/gemma-3-270m"
THINKER = "qwen/qwen3-4b"  # reasoning on by default, trained for tools
EMBEDDER = "text-embedding-nomic-embed-text-v1.5"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


def sdk(sim: Simulator, key: str = "lm-studio") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=sim.url + "/v1", api_key=key, max_retries=0)


async def loaded(sim: Simulator, token: str | None = None) -> dict[str, Instance]:
    """What lmgui's own client shows: instance id -> instance (the SDK channel's facts merged)."""
    async with LMStudioClient(sim.url, token, lms=None) as client:
        return {i.id: i for m in await client.list_models(with_truth=True) for i in m.instances}


async def test_the_openai_sdk_lists_models_and_chats(sim: Simulator) -> None:
    async with sdk(sim) as client:
        ids = [m.id async for m in client.models.list()]
        assert SMALL in ids and EMBEDDER in ids  # JIT is on: every downloaded model
        page = await client.models.list()
        assert {m.object for m in page.data} == {"model"}

        r = await client.chat.completions.create(
            model=THINKER,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name a prime number"},
            ],
        )
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == THINKER and r.system_fingerprint == THINKER
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content is not None
    assert "You said: \u201cName a prime number\u201d" in choice.message.content
    assert "(System: Be brief.)" in choice.message.content
    assert (choice.message.model_extra or {}).get("reasoning_content")  # a reasoning model
    assert r.usage is not None and r.usage.total_tokens == (
        r.usage.prompt_tokens + r.usage.completion_tokens
    )


async def test_a_streamed_chat_says_the_same_in_deltas_and_ends_with_done(
    sim: Simulator,
) -> None:
    messages: Any = [{"role": "user", "content": "Tell me about TTLs"}]
    async with sdk(sim) as client:
        whole = await client.chat.completions.create(model=SMALL, messages=messages)
        stream = await client.chat.completions.create(
            model=SMALL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        parts: list[str] = []
        finish = usage = None
        async for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
    assert "".join(parts) == whole.choices[0].message.content
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]

    body = {"model": SMALL, "messages": messages, "stream": True}
    async with httpx.AsyncClient(base_url=sim.url) as h:
        raw = await h.post("/v1/chat/completions", json=body)
    assert raw.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in raw.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0].removeprefix("data: "))["choices"][0]["delta"]["role"] == (
        "assistant"
    )


async def test_embeddings_float_and_base64_for_several_inputs(sim: Simulator) -> None:
    texts = ["the cat sat", "a dog ran", "the cat sat"]
    async with sdk(sim) as client:
        # The SDK asks for base64 by default and decodes it to floats itself.
        default = await client.embeddings.create(model=EMBEDDER, input=texts)
        floats = await client.embeddings.create(
            model=EMBEDDER, input=texts, encoding_format="float"
        )
    assert [d.index for d in default.data] == [0, 1, 2]
    assert {len(d.embedding) for d in floats.data} == {768}
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert floats.data[0].embedding == floats.data[2].embedding  # same text, same vector
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.model == EMBEDDER and floats.usage.prompt_tokens > 0
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.post(
            "/v1/embeddings",
            json={"model": EMBEDDER, "input": "x", "encoding_format": "base64"},
        )
    assert isinstance(r.json()["data"][0]["embedding"], str)


async def test_responses_continue_a_thread_and_stream(sim: Simulator) -> None:
    async with sdk(sim) as client:
        first = await client.responses.create(model=SMALL, input="My name is Ann")
        assert first.id.startswith("resp_") and first.status == "completed"
        assert "My name is Ann" in first.output_text
        second = await client.responses.create(
            model=SMALL, input="What is my name?", previous_response_id=first.id
        )
        assert "Turn 2" in second.output_text
        assert "in turn 1, you said \u201cMy name is Ann\u201d" in second.output_text

        events = await client.responses.create(model=SMALL, input="Stream it", stream=True)
        kinds: list[str] = []
        deltas: list[str] = []
        final = None
        async for event in events:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                final = event.response
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert final is not None and "".join(deltas) == final.output_text

        with pytest.raises(openai.BadRequestError) as err:
            await client.responses.create(
                model=SMALL, input="hi", previous_response_id="resp_" + "0" * 48
            )
        assert err.value.code == "previous_response_not_found"

    # One store behind both: LM Studio's own chat continues the same thread.
    async with LMStudioClient(sim.url, lms=None) as native:
        result = await native.chat(SMALL, "And again?", previous_response_id=second.id)
    assert "Turn 3" in result.text


async def test_tools_are_called_where_sensible_and_results_answered(sim: Simulator) -> None:
    async with sdk(sim) as client:
        asked: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
        r = await client.chat.completions.create(model=THINKER, messages=asked, tools=[WEATHER])
        call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert r.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        args = json.loads(call.function.arguments)  # type: ignore[union-attr]
        assert args == {"city": "Paris", "unit": "c"}
        assert call.id.isdigit()  # LM Studio's ids are numbers

        followed = [
            *asked,
            {"role": "assistant", "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees, sunny"},
        ]
        answer = await client.chat.completions.create(
            model=THINKER, messages=followed, tools=[WEATHER]
        )
        assert answer.choices[0].finish_reason == "stop"
        assert "18 degrees, sunny" in (answer.choices[0].message.content or "")

        unrelated = await client.chat.completions.create(
            model=THINKER, messages=[{"role": "user", "content": "Hello"}], tools=[WEATHER]
        )
        assert unrelated.choices[0].message.tool_calls is None

        stream = await client.chat.completions.create(
            model=THINKER, messages=asked, tools=[WEATHER], stream=True
        )
        pieces: list[str] = []
        async for chunk in stream:
            for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                pieces.append(tc.function.arguments or "")  # type: ignore[union-attr]
        assert json.loads("".join(pieces)) == args


async def test_structured_output_follows_the_json_schema(sim: Simulator) -> None:
    schema: Any = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "year": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title", "year", "tags"],
    }
    async with sdk(sim) as client:
        r = await client.chat.completions.create(
            model=SMALL,
            messages=[{"role": "user", "content": "A film, as JSON"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "film", "schema": schema},
            },
        )
        film = json.loads(r.choices[0].message.content or "")
        assert set(film) == {"title", "year", "tags"}
        assert isinstance(film["year"], int) and isinstance(film["tags"], list)

        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(
                model=SMALL,
                messages=[{"role": "user", "content": "x"}],
                response_format={"type": "json_object"},
            )
    assert err.value.body == "'response_format.type' must be 'json_schema' or 'text'"


async def test_errors_have_the_real_servers_bodies(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.post(
            "/v1/chat/completions",
            json={"model": "nobody/nothing", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 404
        err = r.json()["error"]
        assert err["code"] == "model_not_found" and err["param"] == "model"
        assert err["type"] == "invalid_request_error"
        assert err["message"].startswith('Model "nobody/nothing" not found.')
        assert SMALL in err["message"]  # "Your models:" follow

        r = await h.post("/v1/chat/completions", json={"model": SMALL})
        assert (r.status_code, r.json()) == (400, {"error": "'messages' field is required"})

        r = await h.post(
            "/v1/chat/completions",
            json={"model": SMALL, "messages": [{"role": "developer", "content": "x"}]},
        )
        assert r.status_code == 400
        assert r.json()["error"].endswith("[user, assistant, system, tool]. Got 'developer'")

        r = await h.post(
            "/v1/chat/completions",
            json={"model": EMBEDDER, "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = await h.post("/v1/embeddings", json={"model": SMALL, "input": "x"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"

        r = await h.post("/v1/responses", json={"model": SMALL, "input": "x", "text": {}})
        assert r.status_code == 400
        assert r.json() == {
            "error": {
                "message": "Required",
                "type": "invalid_request_error",
                "param": "text.format",
                "code": "missing_required_parameter",
            }
        }

        # Unknown routes still answer as the real server does.
        for method, path in (("POST", "/v1/nothing"), ("GET", "/v1/chat/completions")):
            r = await h.request(method, path)
            assert r.status_code == 200
            assert r.json() == {"error": f"Unexpected endpoint or method. ({method} {path})"}
        assert not sim.state.instances  # none of it loaded anything


async def test_completions_plain_stream_and_length(sim: Simulator) -> None:
    async with sdk(sim) as client:
        r = await client.completions.create(model=SMALL, prompt="Once upon a time")
        assert r.object == "text_completion" and "Once upon a time" in r.choices[0].text
        short = await client.completions.create(model=SMALL, prompt="Once", max_tokens=3)
        assert short.choices[0].finish_reason == "length"
        assert short.usage is not None and short.usage.completion_tokens == 3
        stream = await client.completions.create(model=SMALL, prompt="Once", stream=True)
        text = "".join([c.choices[0].text async for c in stream])
    assert text.startswith("Turn 1. You said")


async def test_a_chat_completion_jit_loads_with_its_ttl_visible_to_lmgui(
    sim: Simulator,
) -> None:
    assert await loaded(sim) == {}
    async with sdk(sim) as client:
        await client.chat.completions.create(
            model=SMALL, messages=[{"role": "user", "content": "hi"}], extra_body={"ttl": 120}
        )
        instances = await loaded(sim)
        assert list(instances) == [SMALL]
        assert instances[SMALL].ttl_seconds == 120  # the request's ttl, not the JIT default

        # A JIT load of another model evicts the first (auto-evict), on every surface.
        await client.embeddings.create(model=EMBEDDER, input="x")
    assert list(await loaded(sim)) == [EMBEDDER]
    assert ("evicted", SMALL) in sim.state.events


async def test_requests_keep_the_instance_busy_and_reset_its_idle_timer(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim(clock=clock, tokens_per_second=40)
    async with sdk(sim) as client:
        stream = await client.chat.completions.create(
            model=SMALL,
            messages=[{"role": "user", "content": "a long answer please"}],
            stream=True,
            extra_body={"ttl": 60},
        )
        first = await anext(aiter(stream))
        assert first.choices[0].delta.content
        # Mid-answer: lmgui sees the other app's request at work.
        assert (await loaded(sim))[SMALL].status == "generating"
        async for _ in stream:
            pass
        await wait_until(lambda: _status(sim, SMALL, "idle"))

        clock.advance(50)
        await client.chat.completions.create(
            model=SMALL, messages=[{"role": "user", "content": "again"}]
        )
        clock.advance(50)  # 100 s since the load, but only 50 idle: still there
        assert SMALL in await loaded(sim)
        clock.advance(11)
        assert SMALL not in await loaded(sim)
    assert ("expired", SMALL) in sim.state.events


async def _status(sim: Simulator, iid: str, want: str) -> bool:
    inst = (await loaded(sim)).get(iid)
    return inst is not None and inst.status == want


async def test_anthropic_messages_plain_stream_and_tool_use(make_sim: SimFactory) -> None:
    sim = make_sim(token=TOKEN)
    headers = {"x-api-key": TOKEN, "anthropic-version": "2023-06-01"}
    body: dict[str, Any] = {
        "model": SMALL,
        "max_tokens": 256,
        "system": "Be kind.",
        "messages": [{"role": "user", "content": "Write a haiku about local LLMs."}],
    }
    async with httpx.AsyncClient(base_url=sim.url, headers=headers) as h:
        r = await h.post("/v1/messages", json=body)
        assert r.status_code == 200
        msg = r.json()
        assert msg["type"] == "message" and msg["role"] == "assistant"
        assert msg["stop_reason"] == "end_turn" and msg["content"][0]["type"] == "text"
        assert "Write a haiku" in msg["content"][0]["text"]
        assert set(msg["usage"]) == {"input_tokens", "output_tokens"}

        r = await h.post("/v1/messages", json={**body, "stream": True})
        names = [line.removeprefix("event: ") for line in r.text.splitlines() if "event:" in line]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        text = "".join(
            json.loads(line.removeprefix("data: "))["delta"].get("text", "")
            for line in r.text.splitlines()
            if line.startswith("data: ") and '"content_block_delta"' in line
        )
        assert text == msg["content"][0]["text"]

        tool = {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
        weather = [{"role": "user", "content": "Weather in Oslo?"}]
        r = await h.post("/v1/messages", json={**body, "messages": weather, "tools": [tool]})
        out = r.json()
        assert out["stop_reason"] == "tool_use"
        assert out["content"][0]["input"] == {"city": "Oslo"}

        r = await h.post("/v1/messages", json={**body, "model": "nobody/nothing"})
        assert r.status_code == 404 and r.json()["type"] == "error"
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.post("/v1/messages", json=body, headers={"x-api-key": "sk-lm-wrong"})
    assert r.status_code == 401


async def test_tokens_malformed_invalid_and_right(make_sim: SimFactory) -> None:
    sim = make_sim(token=TOKEN)
    messages: Any = [{"role": "user", "content": "hi"}]
    async with sdk(sim, "lm-studio") as client:
        with pytest.raises(openai.AuthenticationError) as err:
            await client.chat.completions.create(model=SMALL, messages=messages)
    assert err.value.body == {
        "type": "invalid_request",
        "code": "invalid_api_key",
        "message": "Malformed LM Studio API token provided: lm-studio",
    }
    # The right shape is not enough: a token must be the right one.
    for shaped_wrongly in ("sk-lm-Ab12Cd34:short", "sk-lm-Ab12Cd3:Ef56Gh78Ij90Kl12Mn34"):
        async with sdk(sim, shaped_wrongly) as client:
            with pytest.raises(openai.AuthenticationError) as err:
                await client.models.list()
        assert "Malformed LM Studio API token provided" in str(err.value)
    async with sdk(sim, "sk-lm-Zz99Yy88:Xx77Ww66Vv55Uu44Tt33") as client:
        with pytest.raises(openai.AuthenticationError) as err:
            await client.models.list()
    assert err.value.body["message"] == "Invalid LM Studio API token provided."  # type: ignore[index]
    async with sdk(sim, TOKEN) as client:
        r = await client.chat.completions.create(model=SMALL, messages=messages)
    assert r.choices[0].message.content
    async with httpx.AsyncClient(base_url=sim.url) as h:
        v0 = await h.get("/api/v0/models/" + SMALL.replace("/", "%2F"))
    assert v0.status_code == 401 and "token is required" in v0.json()["error"]["message"]


def test_lmgui_sim_refuses_a_token_no_client_could_send(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Simulator, "bind", lambda self: None)
    monkeypatch.setattr(Simulator, "serve_forever", lambda self: None)
    monkeypatch.setattr("lmgui.sim.__main__.signal.signal", lambda *args: None)
    for bad in ("secret", "sk-lm-a:b", ""):
        assert sim_main(["--port", "0", "--token", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lmgui-sim: --token must look like an LM Studio API token, ")
        assert err.count("\n") == 1  # one sentence, one line
    assert sim_main(["--port", "0", "--token", TOKEN]) == 0


async def test_without_jit_only_loaded_models_are_listed_or_served(make_sim: SimFactory) -> None:
    sim = make_sim(jit=False)
    inst = sim.state.begin_load(THINKER, {})
    sim.state.finish_load(inst.id)
    async with sdk(sim) as client:
        assert [m.id async for m in client.models.list()] == [THINKER]
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model=SMALL, messages=[{"role": "user", "content": "x"}]
            )
        r = await client.chat.completions.create(
            model=THINKER, messages=[{"role": "user", "content": "x"}]
        )
    assert r.model == THINKER
    async with httpx.AsyncClient(base_url=sim.url) as h:
        v0 = (await h.get("/api/v0/models")).json()["data"]
        chat = await h.post("/api/v1/chat", json={"model": SMALL, "input": "x"})
    assert [row["id"] for row in v0] == [THINKER]
    assert chat.status_code == 404 and chat.json()["error"]["type"] == "model_not_found"
    assert list(sim.state.instances) == [THINKER]
