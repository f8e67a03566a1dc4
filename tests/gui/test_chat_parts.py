"""The chat pane's parts without a server: the model picker's list model, Export through a dialog
that is opened (never exec'd inside a task), image files read off the GUI thread after their size
was checked, and the pane's one task set."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from lmgui.api.client import LMStudioClient
from lmgui.api.records import Instance, Model
from lmgui.core import images
from lmgui.core.chat_store import AsyncChatStore
from lmgui.qtmodels.model_picker import NAME_ROLE, ModelPickerModel, default_pick
from lmgui.ui import chat_composer
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.chat_settings import ServerEntry, server_entries
from lmgui.ui.chat_threads import server_label
from tests.gui.conftest import wait_for

GEMMA = Model(
    key="google/gemma-3-270m",
    type="llm",
    display_name="Gemma 3 270M",
    instances=(Instance("google/gemma-3-270m", "google/gemma-3-270m"),),
)
QWEN = Model(key="qwen/qwen3-4b", type="llm", display_name="Qwen3 4B")
EMBED = Model(key="nomic/embed", type="embedding", display_name="Nomic")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


SERVER = "http://s:1"


def no_client(url: str) -> LMStudioClient:
    raise AssertionError("these tests send nothing")


@contextlib.asynccontextmanager
async def pane_on(qtbot: QtBot, tmp_path: Path, models: list[Model]) -> AsyncIterator[ChatPane]:
    store = AsyncChatStore(tmp_path / "chats.sqlite3")
    pane = ChatPane(
        store,
        no_client,
        lambda: [(SERVER, "s")],
        lambda url: models if url == SERVER else [],
        current_server=lambda: SERVER,
    )
    qtbot.addWidget(pane)
    said: list[str] = []
    pane.status.connect(said.append)
    pane.said = said  # type: ignore[attr-defined]
    try:
        yield pane
    finally:
        await pane.aclose()
        await store.aclose()


def test_the_picker_lists_instances_first_then_llms_that_load_on_first_message(
    qtmodeltester: Any,
) -> None:
    picker = ModelPickerModel()
    assert picker.set_models([QWEN, GEMMA, EMBED])
    qtmodeltester.check(picker)
    rows = [(picker.index(r, 0).data(), picker.index(r, 0).data(NAME_ROLE)) for r in range(2)]
    assert rows == [
        ("google/gemma-3-270m  (loaded)", "google/gemma-3-270m"),
        ("Qwen3 4B  (qwen/qwen3-4b, loads on first message)", "qwen/qwen3-4b"),
    ]
    assert picker.rowCount() == 2  # no embedding model
    assert not picker.set_models([QWEN, GEMMA, EMBED])  # unchanged: nothing touched
    assert picker.set_models([QWEN], keep="google/gemma-3-270m")
    assert picker.index(1, 0).data() == "google/gemma-3-270m  (not on the server now)"
    assert picker.row_of("google/gemma-3-270m") == 1 and picker.row_of("nothing") == -1
    qtmodeltester.check(picker)


def test_a_new_thread_on_a_server_picks_its_first_loaded_llm_else_its_first_llm() -> None:
    assert default_pick([QWEN, GEMMA, EMBED]) == "google/gemma-3-270m"
    assert default_pick([EMBED, QWEN]) == "qwen/qwen3-4b"
    assert default_pick([EMBED]) is None and default_pick([]) is None


def test_servers_are_named_by_their_labels_and_an_unwatched_one_by_its_address() -> None:
    servers = [("http://a:1", "Desk"), ("http://b:2", "Lab <box>")]
    assert server_entries(servers, "http://b:2") == [
        ServerEntry("Desk", "http://a:1"),
        ServerEntry("Lab <box>", "http://b:2"),
    ]
    assert server_entries(servers[:1], "http://u:pw@gone:3")[-1] == ServerEntry(
        "http://u:***@gone:3  (not watched now)", "http://u:pw@gone:3"
    )
    assert server_label(servers, "http://b:2") == "Lab <box>"
    assert server_label(servers[:1], "http://a:1") is None  # one server: the list as before
    assert server_label(servers[:1], "http://b:2") == "http://b:2  (not watched now)"


async def test_the_picker_keeps_a_threads_model_the_server_no_longer_has(
    qtbot: QtBot, tmp_path: Path
) -> None:
    async with pane_on(qtbot, tmp_path, [GEMMA, QWEN]) as pane:
        await pane.new_thread("gone/model")
        box = pane.settings_bar.model_box
        assert box.currentData() == "gone/model"
        assert box.currentText() == "gone/model  (not on the server now)"
        assert box.count() == 3 and box.isEnabled()


async def test_export_asks_for_a_file_with_an_open_dialog_then_writes_it(
    qtbot: QtBot, tmp_path: Path
) -> None:
    async with pane_on(qtbot, tmp_path, [GEMMA]) as pane:
        record = await pane.new_thread("google/gemma-3-270m", title="Herons/owls")
        turn = await pane.store.add_turn(
            record.id, None, [{"type": "text", "content": "herons?"}], model="m", settings={}
        )
        await pane.store.finish_turn(
            turn.id, status="complete", output=[{"type": "message", "content": "Tall birds."}]
        )
        await pane.open_thread(record.id)
        dialog = pane.threads.choose_export_file("md", False)
        assert isinstance(dialog, QFileDialog)
        # Opened and returned at once: no nested event loop runs while a task is executing.
        assert dialog.isVisible() and pane.threads.export_dialog is dialog
        assert dialog.acceptMode() == QFileDialog.AcceptMode.AcceptSave
        assert dialog.selectedFiles()[0].endswith("Herons_owls.md")
        target = tmp_path / "out.md"
        dialog.fileSelected.emit(str(target))
        dialog.reject()
        await pane.settle()
        assert target.read_text(encoding="utf-8") == await pane.export_text("md", reasoning=False)
        assert "Tall birds." in target.read_text(encoding="utf-8")
        assert pane.said[-1] == f"Exported to {target}."  # type: ignore[attr-defined]
        assert pane.threads.export_dialog is None


async def test_image_files_are_read_in_a_thread_after_their_size_was_checked(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_on: list[str] = []

    def recording(path: Path, mime: str) -> bytes:
        read_on.append(threading.current_thread().name)
        return images.read_image(path, mime)

    monkeypatch.setattr(chat_composer, "read_image", recording)
    small = tmp_path / "small.png"
    small.write_bytes(PNG)
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:
        f.truncate(50 * 10**6)  # sparse
    async with pane_on(qtbot, tmp_path, [GEMMA]) as pane:
        composer = pane.composer
        await composer.add_image_files([(huge, "image/png"), (small, "image/png")])
        assert composer.images() == [("image/png", PNG)]
        assert composer.attachments.text() == "1 image attached (72 B)"
        assert pane.said == [  # type: ignore[attr-defined]
            "That image is too large to send (50.0 MB); images up to 8 MB can be sent."
        ]
        assert len(read_on) == 2 and threading.main_thread().name not in read_on


async def test_a_dropped_file_is_named_on_the_gui_thread_and_read_off_it(
    qtbot: QtBot, tmp_path: Path
) -> None:
    small = tmp_path / "drop.png"
    small.write_bytes(PNG)
    async with pane_on(qtbot, tmp_path, [GEMMA]) as pane:
        data = QMimeData()
        data.setUrls(
            [QUrl.fromLocalFile(str(small)), QUrl.fromLocalFile(str(tmp_path / "notes.txt"))]
        )
        pane.composer.input.insertFromMimeData(data)
        assert pane.composer.images() == []  # not read in the drop itself
        await pane.settle()
        assert pane.composer.images() == [("image/png", PNG)]


async def test_chat_with_opens_a_new_thread_with_that_instance(
    qtbot: QtBot, tmp_path: Path
) -> None:
    async with pane_on(qtbot, tmp_path, [GEMMA, QWEN]) as pane:
        task = pane.chat_with("qwen/qwen3-4b")
        assert task is not None
        record = await task
        assert pane.session is not None and pane.session.record.id == record.id
        assert record.model == "qwen/qwen3-4b"
        assert pane.settings_bar.model_box.currentData() == "qwen/qwen3-4b"
        assert pane.threads.thread_list.count() == 1
        assert record.server == SERVER
        assert pane.settings_bar.server_box.isHidden()  # one server: nothing to choose


async def test_with_no_server_watched_a_new_thread_is_refused_in_a_sentence(
    qtbot: QtBot, tmp_path: Path
) -> None:
    store = AsyncChatStore(tmp_path / "chats.sqlite3")
    pane = ChatPane(store, no_client, lambda: [], lambda url: [], current_server=lambda: "")
    qtbot.addWidget(pane)
    said: list[str] = []
    pane.status.connect(said.append)
    try:
        pane.chat_with()
        await pane.settle()
        assert said == [
            "Starting a new thread failed: lmgui watches no server: turn one on in Settings first."
        ]
        assert pane.session is None and await store.threads() == []
    finally:
        await pane.aclose()
        await store.aclose()


async def test_a_failure_in_the_panes_work_is_one_sentence_and_nothing_starts_after_close(
    qtbot: QtBot, tmp_path: Path
) -> None:
    async with pane_on(qtbot, tmp_path, [GEMMA]) as pane:
        pane.spawn(pane.open_thread(12345), "Opening the thread")
        await wait_for(lambda: bool(pane.said))  # type: ignore[attr-defined]
        assert pane.said == ["Opening the thread failed: 12345"]  # type: ignore[attr-defined]
    assert pane.spawn(pane.refresh_threads(), "Listing the threads") is None
