"""Chat sessions when the server fails mid-answer: its own words are kept, the partial answer is
kept, a lost thread is offered a new start, and a silent stream ends at its idle deadline."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from lmgui.api import LMStudioClient
from lmgui.api.limits import Deadlines
from lmgui.core.chat import ChatSession, ThreadSettings
from lmgui.core.chat_store import AsyncChatStore
from tests.conftest import SimFactory
from tests.hostile import HostileFactory


@contextlib.asynccontextmanager
async def session(
    url: str, db: Path, model: str = "google/gemma-3-270m", **client: object
) -> AsyncIterator[ChatSession]:
    store = AsyncChatStore(db)
    async with LMStudioClient(url, lms=None, **client) as c:  # type: ignore[arg-type]
        thread = await store.create_thread("Test", url, model, ThreadSettings().to_dict())
        s = ChatSession(store, lambda: c, thread)
        try:
            yield s
        finally:
            s.stop()
            await s.wait()
            await store.aclose()


def sse(name: str, data: dict[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()


async def test_an_error_then_close_keeps_the_servers_words_and_the_partial_answer(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = make_sim(stream_error="close", stream_error_after=3)
    async with session(sim.url, tmp_path / "c.db") as s:
        done = await s.send("hello")
    assert done is not None and done.status == "error"
    assert done.error == (
        f"LM Studio at {sim.url} reported an error and ended the answer: Model crashed while "
        "generating (simulated fault)."
    )
    assert done.text, "the deltas that arrived before the error are kept"


async def test_an_error_then_chat_end_is_an_error_too(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = make_sim(stream_error="end", stream_error_after=2)
    async with session(sim.url, tmp_path / "c.db") as s:
        done = await s.send("hello")
    assert done is not None and done.status == "error"
    assert done.error == "Model crashed while generating (simulated fault)"
    assert done.text


async def test_a_lost_thread_said_as_an_error_event_then_close_offers_a_new_start(
    hostile: HostileFactory, tmp_path: Path
) -> None:
    result = {
        "model_instance_id": "a/b",
        "output": [{"type": "message", "content": "Hello"}],
        "stats": {},
        "response_id": "resp_1",
    }
    srv = hostile(
        "sse",
        events=[
            sse("chat.start", {"model_instance_id": "a/b"}),
            sse("message.delta", {"content": "Hello"}),
            sse("chat.end", {"result": result}),
        ],
    )
    async with session(srv.url, tmp_path / "c.db", model="a/b") as s:
        first = await s.send("remember this")
        assert first is not None and first.response_id == "resp_1"
        error = {
            "type": "invalid_request",
            "message": "Could not find stored response for previous_response_id",
            "code": "previous_response_not_found",
        }
        srv.set_mode("sse", events=[sse("chat.start", {}), sse("error", {"error": error})])
        lost: list[str] = []
        s.continuation_lost.connect(lambda turn, msg: lost.append(msg))
        done = await s.send("and now?")
    assert done is not None and done.status == "error"
    assert "Could not find stored response" in (done.error or "")
    assert len(lost) == 1 and lost[0].startswith("The server no longer knows this conversation")


async def test_a_stream_that_goes_silent_ends_and_keeps_what_arrived(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = make_sim(stream_stall_after=4)
    async with session(sim.url, tmp_path / "c.db", deadlines=Deadlines(stream_idle=0.5)) as s:
        done = await s.send("hello")
    assert done is not None and done.status == "interrupted"
    assert done.error == (
        f"LM Studio at {sim.url} sent nothing for 0.5 s while answering; lmgui stopped waiting "
        "(what arrived is kept)."
    )
    assert done.text
