"""Chat sessions against the simulator: threading, branches, streaming, stop, nothing lost."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lmgui.api import LMStudioClient
from lmgui.core.chat import IMAGE_LIMIT_BYTES, ChatSession, ServerNotWatchedError, ThreadSettings
from lmgui.core.chat_store import AsyncChatStore, ChatStore
from lmgui.sim import Simulator
from tests.conftest import SimFactory
from tests.gui.conftest import wait_for

PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)


@contextlib.asynccontextmanager
async def session(
    sim: Simulator, db: Path, model: str = "google/gemma-3-270m", **settings: object
) -> AsyncIterator[ChatSession]:
    store = AsyncChatStore(db)
    async with LMStudioClient(sim.url, lms=None) as client:
        thread = await store.create_thread(
            "Test",
            sim.url,
            model,
            ThreadSettings(**settings).to_dict(),  # type: ignore[arg-type]
        )
        s = ChatSession(store, lambda: client, thread)
        try:
            yield s
        finally:
            s.stop()
            await s.wait()
            await store.aclose()


def chat_bodies(sim: Simulator) -> list[dict[str, object]]:
    return [r.body for r in sim.received("POST", "/api/v1/chat")]


async def test_streaming_deltas_arrive_in_order_and_the_turn_is_saved(
    sim: Simulator, tmp_path: Path
) -> None:
    async with session(sim, tmp_path / "c.db") as s:
        deltas: list[tuple[str, str]] = []
        s.delta.connect(lambda turn, kind, text: deltas.append((kind, text)))
        done = await s.send("hello")
        assert done is not None and done.status == "complete"
        assert "".join(t for k, t in deltas if k == "message") == done.text
        assert done.text.startswith("Turn 1. You said: \u201chello\u201d")
        assert done.response_id and done.stats["tokens_per_second"] > 0
        assert done.stats["model_load_time_seconds"] is not None  # JIT-loaded by this turn
        assert done.instance_id == "google/gemma-3-270m"


async def test_each_turn_continues_from_the_last_and_a_branch_from_an_earlier_one(
    sim: Simulator, tmp_path: Path
) -> None:
    async with session(sim, tmp_path / "c.db") as s:
        first = await s.send("one")
        second = await s.send("two")
        assert first is not None and second is not None
        bodies = chat_bodies(sim)
        assert "previous_response_id" not in bodies[0]
        assert bodies[1]["previous_response_id"] == first.response_id
        assert second.text.startswith("Turn 2.")

        await s.continue_from(first.id)  # "Continue from here" on the first answer
        branch = await s.send("two, again")
        assert branch is not None and branch.parent_id == first.id
        assert chat_bodies(sim)[2]["previous_response_id"] == first.response_id
        assert [t.user_text for t in await s.branch()] == ["one", "two, again"]
        turns = await s.store.turns(s.record.id)
        assert len(turns) == 3  # the other branch is still there


async def test_new_thread_sends_no_previous_id(sim: Simulator, tmp_path: Path) -> None:
    async with session(sim, tmp_path / "c.db") as s:
        await s.send("one")
    async with session(sim, tmp_path / "c.db") as fresh:
        await fresh.send("fresh start")
    assert "previous_response_id" not in chat_bodies(sim)[-1]


async def test_store_off_returns_no_id_and_the_next_turn_starts_anew(
    sim: Simulator, tmp_path: Path
) -> None:
    async with session(sim, tmp_path / "c.db", store=False) as s:
        first = await s.send("not kept")
        assert first is not None and first.response_id is None
        assert chat_bodies(sim)[0]["store"] is False
        await s.send("next")
        assert "previous_response_id" not in chat_bodies(sim)[1]


async def test_system_prompt_and_settings_are_sent(sim: Simulator, tmp_path: Path) -> None:
    async with session(
        sim,
        tmp_path / "c.db",
        "qwen/qwen3-4b",
        system_prompt="Be brief.",
        temperature=0.2,
        max_output_tokens=64,
        reasoning="off",
    ) as s:
        await s.send("hi")
    body = chat_bodies(sim)[0]
    assert (
        body["system_prompt"],
        body["temperature"],
        body["max_output_tokens"],
        body["reasoning"],
    ) == ("Be brief.", 0.2, 64, "off")


async def test_jit_load_progress_is_reported(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = make_sim(load_seconds_per_gb=0.5)
    async with session(sim, tmp_path / "c.db", "qwen/qwen3-4b") as s:
        progress: list[float] = []
        s.model_loading.connect(lambda turn, p: progress.append(p))
        done = await s.send("load yourself")
    assert progress[0] == 0.0 and progress[-1] == 1.0
    assert done is not None and done.stats["model_load_time_seconds"] == pytest.approx(1.25)


async def test_an_unknown_response_id_is_said_in_one_sentence(
    sim: Simulator, tmp_path: Path
) -> None:
    async with session(sim, tmp_path / "c.db") as s:
        await s.send("remember this")
        sim.state.restart()  # the server forgets every stored response
        lost: list[str] = []
        s.continuation_lost.connect(lambda turn, msg: lost.append(msg))
        done = await s.send("and now?")
    assert done is not None and done.status == "error"
    assert len(lost) == 1 and lost[0].startswith("The server no longer knows this conversation")


async def test_images_go_as_data_urls_with_a_size_limit(sim: Simulator, tmp_path: Path) -> None:
    async with session(sim, tmp_path / "c.db", "qwen/qwen3.5-9b") as s:
        done = await s.send("what is this?", [("image/png", PNG)])
        assert done is not None and "I see 1 image" in done.text
        item = chat_bodies(sim)[0]["input"][1]  # type: ignore[index]
        assert item["type"] == "image" and item["data_url"].startswith("data:image/png;base64,")
        with pytest.raises(ValueError, match="too large"):
            s.send("big", [("image/png", bytes(IMAGE_LIMIT_BYTES + 1))])
        with pytest.raises(ValueError, match="not an image"):
            s.send("pdf", [("application/pdf", b"%PDF")])


async def test_stop_keeps_the_partial_answer(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = make_sim(tokens_per_second=30)
    async with session(sim, tmp_path / "c.db") as s:
        got: list[str] = []
        s.delta.connect(lambda turn, kind, text: got.append(text) if kind == "message" else None)
        finished: list[object] = []
        s.turn_finished.connect(finished.append)
        s.send("a long answer please")
        await wait_for(lambda: len(got) >= 3)
        s.stop()
        await s.wait()
        [turn] = finished
        assert turn.status == "stopped"  # type: ignore[attr-defined]
        assert turn.text == "".join(got) and turn.text  # type: ignore[attr-defined]
        assert not s.busy
        again = await s.send("continue")  # a stopped turn has no response id: a fresh start
        assert again is not None and again.status == "complete"


async def test_a_thread_reopened_later_continues_from_its_stored_id(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    async with session(sim, db) as s:
        first = await s.send("before the restart of lmgui")
        thread_id = s.record.id
    assert first is not None
    store = AsyncChatStore(db)
    async with LMStudioClient(sim.url, lms=None) as client:
        record = await store.thread(thread_id)
        reopened = ChatSession(store, lambda: client, record)
        done = await reopened.send("after it")
    await store.aclose()
    assert chat_bodies(sim)[-1]["previous_response_id"] == first.response_id
    assert done is not None and "before the restart of lmgui" in done.text


async def test_a_thread_whose_server_is_not_watched_sends_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    store = AsyncChatStore(tmp_path / "c.db")
    try:
        thread = await store.create_thread("Gone", sim.url, "google/gemma-3-270m")
        s = ChatSession(store, lambda: None, thread)
        with pytest.raises(ServerNotWatchedError) as caught:
            s.send("anyone?")
        assert str(caught.value) == (
            f"This thread's server, {sim.url}, is not among the servers lmgui watches: turn it "
            "on in Settings."
        )
        assert not s.busy and await store.turns(thread.id) == []
    finally:
        await store.aclose()
    assert chat_bodies(sim) == []


async def test_a_server_switched_off_while_sending_ends_the_turn_with_the_sentence(
    sim: Simulator, tmp_path: Path
) -> None:
    store = AsyncChatStore(tmp_path / "c.db")
    asked: list[str] = []
    async with LMStudioClient(sim.url, lms=None) as client:

        def client_now() -> LMStudioClient | None:
            asked.append("now")  # watched when send() looks, switched off by the request
            return client if len(asked) == 1 else None

        thread = await store.create_thread("Gone", sim.url, "google/gemma-3-270m")
        s = ChatSession(store, client_now, thread)
        done = await s.send("anyone?")
    await store.aclose()
    assert done is not None and done.status == "error"
    assert done.error is not None and done.error.startswith("This thread's server, ")
    assert chat_bodies(sim) == []


CHILD = """
import asyncio, sys
from lmgui.api import LMStudioClient
from lmgui.core.chat import ChatSession
from lmgui.core.chat_store import AsyncChatStore

async def main(db, url):
    store = AsyncChatStore(db)
    async with LMStudioClient(url, lms=None) as client:
        thread = await store.create_thread("Killed", url, "google/gemma-3-270m")
        await ChatSession(store, lambda: client, thread).send("tell me a long story")

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_a_process_killed_mid_stream_leaves_an_interrupted_turn(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = make_sim(tokens_per_second=20, answer_tokens=400)
    db = tmp_path / "c.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), sim.url], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        partial = ""
        while not partial:  # the answer is saved as it grows: wait for the first save
            assert time.monotonic() < deadline, "no partial answer was saved"
            time.sleep(0.05)
            with contextlib.suppress(sqlite3.Error):
                con = sqlite3.connect(db)
                row = con.execute("SELECT output FROM turns").fetchone()
                con.close()
                partial = row[0] if row and row[0] != "[]" else ""
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
    reopened = ChatStore(db)
    [turn] = reopened.turns(reopened.threads()[0].id)
    assert turn.status == "interrupted" and turn.text.startswith("Turn 1.")
    assert reopened.recovered == [turn.id]
