"""The real client against the simulator over real sockets: every endpoint, every error kind."""

from __future__ import annotations

import socket
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmgui.api import (
    ApiError,
    AuthError,
    BadRequestError,
    ChatEnd,
    LMStudioClient,
    MessageDelta,
    NotFoundError,
    ProtocolError,
    ReasoningDelta,
    ServerError,
    ServerUnreachable,
    UnsupportedServer,
    image_item,
    text_item,
    with_retries,
)
from lmgui.api.events import ChatStart, ErrorEvent, ModelLoadEnd, ModelLoadProgress
from lmgui.api.lms import LmsRunner
from lmgui.sim import ManualClock, Simulator
from tests.conftest import SimFactory, data

TOKEN = "sk-lm-abc123:s3cretpart"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- models, load, unload


async def test_lists_the_demo_catalog(client: LMStudioClient) -> None:
    models = await client.list_models()
    assert len(models) >= 12
    keys = {m.key for m in models}
    assert {"qwen/qwen3.5-9b", "openai/gpt-oss-20b", "text-embedding-nomic-embed-text-v1.5"} <= keys
    assert {m.type for m in models} == {"llm", "embedding"}
    assert any(m.format == "mlx" for m in models)
    assert any(m.variants for m in models)
    assert all(m.instances == () for m in models)


async def test_load_then_unload_an_instance(client: LMStudioClient) -> None:
    result = await client.load("qwen/qwen3-4b", context_length=8192, flash_attention=False)
    assert result.instance_id == "qwen/qwen3-4b" and result.via == "rest"
    assert result.load_config["context_length"] == 8192
    assert result.load_config["flash_attention"] is False
    assert result.not_applied == ()
    [model] = [m for m in await client.list_models() if m.key == "qwen/qwen3-4b"]
    [inst] = model.instances
    assert (inst.id, inst.context_length, inst.flash_attention) == ("qwen/qwen3-4b", 8192, False)

    await client.unload(result.instance_id)
    [model] = [m for m in await client.list_models() if m.key == "qwen/qwen3-4b"]
    assert model.instances == ()


async def test_second_load_of_a_model_gets_key_2(client: LMStudioClient) -> None:
    first = await client.load("google/gemma-3-270m")
    second = await client.load("google/gemma-3-270m")
    assert (first.instance_id, second.instance_id) == (
        "google/gemma-3-270m",
        "google/gemma-3-270m:2",
    )


async def test_unload_of_an_unknown_instance_is_not_found(client: LMStudioClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.unload("no-such-instance")
    assert "no-such-instance" in str(info.value)
    assert info.value.status == 404


async def test_load_that_does_not_fit_says_so(make_sim: SimFactory) -> None:
    sim = make_sim(vram_gb=4)
    async with LMStudioClient(sim.url, lms=None) as c:
        with pytest.raises(ServerError) as info:
            await c.load("meta/llama-3.3-70b-instruct")
    assert "insufficient" in str(info.value) and "VRAM" in str(info.value)


async def test_unknown_model_key_is_not_found(client: LMStudioClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.load("nobody/nothing")
    assert "nobody/nothing" in str(info.value)
    assert info.value.code == "model_not_found"


# ----------------------------------------------------------------------------- options REST rejects


async def test_extension_options_rejected_by_rest_are_reported_and_remembered(
    rest_sim: Simulator,
) -> None:
    sim = rest_sim  # the REST path: no SDK channel
    client = LMStudioClient(sim.url, lms=None)
    result = await client.load("google/gemma-3-270m", ttl=600, context_length=2048)
    assert result.not_applied == ("ttl",)
    assert result.instance_id == "google/gemma-3-270m"
    assert client.rejected_load_keys == {"ttl"}
    bodies = [r.body for r in sim.received("POST", "/api/v1/models/load")]
    assert bodies[0]["ttl"] == 600
    assert "ttl" not in bodies[1] and bodies[1]["context_length"] == 2048

    again = await client.load("google/gemma-3-270m", ttl=600)
    assert again.not_applied == ("ttl",)
    assert len(sim.received("POST", "/api/v1/models/load")) == 3  # no second rejected try
    await client.aclose()


async def test_a_server_that_accepts_extensions_applies_them(make_sim: SimFactory) -> None:
    sim = make_sim(accept_load_extensions=True, sdk_api=False)
    async with LMStudioClient(sim.url, lms=None) as c:
        result = await c.load("qwen/qwen3-4b", gpu=0.5, ttl=600, identifier="my-qwen", parallel=2)
        assert (result.instance_id, result.not_applied) == ("my-qwen", ())
        assert result.load_config["parallel"] == 2
        [inst] = [i for m in await c.list_models() for i in m.instances]
        assert inst.id == "my-qwen"
    assert sim.state.instances["my-qwen"].ttl == 600


def write_fake_lms(tmp_path: Path, sim_url: str, fail: bool = False) -> Path:
    """A stand-in for LM Studio's lms: records its argv and loads over REST like the real one."""
    script = tmp_path / "lms"
    script.write_text(
        f"""#!{sys.executable}
import json, sys, urllib.request
open({str(tmp_path / "argv.json")!r}, "w").write(json.dumps(sys.argv[1:]))
if {fail!r}:
    print("Error: model not found in catalog")
    sys.exit(1)
args = sys.argv[1:]
body = {{"model": args[1]}}
if "--context-length" in args:
    body["context_length"] = int(args[args.index("--context-length") + 1])
req = urllib.request.Request({sim_url!r} + "/api/v1/models/load", json.dumps(body).encode(),
                             {{"Content-Type": "application/json"}})
urllib.request.urlopen(req).read()
print("Model loaded successfully")
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


async def test_extension_options_go_through_lms_when_the_server_is_local(
    rest_sim: Simulator, tmp_path: Path
) -> None:
    sim = rest_sim  # the REST path: no SDK channel
    import json

    lms = LmsRunner(str(write_fake_lms(tmp_path, sim.url)), timeout=30)
    async with LMStudioClient(sim.url, lms=lms) as c:
        result = await c.load("qwen/qwen3-4b", gpu="max", ttl=300, context_length=8192, parallel=2)
    assert result.via == "lms"
    assert result.instance_id == "qwen/qwen3-4b"
    assert result.load_config["context_length"] == 8192
    assert result.not_applied == ()
    argv = json.loads((tmp_path / "argv.json").read_text())
    port = str(httpx.URL(sim.url).port)
    assert argv == [
        "load",
        "qwen/qwen3-4b",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--gpu",
        "max",
        "--ttl",
        "300",
        "--context-length",
        "8192",
        "--parallel",
        "2",
        "-y",
    ]


async def test_lms_failure_is_an_error_with_its_message(
    rest_sim: Simulator, tmp_path: Path
) -> None:
    sim = rest_sim  # the REST path: no SDK channel
    lms = LmsRunner(str(write_fake_lms(tmp_path, sim.url, fail=True)), timeout=30)
    async with LMStudioClient(sim.url, lms=lms) as c:
        with pytest.raises(ServerError) as info:
            await c.load("qwen/qwen3-4b", ttl=300)
    assert "model not found in catalog" in str(info.value)


async def test_lms_is_never_used_for_a_remote_server(tmp_path: Path) -> None:
    lms = LmsRunner(str(tmp_path / "lms"))
    async with LMStudioClient("http://192.0.2.10:1234", lms=lms) as c:
        assert c._loads.lms_runner() == "only reaches an LM Studio on this machine"
    for url in ("https://127.0.0.1:1234", "http://me:pw@127.0.0.1:1234", "http://localhost/lm"):
        async with LMStudioClient(url, lms=lms) as c:
            assert c._loads.lms_runner() == (
                "cannot address a server behind https, a password or a path"
            )


# ----------------------------------------------------------------------------- chat


async def test_chat_then_continue_the_thread(sim: Simulator, client: LMStudioClient) -> None:
    first = await client.chat("qwen/qwen3-4b", "What is a KV cache?", reasoning="off")
    assert first.response_id and first.response_id.startswith("resp_")
    assert first.text.startswith("Turn 1.") and first.reasoning == ""
    assert first.model_instance_id == "qwen/qwen3-4b"
    s = first.stats
    assert s.input_tokens and s.total_output_tokens and s.tokens_per_second
    assert s.time_to_first_token_seconds is not None
    assert s.model_load_time_seconds is not None  # this turn JIT-loaded the model

    second = await client.chat(
        "qwen/qwen3-4b", "And flash attention?", previous_response_id=first.response_id
    )
    assert second.text.startswith("Turn 2.")
    assert "What is a KV cache?" in second.text
    assert second.stats.model_load_time_seconds is None
    sent = sim.received("POST", "/api/v1/chat")[-1].body
    assert sent["previous_response_id"] == first.response_id
    assert sent["input"] == "And flash attention?"


async def test_branching_from_an_earlier_answer(client: LMStudioClient) -> None:
    a = await client.chat("google/gemma-3-270m", "alpha")
    b = await client.chat("google/gemma-3-270m", "beta", previous_response_id=a.response_id)
    c = await client.chat("google/gemma-3-270m", "gamma", previous_response_id=a.response_id)
    assert b.text.startswith("Turn 2.") and c.text.startswith("Turn 2.")
    d = await client.chat("google/gemma-3-270m", "delta", previous_response_id=c.response_id)
    assert d.text.startswith("Turn 3.")
    assert "beta" not in d.text  # the branch through c never saw b


async def test_store_false_returns_no_response_id(sim: Simulator, client: LMStudioClient) -> None:
    r = await client.chat("google/gemma-3-270m", "hello", store=False)
    assert r.response_id is None and r.text
    assert sim.received("POST", "/api/v1/chat")[-1].body["store"] is False


async def test_unknown_previous_response_id(client: LMStudioClient) -> None:
    with pytest.raises(BadRequestError) as info:
        await client.chat("google/gemma-3-270m", "hi", previous_response_id="resp_gone")
    assert info.value.code == "previous_response_not_found"
    assert "resp_gone" in str(info.value)


async def test_reasoning_output_and_allowed_options(client: LMStudioClient) -> None:
    r = await client.chat("openai/gpt-oss-20b", "think", reasoning="high")
    assert r.reasoning and r.text
    with pytest.raises(BadRequestError) as info:
        await client.chat("qwen/qwen3-4b", "think", reasoning="high")
    err = info.value
    assert (err.code, err.param, err.status) == ("invalid_value", "reasoning", 400)
    assert "'off', 'on'" in str(err)


async def test_images_for_a_vision_model(client: LMStudioClient) -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    r = await client.chat("qwen/qwen3.5-9b", [text_item("What is this?"), image_item(png)])
    assert "I see 1 image" in r.text
    with pytest.raises(BadRequestError) as info:
        await client.chat("google/gemma-3-270m", [text_item("and this?"), image_item(png)])
    assert "does not support image input" in str(info.value)


async def test_bad_input_items_are_reported_once(client: LMStudioClient) -> None:
    bad = [{"type": "message", "content": "x"}] * 3
    with pytest.raises(BadRequestError) as info:
        await client.chat("google/gemma-3-270m", bad)
    msg = str(info.value)
    assert info.value.code == "invalid_union"
    assert msg.count("Invalid input") == 1


async def test_chat_with_an_embedding_model_is_refused(client: LMStudioClient) -> None:
    with pytest.raises(NotFoundError):
        await client.chat("text-embedding-nomic-embed-text-v1.5", "hi")


async def test_tool_calls_come_back_as_items(client: LMStudioClient) -> None:
    r = await client.chat("qwen/qwen3-4b", "search", integrations=["simulator"], reasoning="off")
    assert [type(i).__name__ for i in r.output] == ["ToolCallItem", "MessageItem"]
    r = await client.chat("qwen/qwen3-4b", "bad tool", integrations=["simulator"], reasoning="off")
    assert type(r.output[0]).__name__ == "InvalidToolCallItem"


# ----------------------------------------------------------------------------- streaming


async def test_stream_events_in_order(client: LMStudioClient) -> None:
    stream = client.chat_stream("qwen/qwen3-4b", "stream please", reasoning="on")
    async with stream:
        events = [ev async for ev in stream]
    names = [e.type for e in events]
    assert names[0] == "chat.start" and names[-1] == "chat.end"
    assert isinstance(events[0], ChatStart)
    expected_order = [
        "model_load.start",
        "model_load.end",
        "prompt_processing.start",
        "prompt_processing.end",
        "reasoning.start",
        "reasoning.end",
        "message.start",
        "message.end",
    ]
    assert [n for n in names if n in expected_order] == expected_order
    progress = [e.progress for e in events if isinstance(e, ModelLoadProgress)]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(isinstance(e, ModelLoadEnd) for e in events)
    result = stream.result
    assert result is not None and isinstance(events[-1], ChatEnd)
    assert "".join(e.content for e in events if isinstance(e, MessageDelta)) == result.text
    assert "".join(e.content for e in events if isinstance(e, ReasoningDelta)) == result.reasoning
    assert result.stats.model_load_time_seconds is not None


async def test_stream_with_unknown_previous_id_reports_an_error_event(
    client: LMStudioClient,
) -> None:
    stream = client.chat_stream("google/gemma-3-270m", "hi", previous_response_id="resp_nope")
    async with stream:
        events = [e async for e in stream]
    [err] = [e for e in events if isinstance(e, ErrorEvent)]
    assert err.message == "Previous response with id 'resp_nope' not found."
    assert err.error.code == "previous_response_not_found"
    # The server still ends the stream, with a result that starts no thread.
    assert events[-1].type == "chat.end"
    result = stream.result
    assert result is not None and result.response_id is None
    assert result.output == ()


async def test_stream_error_event_is_an_event(client: LMStudioClient) -> None:
    stream = client.chat_stream("google/gemma-3-270m", "hi", previous_response_id="resp_nope")
    async with stream:
        events = [e async for e in stream]
    [err] = [e for e in events if isinstance(e, ErrorEvent)]
    assert "resp_nope" in err.message and err.error.code == "previous_response_not_found"
    assert events[-1].type == "chat.end"


async def test_stream_validation_error_comes_before_the_stream(client: LMStudioClient) -> None:
    with pytest.raises(BadRequestError):
        await client.chat_stream("qwen/qwen3-4b", "x", temperature=9.0).collect()


async def test_stop_mid_stream_closes_cleanly(make_sim: SimFactory) -> None:
    sim = make_sim(tokens_per_second=40)
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("google/gemma-3-270m")
        stream = c.chat_stream("google/gemma-3-270m", "a long answer please")
        got = []
        async with stream:
            async for ev in stream:
                if isinstance(ev, MessageDelta):
                    got.append(ev.content)
                    if len(got) == 3:
                        break
        assert len(got) == 3 and stream.result is None
        # The connection is closed and the client is still usable; nothing was stored.
        assert sim.state.responses == {}
        again = await c.chat("google/gemma-3-270m", "next", max_output_tokens=4)
        assert again.text


async def test_stream_cut_short_is_reported(make_sim: SimFactory) -> None:
    sim = make_sim(truncate_rate=1.0)
    async with LMStudioClient(sim.url, lms=None) as c:
        with pytest.raises(ServerUnreachable) as info:
            await c.chat_stream("google/gemma-3-270m", "hi").collect()
    assert "ended before the answer was complete" in str(info.value)


async def test_recorded_stream_with_every_event_kind() -> None:
    body = data("stream_full.sse")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async with LMStudioClient(transport=httpx.MockTransport(handler), lms=None) as c:
        stream = c.chat_stream("openai/gpt-oss-20b", "x")
        events = [e async for e in stream]
    names = [e.type for e in events]
    assert names.count("prompt_processing.end") == 2
    assert "tool_call.failure" in names and "some.future_event" in names
    assert type(events[names.index("some.future_event")]).__name__ == "UnknownEvent"
    assert [e.progress for e in events if isinstance(e, ModelLoadProgress)] == [0.0, 0.65]
    assert stream.result is not None
    assert stream.result.text == "The current top model is…"
    assert stream.result.stats.model_load_time_seconds == 12.34


# ----------------------------------------------------------------------------- downloads


async def test_download_progresses_to_completed(
    sim: Simulator, clock: ManualClock, client: LMStudioClient
) -> None:
    job = await client.download("qwen/qwen3-8b")
    assert job.status == "downloading" and job.job_id and not job.finished
    clock.advance(1)
    mid = await client.download_status(job.job_id)
    assert mid.status == "downloading" and 0 < (mid.downloaded_bytes or 0) < (
        mid.total_size_bytes or 0
    )
    clock.advance(3600)
    done = await client.download_status(job.job_id)
    assert done.status == "completed" and done.completed_at
    assert "qwen/qwen3-8b" in {m.key for m in await client.list_models()}
    again = await client.download("qwen/qwen3-8b")
    assert again.status == "already_downloaded" and again.job_id is None


async def test_download_of_an_unknown_job(client: LMStudioClient) -> None:
    with pytest.raises(NotFoundError):
        await client.download_status("job_nothing")


# ----------------------------------------------------------------------------- error kinds


async def test_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with LMStudioClient(url, lms=None) as c:
        with pytest.raises(ServerUnreachable) as info:
            await c.list_models()
    assert url in str(info.value) and "is the server running?" in str(info.value)


async def test_a_slow_server_times_out(make_sim: SimFactory) -> None:
    sim = make_sim(latency_ms=3000)
    async with LMStudioClient(sim.url, timeout=0.3, lms=None) as c:
        with pytest.raises(ServerUnreachable) as info:
            await c.list_models()
    assert "timed out" in str(info.value)


async def test_html_500_becomes_one_readable_sentence(make_sim: SimFactory) -> None:
    sim = make_sim(error_rate=1.0)
    async with LMStudioClient(sim.url, lms=None) as c:
        with pytest.raises(ServerError) as info:
            await c.list_models()
    msg = str(info.value)
    assert "Internal Server Error" in msg and "<" not in msg and "HTTP 500" in msg


async def test_dropped_connection(make_sim: SimFactory) -> None:
    sim = make_sim(drop_rate=1.0)
    async with LMStudioClient(sim.url, lms=None) as c:
        with pytest.raises(ServerUnreachable) as info:
            await c.list_models()
    assert "dropped" in str(info.value)


async def test_truncated_body_is_a_protocol_error(make_sim: SimFactory) -> None:
    sim = make_sim(truncate_rate=1.0)
    async with LMStudioClient(sim.url, lms=None) as c:
        with pytest.raises(ProtocolError):
            await c.list_models()


async def test_a_server_without_api_v1_is_unsupported(make_sim: SimFactory) -> None:
    sim = make_sim(legacy=True)
    async with LMStudioClient(sim.url, lms=None) as c:
        with pytest.raises(UnsupportedServer) as info:
            await c.list_models()
    assert "older than 0.4" in str(info.value)


async def test_the_older_list_shape_is_read_end_to_end(make_sim: SimFactory) -> None:
    sim = make_sim(models_shape="v0")
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("qwen/qwen3-4b")
        models = await c.list_models()
    [qwen] = [m for m in models if m.key == "qwen/qwen3-4b"]
    assert [i.id for i in qwen.instances] == ["qwen/qwen3-4b"]
    assert qwen.instances[0].context_length == 4096


@pytest.mark.parametrize(
    ("status", "body", "kind", "expected"),
    [
        (
            200,
            b'{"error": "Unexpected endpoint or method. (GET /api/v1/models)"}',
            UnsupportedServer,
            "older than 0.4",
        ),
        (200, b'{"error": "Model crashed"}', ProtocolError, "Model crashed"),
        (
            404,
            b'{"error": "Unexpected endpoint or method. (GET /api/v1/models)"}',
            UnsupportedServer,
            "0.4",
        ),
        (400, b'{"error": "plain string error"}', BadRequestError, "plain string error"),
        (
            500,
            b'{"error": {"code": 500, "message": "llama.cpp: failed to decode", "type": "x"}}',
            ServerError,
            "failed to decode",
        ),
        (503, b"", ServerError, "Service Unavailable"),
        (
            403,
            b'{"error": {"message": "Token lacks permission"}}',
            AuthError,
            "Token lacks permission",
        ),
        (200, b"not json at all", ProtocolError, "not valid JSON"),
    ],
)
async def test_odd_bodies_map_to_the_error_tree(
    status: int, body: bytes, kind: type[ApiError], expected: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    async with LMStudioClient(transport=httpx.MockTransport(handler), lms=None) as c:
        with pytest.raises(kind) as info:
            await c.list_models()
    assert expected in str(info.value)
    assert str(info.value).endswith(".")


async def test_retries_transient_failures_then_gives_up(make_sim: SimFactory) -> None:
    sim = make_sim(error_rate=1.0)
    async with LMStudioClient(sim.url, lms=None) as c:
        with pytest.raises(ServerError):
            await with_retries(c.list_models, first_delay=0.01)
    assert len(sim.received("GET", "/api/v1/models")) == 3


async def test_retry_succeeds_after_a_transient_failure(sim: Simulator) -> None:
    async with LMStudioClient(sim.url, lms=None) as c:
        sim.config.error_rate = 1.0
        calls = 0

        async def flaky() -> int:
            nonlocal calls
            calls += 1
            if calls == 2:
                sim.config.error_rate = 0.0
            return len(await c.list_models())

        assert await with_retries(flaky, first_delay=0.01) > 0
        assert calls == 2
    assert len(sim.received("GET", "/api/v1/models")) == 2


# ----------------------------------------------------------------------------- auth and the token


async def test_token_required_missing_wrong_and_right(make_sim: SimFactory) -> None:
    sim = make_sim(token=TOKEN)
    async with LMStudioClient(sim.url, lms=None) as c:
        with pytest.raises(AuthError) as info:
            await c.list_models()
    msg = str(info.value)
    assert "requires an API token" in msg and "LM_API_TOKEN" in msg and info.value.status == 401

    async with LMStudioClient(sim.url, token="wrong-secret-value", lms=None) as c:
        with pytest.raises(AuthError) as info:
            await c.list_models()
    assert "rejected the API token" in str(info.value)
    assert "wrong-secret-value" not in str(info.value)  # the server echoed it; we never do
    assert "wrong-secret-value" not in (info.value.server_message or "")

    async with LMStudioClient(sim.url, token=TOKEN, lms=None) as c:
        assert await c.list_models()
    assert sim.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"


async def test_token_never_in_repr_or_exchange_log(make_sim: SimFactory) -> None:
    sim = make_sim(token=TOKEN)
    log: list[Any] = []
    bad = "malformed-secret-token"
    async with LMStudioClient(sim.url, token=bad, lms=None, on_exchange=log.append) as c:
        assert bad not in repr(c)
        with pytest.raises(AuthError):
            await c.list_models()
    assert log and bad not in repr(log)
    assert log[0]["status"] == 401


@pytest.fixture
def redirector(sim: Simulator) -> Iterator[str]:
    """A server on another origin that redirects every request to the simulator."""

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(307)
            self.send_header("Location", sim.url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()
    server.server_close()


async def test_token_is_not_sent_to_another_origin_on_redirect(
    sim: Simulator, redirector: str
) -> None:
    async with LMStudioClient(redirector, token=TOKEN, lms=None) as c:
        models = await c.list_models()
    assert models  # followed the redirect
    last = sim.received("GET", "/api/v1/models")[-1]
    assert "authorization" not in last.headers


async def test_base_url_forms_are_normalized(sim: Simulator) -> None:
    pasted = sim.url.replace("http://", "") + "/api/v1/"
    async with LMStudioClient(pasted, lms=None) as c:
        assert c.base_url == sim.url
        assert await c.list_models()
