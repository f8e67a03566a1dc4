"""The chat history: schema and migrations, turns as a tree, nothing lost, search, export; and
the same through ``AsyncChatStore``, which opens the file and runs every call on its own thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from lmgui.core import chat_store
from lmgui.core.chat_export import branch_json, branch_markdown, transcript
from lmgui.core.chat_store import SCHEMA_VERSION, AsyncChatStore, ChatStore


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    return ChatStore(tmp_path / "chats.sqlite3")


def text(s: str) -> list[dict[str, str]]:
    return [{"type": "text", "content": s}]


def answer(s: str, reasoning: str = "") -> list[dict[str, str]]:
    out = [{"type": "reasoning", "content": reasoning}] if reasoning else []
    return [*out, {"type": "message", "content": s}]


def test_new_file_is_at_the_current_schema_in_wal_mode(tmp_path: Path, store: ChatStore) -> None:
    assert store.version == SCHEMA_VERSION == 1
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_from_a_newer_lmgui_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    sqlite3.connect(path).execute("PRAGMA user_version=99").connection.close()
    with pytest.raises(RuntimeError, match="newer lmgui"):
        ChatStore(path)


def test_turns_form_branches(store: ChatStore) -> None:
    thread = store.create_thread("Test", "http://s:1", "m")
    a = store.add_turn(thread.id, None, text("alpha"), model="m", settings={})
    store.finish_turn(a.id, status="complete", output=answer("A"), response_id="resp_a")
    b = store.add_turn(thread.id, a.id, text("beta"), model="m", settings={})
    store.finish_turn(b.id, status="complete", output=answer("B"), response_id="resp_b")
    c = store.add_turn(thread.id, a.id, text("gamma"), model="m", settings={})  # a branch at a
    assert store.thread(thread.id).current_turn == c.id
    assert [t.user_text for t in store.branch(b.id)] == ["alpha", "beta"]
    assert [t.user_text for t in store.branch(c.id)] == ["alpha", "gamma"]
    assert store.branch(None) == []
    assert store.turn(b.id).text == "B" and store.turn(b.id).response_id == "resp_b"


def test_a_streaming_turn_survives_a_crash_as_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    first = ChatStore(path)
    thread = first.create_thread("T", "http://s:1", "m")
    turn = first.add_turn(thread.id, None, text("long question"), model="m", settings={})
    first.save_progress(turn.id, answer("The first half of"), "m:2")
    # no finish_turn and no close: as if the process died here
    again = ChatStore(path)
    assert again.recovered == [turn.id]
    saved = again.turn(turn.id)
    assert saved.status == "interrupted" and saved.text == "The first half of"
    assert saved.instance_id == "m:2"


def test_images_are_stored_and_referenced(store: ChatStore) -> None:
    thread = store.create_thread("T", "http://s:1", "m")
    png = b"\x89PNG\r\n\x1a\n" + bytes(10)
    turn = store.add_turn(
        thread.id, None, text("see"), model="m", settings={}, images=[("image/png", png)]
    )
    [img] = [i for i in turn.input if i["type"] == "image"]
    assert store.image(img["image_id"]) == ("image/png", png)


def test_thread_list_search_rename_delete(store: ChatStore) -> None:
    one = store.create_thread("Cooking", "http://s:1", "m")
    two = store.create_thread("Travel", "http://s:1", "m")
    t = store.add_turn(two.id, None, text("Where is Oslo?"), model="m", settings={})
    store.finish_turn(t.id, status="complete", output=answer("In Norway."))
    assert [x.title for x in store.threads()] == ["Travel", "Cooking"]  # newest first
    assert [x.title for x in store.threads("norway")] == ["Travel"]  # searches the answers too
    store.rename_thread(one.id, "Recipes")
    assert store.thread(one.id).title == "Recipes"
    store.delete_thread(two.id)
    assert [x.title for x in store.threads()] == ["Recipes"]
    with pytest.raises(KeyError):
        store.turn(t.id)  # turns go with their thread


def test_a_thread_moves_to_another_server_only_before_its_first_turn(store: ChatStore) -> None:
    thread = store.create_thread("T", "http://a:1", "m")
    store.set_thread_server(thread.id, "http://b:2")
    assert (store.thread(thread.id).server, store.thread(thread.id).model) == ("http://b:2", "m")
    store.set_thread_server(thread.id, "http://a:1", model="other")
    assert (store.thread(thread.id).server, store.thread(thread.id).model) == (
        "http://a:1",
        "other",
    )
    store.add_turn(thread.id, None, text("hi"), model="other", settings={})
    with pytest.raises(ValueError, match="already has answers on its server"):
        store.set_thread_server(thread.id, "http://b:2")
    assert store.thread(thread.id).server == "http://a:1"
    with pytest.raises(KeyError):
        store.set_thread_server(12345, "http://b:2")


def test_export_markdown_and_json(store: ChatStore) -> None:
    thread = store.create_thread("Weather", "http://s:1", "m", {"system_prompt": "Be brief."})
    a = store.add_turn(thread.id, None, text("Weather in Oslo?"), model="m", settings={})
    store.finish_turn(
        a.id,
        status="complete",
        output=answer("-3 C and snow.", reasoning="Look it up."),
        stats={"tokens_per_second": 40.0},
        response_id="resp_1",
        instance_id="m",
    )
    b = store.add_turn(
        thread.id,
        a.id,
        text("And tomorrow?"),
        model="m",
        settings={"previous_response_id": "resp_1"},
    )
    store.finish_turn(b.id, status="stopped", output=answer("Probably"))
    turns = store.branch(b.id)
    thread = store.thread(thread.id)
    md = branch_markdown(thread, turns)
    assert md.startswith("# Weather\n")
    assert "> Be brief." in md and "-3 C and snow." in md and "Look it up." not in md
    assert "*(stopped)*" in md and "resp_1" in md
    assert "Look it up." in branch_markdown(thread, turns, reasoning=True)
    data = json.loads(branch_json(thread, turns))
    assert [t["input"][0]["content"] for t in data["turns"]] == [
        "Weather in Oslo?",
        "And tomorrow?",
    ]
    assert data["turns"][1]["previous_response_id"] == "resp_1"
    assert all(i["type"] != "reasoning" for t in data["turns"] for i in t["output"])
    assert transcript(turns) == (
        "User: Weather in Oslo?\n\nAssistant: -3 C and snow.\n\n"
        "User: And tomorrow?\n\nAssistant: Probably"
    )


# ----------------------------------------------------------------------------- AsyncChatStore


async def test_the_file_is_opened_on_the_worker_by_the_first_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened_on: list[str] = []

    class Recording(ChatStore):
        def __init__(self, path: Path | str) -> None:
            opened_on.append(threading.current_thread().name)
            super().__init__(path)

    monkeypatch.setattr(chat_store, "ChatStore", Recording)
    path = tmp_path / "chats.sqlite3"
    store = AsyncChatStore(path)
    assert not path.exists()  # constructing it touches no disk
    try:
        await store.open()
        await store.open()  # once
        assert path.exists() and opened_on == ["lmgui-chat-db_0"]
    finally:
        await store.aclose()


async def test_a_file_from_a_newer_lmgui_is_refused_at_the_first_await(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    sqlite3.connect(path).execute("PRAGMA user_version=99").connection.close()
    store = AsyncChatStore(path)
    try:
        with pytest.raises(RuntimeError, match="newer lmgui"):
            await store.open()
        with pytest.raises(RuntimeError, match="newer lmgui"):
            await store.threads()  # every later call says the same
    finally:
        await store.aclose()


async def test_closing_a_store_never_opened_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    store = AsyncChatStore(path)
    await store.aclose()
    await store.aclose()  # twice is fine
    assert not path.exists()
    with pytest.raises(RuntimeError, match="closed"):
        await store.threads()


async def test_every_store_call_awaited(tmp_path: Path) -> None:
    store = AsyncChatStore(tmp_path / "chats.sqlite3")
    try:
        thread = await store.create_thread("Birds", "http://s:1", "m", {"system_prompt": "Hi."})
        assert (await store.thread(thread.id)).settings == {"system_prompt": "Hi."}
        png = b"\x89PNG\r\n\x1a\n" + bytes(8)
        a = await store.add_turn(
            thread.id, None, text("herons?"), model="m", settings={}, images=[("image/png", png)]
        )
        assert a.status == "streaming"
        await store.save_progress(a.id, answer("Tall"), "m:2")
        assert (await store.turn(a.id)).text == "Tall"
        a = await store.finish_turn(
            a.id,
            status="complete",
            output=answer("Tall birds.", reasoning="Think."),
            stats={"input_tokens": 5},
            response_id="resp_a",
        )
        assert a.status == "complete" and a.instance_id == "m:2" and a.stats["input_tokens"] == 5
        [img] = [i for i in a.input if i["type"] == "image"]
        assert await store.image(img["image_id"]) == ("image/png", png)
        b = await store.add_turn(thread.id, a.id, text("owls?"), model="m", settings={})
        await store.finish_turn(b.id, status="stopped", output=answer("Owls"))
        assert [t.user_text for t in await store.branch(b.id)] == ["herons?", "owls?"]
        assert [t.id for t in await store.turns(thread.id)] == [a.id, b.id]
        # Changes give the thread back as it is afterwards.
        moved = await store.update_thread(thread.id, current_turn=a.id, model="m2")
        assert moved.current_turn == a.id and moved.model == "m2"
        with pytest.raises(ValueError, match="stays on that server"):
            await store.set_thread_server(thread.id, "http://other:2")
        fresh = await store.create_thread("Fresh", "http://s:1", "m")
        moved_to = await store.set_thread_server(fresh.id, "http://other:2", model="m3")
        assert (moved_to.server, moved_to.model) == ("http://other:2", "m3")
        await store.delete_thread(fresh.id)
        renamed = await store.rename_thread(thread.id, "Herons")
        assert renamed.title == "Herons" and renamed.current_turn == a.id
        assert [t.title for t in await store.threads("tall birds")] == ["Herons"]
        assert await store.threads("nothing like it") == []
        # Export reads the thread's current branch (only the first turn now).
        md = await store.export_branch(thread.id, fmt="md")
        assert md.startswith("# Herons\n") and "Tall birds." in md and "Owls" not in md
        assert "Think." in await store.export_branch(thread.id, fmt="md", reasoning=True)
        data = json.loads(await store.export_branch(thread.id, fmt="json"))
        assert [t["response_id"] for t in data["turns"]] == ["resp_a"]
        await store.delete_thread(thread.id)
        assert await store.threads() == []
        assert await store.recovered() == []
    finally:
        await store.aclose()


async def test_turns_cut_off_last_time_are_read_with_an_await(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    first = ChatStore(path)
    thread = first.create_thread("T", "http://s:1", "m")
    turn = first.add_turn(thread.id, None, text("long question"), model="m", settings={})
    # no finish_turn and no close: as if the process died here
    store = AsyncChatStore(path)
    try:
        assert await store.recovered() == [turn.id]
        assert (await store.turn(turn.id)).status == "interrupted"
    finally:
        await store.aclose()
        first.close()
