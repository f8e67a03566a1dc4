"""The simulator behaves as lmstudio-api.md describes the real server."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmgui.api import LMStudioClient, Model
from lmgui.api.errors import dedupe_joined_message
from lmgui.sim import ManualClock, SimConfig, Simulator, load_catalog, synthetic_catalog
from lmgui.sim.__main__ import exposure_warning, is_loopback
from lmgui.sim.__main__ import main as sim_main
from lmgui.sim.server import STREAM_ERROR
from tests.conftest import SimFactory, wait_until


def instance_ids(models: list[Model]) -> set[str]:
    return {i.id for m in models for i in m.instances}


async def raw(
    sim: Simulator, method: str, path: str, body: Any = None, **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.url) as h:
        return await h.request(method, path, json=body, headers=headers)


# ----------------------------------------------------------------------------- wire shapes


async def test_model_entries_have_the_documented_fields_only(sim: Simulator) -> None:
    r = await raw(sim, "GET", "/api/v1/models")
    assert r.status_code == 200
    entries = r.json()["models"]
    documented = {
        "type",
        "publisher",
        "key",
        "display_name",
        "architecture",
        "quantization",
        "size_bytes",
        "params_string",
        "max_context_length",
        "format",
        "capabilities",
        "description",
        "variants",
        "selected_variant",
        "loaded_instances",
    }
    for e in entries:
        assert set(e) <= documented, set(e) - documented
        assert e["loaded_instances"] == []
    embedding = next(e for e in entries if e["type"] == "embedding")
    assert "capabilities" not in embedding and "architecture" not in embedding


async def test_load_response_shape(sim: Simulator) -> None:
    r = await raw(sim, "POST", "/api/v1/models/load", {"model": "google/gemma-3-270m"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"type", "instance_id", "load_time_seconds", "status"}
    assert body["status"] == "loaded"
    r = await raw(
        sim,
        "POST",
        "/api/v1/models/load",
        {"model": "google/gemma-3-270m", "echo_load_config": True},
    )
    assert r.json()["instance_id"] == "google/gemma-3-270m:2"
    assert r.json()["load_config"]["context_length"] == 4096


async def test_stream_frames_repeat_the_event_name_in_type(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.post(
            "/api/v1/chat", json={"model": "google/gemma-3-270m", "input": "hi", "stream": True}
        )
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in r.text.split("\n\n") if f.strip()]
    for frame in frames:
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name
    assert frames[0].startswith("event: chat.start")
    assert frames[-1].startswith("event: chat.end")
    assert "[DONE]" not in r.text


# ----------------------------------------------------------------------------- validation, routes


@pytest.mark.parametrize(
    ("path", "body", "code", "text"),
    [
        (
            "/api/v1/models/load",
            {"model": "google/gemma-3-270m", "ttl": 60},
            "unrecognized_keys",
            "Unrecognized key(s) in object: 'ttl'",
        ),
        (
            "/api/v1/models/load",
            {"model": "google/gemma-3-270m", "stream": True},
            "unrecognized_keys",
            "'stream'",
        ),
        (
            "/api/v1/models/load",
            {"context_length": 10},
            "missing_required_parameter",
            '"model" is required',
        ),
        (
            "/api/v1/chat",
            {"model": "google/gemma-3-270m", "input": "x", "ttl": 5},
            "unrecognized_keys",
            "'ttl'",
        ),
        (
            "/api/v1/chat",
            {"model": "google/gemma-3-270m", "messages": []},
            "unrecognized_keys",
            "'messages'",
        ),
        (
            "/api/v1/chat",
            {"model": "google/gemma-3-270m", "input": [{"type": "message", "content": "x"}]},
            "invalid_union",
            "Invalid input",
        ),
        (
            "/api/v1/chat",
            {"model": "qwen/qwen3-4b", "input": "x", "reasoning": "medium"},
            "invalid_value",
            "Allowed values: 'off', 'on'",
        ),
        (
            "/api/v1/chat",
            {"model": "google/gemma-3-270m", "input": "x", "previous_response_id": "abc"},
            "invalid_string",
            "resp_",
        ),
        ("/api/v1/models/unload", {"instance_id": 5}, "invalid_type", "expected string"),
    ],
)
async def test_strict_validation_with_real_error_bodies(
    sim: Simulator, path: str, body: dict[str, Any], code: str, text: str
) -> None:
    r = await raw(sim, "POST", path, body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request" and err["code"] == code
    assert text in err["message"]


async def test_invalid_union_repeats_its_message_per_bad_item(sim: Simulator) -> None:
    bad = [{"type": "message"}, {"type": "text", "content": "ok"}, 7]
    r = await raw(sim, "POST", "/api/v1/chat", {"model": "google/gemma-3-270m", "input": bad})
    message = r.json()["error"]["message"]
    one = dedupe_joined_message(message)
    assert one.startswith("Invalid input") and message == ", ".join([one] * 2)


async def test_unknown_routes(sim: Simulator) -> None:
    outside = await raw(sim, "POST", "/x")
    assert outside.status_code == 200
    assert outside.json() == {"error": "Unexpected endpoint or method. (POST /x)"}
    inside = await raw(sim, "GET", "/api/v1/nothing")
    assert inside.status_code == 404
    wrong_method = await raw(sim, "GET", "/api/v1/chat")
    assert wrong_method.status_code == 404


async def test_legacy_mode_serves_v0_only(make_sim: SimFactory) -> None:
    sim = make_sim(legacy=True)
    r = await raw(sim, "GET", "/api/v1/models")
    assert r.status_code == 200 and "Unexpected endpoint" in r.json()["error"]
    r = await raw(sim, "GET", "/api/v0/models")
    assert r.json()["object"] == "list" and r.json()["data"][0]["state"] == "not-loaded"


async def test_auth_body_when_a_token_is_required(make_sim: SimFactory) -> None:
    sim = make_sim(token="sk-lm-x:y")
    for method, path in [("GET", "/api/v1/models"), ("POST", "/api/v1/chat"), ("GET", "/other")]:
        r = await raw(sim, method, path)
        assert r.status_code == 401
        err = r.json()["error"]
        assert err["code"] == "invalid_api_key" and "token is required" in err["message"]
    r = await raw(sim, "GET", "/api/v1/models", Authorization="Bearer sk-lm-x:y")
    assert r.status_code == 200


async def test_tokens_are_compared_in_constant_time_on_bytes(
    make_sim: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    sim = make_sim(token="sk-lm-x:y")
    wrong = await raw(sim, "GET", "/api/v1/models", Authorization="Bearer sk-lm-x:z")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "Invalid LM Studio API token provided."
    right = await raw(sim, "GET", "/api/v1/models", Authorization="Bearer sk-lm-x:y")
    assert right.status_code == 200
    assert compared == [(b"sk-lm-x:z", b"sk-lm-x:y"), (b"sk-lm-x:y", b"sk-lm-x:y")]


async def test_a_non_ascii_token_is_a_401_not_a_500(make_sim: SimFactory) -> None:
    sim = make_sim(token="sk-lm-x:y")
    async with httpx.AsyncClient(base_url=sim.url) as h:
        for token in ("sk-lm-x:ÿ", "sk-lm-ключ:секрет", "clé"):
            r = await h.get(
                "/api/v1/models", headers={b"Authorization": f"Bearer {token}".encode()}
            )
            assert r.status_code == 401, token
            assert r.json()["error"]["code"] == "invalid_api_key"
    assert "Malformed LM Studio API token provided: clé" in r.json()["error"]["message"]


async def test_a_non_ascii_configured_token_is_accepted(make_sim: SimFactory) -> None:
    sim = make_sim(token="sk-lm-ключ:секрет")
    async with httpx.AsyncClient(base_url=sim.url) as h:
        auth = {b"Authorization": "Bearer sk-lm-ключ:секрет".encode()}
        assert (await h.get("/api/v1/models", headers=auth)).status_code == 200
        r = await h.get("/api/v1/models", headers={b"Authorization": b"Bearer sk-lm-x:y"})
        assert r.status_code == 401


# ----------------------------------------------------------------------------- lmgui-sim


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.4.5.6", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("fe80::1", False),
        ("my-workstation", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    warning = exposure_warning(host, None)
    assert (warning is None) is loopback
    assert exposure_warning(host, "sk-lm-a:b") is None


def test_exposure_warning_text() -> None:
    assert exposure_warning("0.0.0.0", None) == (
        "lmgui-sim: listening on 0.0.0.0 without --token: anyone who can reach this port can "
        "load, unload and chat."
    )
    assert exposure_warning("0.0.0.0", "") is not None  # an empty token lets everyone in


def run_sim_main(monkeypatch: pytest.MonkeyPatch, *argv: str) -> SimConfig:
    """``lmgui-sim ARGV`` with binding and serving stubbed out (nothing listens anywhere)."""
    configs: list[SimConfig] = []
    monkeypatch.setattr(Simulator, "bind", lambda self: None)
    monkeypatch.setattr(Simulator, "serve_forever", lambda self: configs.append(self.config))
    monkeypatch.setattr("lmgui.sim.__main__.signal.signal", lambda *args: None)
    assert sim_main(list(argv)) == 0
    [config] = configs
    return config


def test_lmgui_sim_warns_when_exposed_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sim_main(monkeypatch, "--host", "0.0.0.0", "--port", "0")
    err = capsys.readouterr().err
    assert err == (
        "lmgui-sim: listening on 0.0.0.0 without --token: anyone who can reach this port can "
        "load, unload and chat.\n"
    )
    for args in (
        ["--host", "0.0.0.0", "--token", "sk-lm-Ab12Cd34:Ef56Gh78Ij90Kl12Mn34"],
        ["--host", "127.0.0.1"],
        [],
    ):
        run_sim_main(monkeypatch, *args, "--port", "0")
        assert capsys.readouterr().err == ""


def test_lmgui_sim_stream_fault_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    config = run_sim_main(monkeypatch, "--port", "0")
    assert config.stream_error is None and config.stream_stall_after is None
    assert not config.stream_comments_only and config.stream_fault_seconds == 120.0
    config = run_sim_main(
        monkeypatch,
        "--port",
        "0",
        "--stream-error",
        "end",
        "--stream-error-after",
        "0",
        "--stream-stall-after",
        "5",
        "--stream-comments-only",
        "--stream-comment-interval-ms",
        "250",
        "--stream-fault-seconds",
        "7.5",
    )
    assert config.stream_error == "end" and config.stream_error_after == 0
    assert config.stream_stall_after == 5 and config.stream_comments_only
    assert config.stream_comment_interval_ms == 250.0 and config.stream_fault_seconds == 7.5


# ----------------------------------------------------------------------------- stream faults

STREAM_CHAT = {"model": "google/gemma-3-270m", "input": "hi", "stream": True}


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) for each frame of a raw SSE body."""
    out = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        out.append((name, data))
    return out


async def stream_text(sim: Simulator, body: dict[str, Any] | None = None) -> str:
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as h:
        r = await h.post("/api/v1/chat", json=body or STREAM_CHAT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return r.text


async def test_stream_error_then_close(sim: Simulator) -> None:
    sim.config.stream_error = "close"  # settable while the simulator runs
    events = sse_events(await stream_text(sim))
    names = [name for name, _ in events]
    assert names[0] == "chat.start" and names[-1] == "error" and "chat.end" not in names
    assert names.count("message.delta") == 3 and "message.end" not in names
    assert events[-1][1] == {
        "type": "error",
        "error": {
            "type": "internal_error",
            "message": "Model crashed while generating (simulated fault)",
            "code": "model_crashed",
        },
    }
    assert sim.state.responses == {}  # the crashed turn is not stored
    sim.config.stream_error = None
    names = [name for name, _ in sse_events(await stream_text(sim))]
    assert names[-1] == "chat.end" and "error" not in names


async def test_stream_error_then_chat_end(make_sim: SimFactory) -> None:
    sim = make_sim(stream_error="end")
    events = sse_events(await stream_text(sim))
    names = [name for name, _ in events]
    assert names[-2:] == ["error", "chat.end"] and names.count("error") == 1
    assert names.count("message.delta") == 3
    assert events[-2][1] == {"type": "error", **STREAM_ERROR}
    assert events[-1][1] == {
        "type": "chat.end",
        "result": {"model_instance_id": "google/gemma-3-270m", "output": [], "stats": {}},
    }


@pytest.mark.parametrize(("after", "deltas"), [(0, 0), (5, 5), (10_000, None)])
async def test_stream_error_after_n_deltas(
    make_sim: SimFactory, after: int, deltas: int | None
) -> None:
    sim = make_sim(stream_error="close", stream_error_after=after)
    names = [name for name, _ in sse_events(await stream_text(sim))]
    assert names[-1] == "error" and "chat.end" not in names
    if deltas is None:  # fewer deltas than that: the error comes where chat.end would have
        assert names[-2] == "message.end"
    else:
        assert names.count("message.delta") == deltas


async def test_stream_error_counts_reasoning_deltas_too(make_sim: SimFactory) -> None:
    sim = make_sim(stream_error="end", stream_error_after=2)
    body = {"model": "qwen/qwen3-4b", "input": "think", "stream": True}
    names = [name for name, _ in sse_events(await stream_text(sim, body))]
    assert names.count("reasoning.delta") == 2 and "message.start" not in names
    assert names[-2:] == ["error", "chat.end"]


async def test_stream_stall_closes_after_the_fault_time(make_sim: SimFactory) -> None:
    sim = make_sim(stream_stall_after=2, stream_fault_seconds=0.5)
    started = time.monotonic()
    names = [name for name, _ in sse_events(await stream_text(sim))]
    assert time.monotonic() - started >= 0.45
    assert names.count("message.delta") == 2
    assert names[-1] == "message.delta" and "chat.end" not in names and "error" not in names


async def test_a_stalled_stream_ends_when_the_client_disconnects(make_sim: SimFactory) -> None:
    sim = make_sim(stream_stall_after=2)  # would stall for 120 s
    async with (
        httpx.AsyncClient(base_url=sim.url, timeout=10) as h,
        h.stream("POST", "/api/v1/chat", json=STREAM_CHAT) as r,
    ):
        deltas = 0
        async for line in r.aiter_lines():
            deltas += line == "event: message.delta"
            if deltas == 2:
                assert sim.active_requests == 1  # stalled, until it sees the disconnect
                break

    async def ended() -> bool:
        return sim.active_requests == 0

    await wait_until(ended, within=5)


async def test_comments_only_stream(make_sim: SimFactory) -> None:
    sim = make_sim(
        stream_comments_only=True, stream_comment_interval_ms=50, stream_fault_seconds=0.4
    )
    started = time.monotonic()
    text = await stream_text(sim)
    assert time.monotonic() - started >= 0.35
    assert set(text.split(": keep-alive\n\n")) == {""}  # nothing but comment lines
    assert 3 <= text.count(": keep-alive") <= 12  # one every 50 ms for 0.4 s
    assert sim.state.instances == {}  # no JIT load was begun for it


@pytest.mark.parametrize(
    "fault", [{"stream_stall_after": 1}, {"stream_comments_only": True}], ids=["stall", "comments"]
)
async def test_stop_is_prompt_during_a_stalled_stream(
    make_sim: SimFactory, fault: dict[str, Any]
) -> None:
    sim = make_sim(stream_comment_interval_ms=20, **fault)
    lines: list[str] = []

    async def going() -> bool:
        return "event: message.delta" in lines or ": keep-alive" in lines

    async with (
        httpx.AsyncClient(base_url=sim.url, timeout=10) as h,
        h.stream("POST", "/api/v1/chat", json=STREAM_CHAT) as r,
    ):
        reading = asyncio.create_task(_collect(r, lines))
        await wait_until(going)
        started = time.monotonic()
        await asyncio.to_thread(sim.stop)
        stopped_in = time.monotonic() - started
        await asyncio.wait_for(reading, 5)  # the stream ended, without chat.end
    # uvicorn's graceful-shutdown timeout is 1 s: the stream ended well before it ran out
    assert stopped_in < 0.9, stopped_in
    assert "event: chat.end" not in lines


async def _collect(r: httpx.Response, lines: list[str]) -> None:
    async for line in r.aiter_lines():
        lines.append(line)


# ----------------------------------------------------------------------------- instances


async def test_instances_are_visible_while_loading(make_sim: SimFactory) -> None:
    sim = make_sim(load_seconds_per_gb=0.8)  # 2.5 GB: 2 s of loading
    async with LMStudioClient(sim.url, lms=None) as c:
        task = asyncio.create_task(c.load("qwen/qwen3-4b"))
        listed = None

        async def listed_or_loaded() -> bool:
            nonlocal listed
            listed = instance_ids(await c.list_models())
            return task.done() or "qwen/qwen3-4b" in listed

        await wait_until(listed_or_loaded)
        assert not task.done() and listed == {"qwen/qwen3-4b"}  # seen before the load returned
        result = await task
    assert result.load_time_seconds == pytest.approx(2.0, abs=0.01)


async def test_unloading_while_loading_fails_the_load(make_sim: SimFactory) -> None:
    sim = make_sim(load_seconds_per_gb=0.8)
    async with LMStudioClient(sim.url, lms=None) as c:
        task = asyncio.create_task(c.load("qwen/qwen3-4b"))

        async def listed() -> bool:
            return "qwen/qwen3-4b" in instance_ids(await c.list_models())

        await wait_until(listed)
        await c.unload("qwen/qwen3-4b")
        with pytest.raises(Exception, match="cancelled"):
            await task


async def test_vram_budget(make_sim: SimFactory) -> None:
    sim = make_sim(vram_gb=20)
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("mistralai/mistral-small-3.2")  # ~15 GB
        with pytest.raises(Exception, match="insufficient"):
            await c.load("openai/gpt-oss-20b")  # ~13 GB more does not fit
        await c.unload("mistralai/mistral-small-3.2")
        assert (await c.load("openai/gpt-oss-20b")).instance_id == "openai/gpt-oss-20b"


async def test_ttl_expiry_and_idle_reset(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim(clock=clock, accept_load_extensions=True)
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("google/gemma-3-270m", ttl=60)
        clock.advance(59)
        assert "google/gemma-3-270m" in instance_ids(await c.list_models())
        await c.chat("google/gemma-3-270m", "keep me alive")  # a request resets the idle timer
        clock.advance(59)
        assert "google/gemma-3-270m" in instance_ids(await c.list_models())
        clock.advance(2)
        assert instance_ids(await c.list_models()) == set()
    assert ("expired", "google/gemma-3-270m") in sim.state.events


async def test_rest_loads_have_no_ttl(sim: Simulator, clock: ManualClock) -> None:
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("google/gemma-3-270m")
        clock.advance(10 * 24 * 3600)
        assert instance_ids(await c.list_models()) == {"google/gemma-3-270m"}


async def test_jit_load_auto_evict_and_jit_ttl(sim: Simulator, clock: ManualClock) -> None:
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("meta/llama-3.2-1b-instruct")  # an explicit load is never evicted
        first = await c.chat("google/gemma-3-270m", "hi")
        assert first.stats.model_load_time_seconds is not None
        assert instance_ids(await c.list_models()) == {
            "meta/llama-3.2-1b-instruct",
            "google/gemma-3-270m",
        }
        await c.chat("ibm/granite-4-micro", "hi")  # JIT-loads this one, evicts the last JIT load
        assert instance_ids(await c.list_models()) == {
            "meta/llama-3.2-1b-instruct",
            "ibm/granite-4-micro",
        }
        clock.advance(3600)
        assert instance_ids(await c.list_models()) == {"meta/llama-3.2-1b-instruct"}
    assert ("evicted", "google/gemma-3-270m") in sim.state.events


async def test_chat_by_instance_id_uses_that_instance(client: LMStudioClient) -> None:
    await client.load("google/gemma-3-270m")
    second = await client.load("google/gemma-3-270m")
    r = await client.chat(second.instance_id, "which one?")
    assert r.model_instance_id == "google/gemma-3-270m:2"


async def test_restart_forgets_instances_and_threads(
    sim: Simulator, client: LMStudioClient
) -> None:
    await client.load("google/gemma-3-270m")
    r = await client.chat("google/gemma-3-270m", "remember me")
    sim.state.restart()
    assert instance_ids(await client.list_models()) == set()
    with pytest.raises(Exception, match="not found"):
        await client.chat("google/gemma-3-270m", "again", previous_response_id=r.response_id)


async def test_stored_responses_expire_when_configured(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim(clock=clock, response_ttl_seconds=600)
    async with LMStudioClient(sim.url, lms=None) as c:
        r = await c.chat("google/gemma-3-270m", "short-lived")
        clock.advance(601)
        with pytest.raises(Exception, match="not found"):
            await c.chat("google/gemma-3-270m", "x", previous_response_id=r.response_id)


# ----------------------------------------------------------------------------- text, downloads


async def test_answers_are_deterministic_per_seed(make_sim: SimFactory) -> None:
    texts = []
    for seed in (1, 1, 2):
        sim = make_sim(seed=seed)
        async with LMStudioClient(sim.url, lms=None) as c:
            texts.append((await c.chat("google/gemma-3-270m", "same input")).text)
    assert texts[0] == texts[1] != texts[2]


async def test_max_output_tokens_can_leave_only_reasoning(client: LMStudioClient) -> None:
    r = await client.chat("openai/gpt-oss-20b", "think hard", max_output_tokens=5)
    assert r.text == "" and r.reasoning
    assert r.stats.total_output_tokens == 5 == r.stats.reasoning_output_tokens


async def test_download_by_hugging_face_url(sim: Simulator, clock: ManualClock) -> None:
    async with LMStudioClient(sim.url, lms=None) as c:
        job = await c.download("https://huggingface.co/acme/tiny-model-GGUF", quantization="q8_0")
        assert job.job_id
        clock.advance(3600)
        assert (await c.download_status(job.job_id)).status == "completed"
        keys = {m.key for m in await c.list_models()}
    assert "acme/tiny-model-gguf" in keys


def test_catalog_files_and_synthetic_catalogs(tmp_path: Path) -> None:
    path = tmp_path / "cat.json"
    path.write_text(
        json.dumps({"models": [{"key": "a/b", "display_name": "B", "loaded_instances": [1]}]})
    )
    [entry] = load_catalog(path)
    assert entry["key"] == "a/b" and entry["type"] == "llm" and "loaded_instances" not in entry
    path.write_text('[{"no_key": 1}]')
    with pytest.raises(ValueError, match="expected a list of model entries"):
        load_catalog(path)
    big = synthetic_catalog(2000)
    assert len({e["key"] for e in big}) == 2000


async def test_simulator_serves_a_custom_catalog(make_sim: SimFactory) -> None:
    sim = make_sim(catalog=synthetic_catalog(50, seed=3))
    async with LMStudioClient(sim.url, lms=None) as c:
        assert len(await c.list_models()) == 50
