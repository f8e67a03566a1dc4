"""The client and the command line against a server that answers badly on purpose.

Each case asserts the sentence the user sees, the exit status where the CLI is involved, that
nothing waits past its deadline (small deadlines here; the defaults are documented in
lmgui/api/limits.py), and for big bodies that no more than the limit was read, counted on the
server's side.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lmgui.api import LMStudioClient
from lmgui.api.errors import (
    DeadlineExceeded,
    ProtocolError,
    ResponseTooLarge,
    ServerError,
    ServerUnreachable,
)
from lmgui.api.limits import KIB, MIB, Deadlines, Limits
from lmgui.cli import main
from lmgui.core.paths import AppPaths
from tests.hostile import HostileFactory, HostileServer

MODELS = (
    b'{"models": [{"type": "llm", "key": "a/b", "display_name": "A B", "loaded_instances": []}]}'
)
SLACK = 8 * MIB
"""What the kernel's socket buffers can hold beyond what the client read (tests/hostile.py)."""


def run_cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), paths=AppPaths.under(tmp_path), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def lists(srv: HostileServer) -> list[object]:
    """The model-list requests the server got (the SDK channel's greeting probe aside)."""
    return [r for r in srv.requests if r.path == "/api/v1/models"]


def quick(url: str, **kw: object) -> LMStudioClient:
    deadlines = Deadlines(models=1.0, unload=1.0, chat=1.0, download=1.0, stream_idle=0.5)
    return LMStudioClient(url, lms=None, deadlines=deadlines, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- model list


def test_truncated_json_is_one_sentence(hostile: HostileFactory, tmp_path: Path) -> None:
    srv = hostile("json", body=b'{"models": [{"key": "a/b", "loaded_ins')
    code, out, err = run_cli(tmp_path, "ps", "--server", srv.url)
    assert code == 1 and out == ""
    assert err.startswith(f"lmgui: LM Studio at {srv.url}: ")
    assert "model list is not valid JSON" in err and err.count("\n") == 1


def test_a_huge_model_list_is_cut_at_the_limit(hostile: HostileFactory, tmp_path: Path) -> None:
    srv = hostile("huge", size=200 * MIB, chunked=True)
    code, _, err = run_cli(tmp_path, "ps", "--server", srv.url)
    assert code == 1
    assert err == (
        f"lmgui: LM Studio at {srv.url} sent the model list larger than 64 MiB; lmgui stopped "
        "reading it.\n"
    )
    assert srv.wait_idle()
    assert len(lists(srv)) == 1, "an answer that was too large is not asked for again"
    # The list, and the SDK channel's greeting probe (read to 4 KiB at most).
    assert srv.bytes_sent <= 64 * MIB + 2 * SLACK


async def test_a_declared_length_over_the_limit_is_not_read(hostile: HostileFactory) -> None:
    srv = hostile("huge", size=200 * MIB, chunked=False)
    async with LMStudioClient(srv.url, lms=None, limits=Limits(models_body=1 * MIB)) as c:
        with pytest.raises(ResponseTooLarge, match="larger than 1 MiB"):
            await c.list_models()
    assert srv.wait_idle()
    assert srv.bytes_sent <= SLACK


def test_a_500_with_a_huge_body_reads_only_its_start(
    hostile: HostileFactory, tmp_path: Path
) -> None:
    srv = hostile("huge_error", size=100 * MIB)
    code, _, err = run_cli(tmp_path, "ps", "--server", srv.url)
    assert code == 1
    assert err.startswith(
        f"lmgui: LM Studio at {srv.url} failed (HTTP 500): Internal Server Error: something"
    )
    assert err.count("\n") == 1 and len(err) < 300
    assert srv.wait_idle()
    # Retried as a server error, but each try reads 64 KiB, not 100 MB (the greeting probe too).
    assert len(lists(srv)) == 3
    assert srv.bytes_sent <= len(srv.requests) * (64 * KIB + SLACK)


def test_a_web_page_is_not_the_api(hostile: HostileFactory, tmp_path: Path) -> None:
    srv = hostile("html")
    code, _, err = run_cli(tmp_path, "ls", "--server", srv.url)
    assert code == 1
    assert err == (
        f"lmgui: The server at {srv.url} answered with a web page (\u201cRouter login\u201d), "
        "not LM Studio's API; check the server address and port.\n"
    )


async def test_a_dripping_model_list_ends_at_its_deadline(hostile: HostileFactory) -> None:
    srv = hostile("drip", interval=0.1)
    async with quick(srv.url) as c:
        with pytest.raises(DeadlineExceeded) as info:
            await c.list_models()
    assert str(info.value) == (
        f"LM Studio at {srv.url} did not finish sending the model list within 1 s; the server "
        "or the network is too slow, or stuck."
    )


async def test_a_stalled_answer_ends_at_its_deadline(hostile: HostileFactory) -> None:
    srv = hostile("stall", send_headers=False)
    async with quick(srv.url, timeout=30.0) as c:
        with pytest.raises(DeadlineExceeded):
            await c.unload("a/b")


def test_the_cli_does_not_retry_a_server_past_its_deadline(
    hostile: HostileFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lmgui.api.client.Deadlines", lambda: Deadlines(models=0.5))
    srv = hostile("drip", interval=0.1)
    code, out, err = run_cli(tmp_path, "ps", "--server", srv.url)
    assert code == 1 and out == ""
    assert "did not finish sending the model list within 0.5 s" in err
    assert len(lists(srv)) == 1


async def test_a_redirect_to_another_port_never_carries_the_token(
    hostile: HostileFactory,
) -> None:
    other = hostile("json", body=MODELS)
    srv = hostile("redirect", target=other.url, status=307)
    async with LMStudioClient(srv.url, token="sk-lm-secret:value", lms=None) as c:
        models = await c.list_models()
    assert [m.key for m in models] == ["a/b"]
    assert srv.requests[0].headers["authorization"] == "Bearer sk-lm-secret:value"
    assert "authorization" not in other.requests[0].headers


# ----------------------------------------------------------------------------- chat streams

DELTA = b'event: message.delta\ndata: {"type": "message.delta", "content": "Hel"}\n\n'
START = b'event: chat.start\ndata: {"type": "chat.start", "model_instance_id": "a/b"}\n\n'


async def collect(c: LMStudioClient) -> tuple[list[str], BaseException | None]:
    seen: list[str] = []
    try:
        async with c.chat_stream("a/b", "hi") as stream:
            async for ev in stream:
                seen.append(ev.type)
    except Exception as exc:
        return seen, exc
    return seen, None


async def test_a_stream_cut_mid_event_says_so(hostile: HostileFactory) -> None:
    srv = hostile("sse", events=[START, DELTA, b'event: message.delta\ndata: {"type": "mes'])
    async with quick(srv.url) as c:
        seen, exc = await collect(c)
    assert seen == ["chat.start", "message.delta"]
    assert isinstance(exc, ServerUnreachable) and not isinstance(exc, DeadlineExceeded)
    assert str(exc) == (
        f"The stream from LM Studio at {srv.url} ended before the answer was complete."
    )


async def test_sse_garbage_is_kept_as_unknown_events_then_said(hostile: HostileFactory) -> None:
    srv = hostile("sse", events=[b"data: not json at all\n\n", b"event: \x00??\ndata: {]\n\n"])
    async with quick(srv.url) as c:
        seen, exc = await collect(c)
    assert len(seen) == 2
    assert isinstance(exc, ServerUnreachable)


async def test_an_error_event_then_close_keeps_the_servers_words(hostile: HostileFactory) -> None:
    error = (
        b'event: error\ndata: {"type": "error", "error": {"type": "model_error", '
        b'"message": "Model crashed while generating", "code": "model_crashed"}}\n\n'
    )
    srv = hostile("sse", events=[START, DELTA, error])
    async with quick(srv.url) as c:
        seen, exc = await collect(c)
    assert seen == ["chat.start", "message.delta", "error"]
    assert isinstance(exc, ServerError)
    assert str(exc) == (
        f"LM Studio at {srv.url} reported an error and ended the answer: Model crashed while "
        "generating."
    )
    assert exc.code == "model_crashed" and exc.server_message == "Model crashed while generating"


async def test_comments_only_end_after_the_idle_time(hostile: HostileFactory) -> None:
    srv = hostile("sse", events=[START, b": keep-alive\n\n"], interval=0.05, then="repeat")
    async with quick(srv.url) as c:
        seen, exc = await collect(c)
    assert seen == ["chat.start"]
    assert isinstance(exc, DeadlineExceeded)
    assert str(exc) == (
        f"LM Studio at {srv.url} sent nothing for 0.5 s while answering; lmgui stopped waiting "
        "(what arrived is kept)."
    )


async def test_a_huge_sse_line_is_cut_at_the_limit(hostile: HostileFactory) -> None:
    srv = hostile("sse_huge_line", size=60 * MIB, before=[START])
    async with quick(srv.url) as c:
        seen, exc = await collect(c)
    assert seen == ["chat.start"]
    assert isinstance(exc, ResponseTooLarge)
    assert "sent a stream line larger than 16 MiB" in str(exc)
    assert srv.wait_idle()
    assert srv.bytes_sent <= 16 * MIB + SLACK


async def test_a_chat_end_without_a_result_is_an_error(hostile: HostileFactory) -> None:
    end = b'event: chat.end\ndata: {"type": "chat.end", "result": null}\n\n'
    srv = hostile("sse", events=[START, DELTA, end])
    async with quick(srv.url) as c:
        seen, exc = await collect(c)
    assert seen == ["chat.start", "message.delta"]
    assert isinstance(exc, ProtocolError)
    assert str(exc) == (
        f"LM Studio at {srv.url} sent a chat answer without its output; the answer is lost."
    )


def test_a_chat_answer_without_output_is_not_an_empty_success(
    hostile: HostileFactory, tmp_path: Path
) -> None:
    srv = hostile("json", body=b'{"response_id": "resp_1", "stats": {}}')
    code, out, err = run_cli(tmp_path, "chat", "a/b", "hi", "--server", srv.url)
    assert code == 1 and out == ""
    assert err == (
        f"lmgui: LM Studio at {srv.url} sent a chat answer without its output; the answer is "
        "lost.\n"
    )
