"""Chat threads on several servers: a thread remembers its server, sends every turn there and
picks from that server's models; a fresh thread may move, one with turns may not; a thread whose
server lmgui no longer watches says so and sends nothing. Two real simulators on loopback ports,
the pane over real clients, on the qasync loop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from lmgui.api import LMStudioClient
from lmgui.api.records import Model
from lmgui.api.urls import check_base_url
from lmgui.core.chat_store import AsyncChatStore, TurnRecord
from lmgui.qtmodels.model_picker import picker_entries
from lmgui.sim import Simulator
from lmgui.sim.catalog import REMOTE_CATALOG
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.chat_settings import FIXED_TIP, MOVABLE_TIP
from lmgui.ui.chat_threads import SERVER_ROLE
from tests.conftest import SimFactory
from tests.gui.conftest import wait_for


class Watched:
    """What the window would give the pane: the servers lmgui watches (each a real client),
    their models as last polled, the selected row's server, and what the chat used."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.clients: dict[str, LMStudioClient] = {}
        self.models: dict[str, list[Model]] = {}
        self.current = ""
        self.used: list[tuple[str, str]] = []

    async def add(self, sim: Simulator, label: str) -> str:
        url = check_base_url(sim.url)
        self.labels[url] = label
        self.clients[url] = LMStudioClient(url, lms=None)
        await self.poll(url)
        return url

    async def poll(self, url: str) -> None:
        self.models[url] = await self.clients[url].list_models()

    async def remove(self, url: str) -> None:
        """The user switched the server off in Settings."""
        del self.labels[url]
        await self.clients.pop(url).aclose()

    def servers(self) -> list[tuple[str, str]]:
        return list(self.labels.items())

    def client_for(self, url: str) -> LMStudioClient | None:
        return self.clients.get(url)

    def models_for(self, url: str) -> list[Model]:
        return self.models.get(url, []) if url in self.labels else []

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


@contextlib.asynccontextmanager
async def two_servers(
    qtbot: QtBot, tmp_path: Path, a: Simulator, b: Simulator
) -> AsyncIterator[tuple[ChatPane, Watched, str, str]]:
    watched = Watched()
    url_a = await watched.add(a, "Desk")
    url_b = await watched.add(b, "Lab box")
    watched.current = url_a
    store = AsyncChatStore(tmp_path / "chats.sqlite3")
    pane = ChatPane(
        store,
        watched.client_for,
        watched.servers,
        watched.models_for,
        current_server=lambda: watched.current,
        on_used=lambda url, instance_id: watched.used.append((url, instance_id)),
    )
    qtbot.addWidget(pane)
    pane.resize(900, 500)
    pane.show()
    said: list[str] = []
    pane.status.connect(said.append)
    pane.said = said  # type: ignore[attr-defined]
    try:
        yield pane, watched, url_a, url_b
    finally:
        await pane.aclose()
        await store.aclose()
        await watched.aclose()


def chat_bodies(sim: Simulator) -> list[dict[str, object]]:
    return [r.body for r in sim.received("POST", "/api/v1/chat")]


def picker_names(pane: ChatPane) -> list[str]:
    box = pane.settings_bar.model_box
    return [str(box.itemData(i)) for i in range(box.count())]


def names(models: list[Model]) -> list[str]:
    return [e.name for e in picker_entries(models)]


async def say(qtbot: QtBot, pane: ChatPane, text: str) -> TurnRecord:
    pane.composer.input.setPlainText(text)
    qtbot.keyClick(pane.composer.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert pane.session is not None and pane.session.busy
    await wait_for(lambda: pane.session is not None and not pane.session.busy)
    await pane.settle()
    return (await pane.session.branch())[-1]


async def choose_thread(qtbot: QtBot, pane: ChatPane, title: str) -> None:
    """Click the thread in the list, and wait until it is open."""
    threads = pane.threads.thread_list
    [item] = [threads.item(i) for i in range(threads.count()) if threads.item(i).text() == title]
    rect = threads.visualItemRect(item)
    qtbot.mouseClick(threads.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    await wait_for(lambda: pane.session is not None and pane.session.record.title == title)
    await pane.settle()


def thread_labels(pane: ChatPane) -> dict[str, object]:
    threads = pane.threads.thread_list
    return {
        threads.item(i).text(): threads.item(i).data(SERVER_ROLE) for i in range(threads.count())
    }


async def test_a_thread_made_on_b_talks_to_b_even_after_another_server_is_selected(
    qtbot: QtBot, make_sim: SimFactory, tmp_path: Path
) -> None:
    sim_a, sim_b = make_sim(), make_sim(catalog=REMOTE_CATALOG)
    async with two_servers(qtbot, tmp_path, sim_a, sim_b) as (pane, watched, url_a, url_b):
        watched.current = url_b  # the user selected a row of the lab box
        task = pane.chat_with()
        assert task is not None
        record = await task
        assert record.server == url_b and record.model == "qwen/qwen3-8b"  # B's first LLM
        # The picker lists the lab box's models, not the desk's.
        assert picker_names(pane) == names(watched.models[url_b])
        assert set(picker_names(pane)).isdisjoint(names(watched.models[url_a]))
        box = pane.settings_bar.server_box
        assert box.isVisible() and box.accessibleName() == "Server"
        assert box.currentText() == "Lab box" and box.isEnabled()
        assert box.toolTip() == MOVABLE_TIP

        first = await say(qtbot, pane, "hello lab")
        assert first.status == "complete" and first.text.startswith("Turn 1.")
        assert [b["input"] for b in chat_bodies(sim_b)] == ["hello lab"]
        assert chat_bodies(sim_a) == []
        assert watched.used and {url for url, _ in watched.used} == {url_b}
        # Its answers live on B now: the server is fixed, and says why.
        assert not box.isEnabled() and box.toolTip() == FIXED_TIP

        # The user selects a desk row and starts another thread: that one is on A.
        watched.current = url_a
        qtbot.mouseClick(pane.threads.new_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: pane.session is not None and pane.session.record.id != record.id)
        await pane.settle()
        assert pane.session is not None and pane.session.record.server == url_a
        assert picker_names(pane) == names(watched.models[url_a])
        assert box.currentText() == "Desk"
        await say(qtbot, pane, "hello desk")
        assert len(chat_bodies(sim_a)) == 1
        assert thread_labels(pane) == {"hello desk": "Desk", "hello lab": "Lab box"}

        # Reopened while the desk is selected, the lab thread still talks to the lab box.
        await choose_thread(qtbot, pane, "hello lab")
        assert box.currentText() == "Lab box" and not box.isEnabled()
        await watched.poll(url_b)  # the turn JIT-loaded a model there
        pane.models_changed(url_b)
        await wait_for(lambda: picker_names(pane) == names(watched.models[url_b]))
        second = await say(qtbot, pane, "still there?")
        assert second.status == "complete" and second.text.startswith("Turn 2.")
        bodies = chat_bodies(sim_b)
        assert len(bodies) == 2 and bodies[1]["previous_response_id"] == first.response_id
        assert len(chat_bodies(sim_a)) == 1  # nothing more went to the desk


async def test_a_fresh_thread_moves_to_another_server_and_talks_there(
    qtbot: QtBot, make_sim: SimFactory, tmp_path: Path
) -> None:
    sim_a, sim_b = make_sim(), make_sim(catalog=REMOTE_CATALOG)
    async with two_servers(qtbot, tmp_path, sim_a, sim_b) as (pane, watched, url_a, url_b):
        watched.current = url_b
        task = pane.chat_with()
        assert task is not None
        record = await task
        box = pane.settings_bar.server_box
        assert box.isEnabled()
        # The user picks the desk in the Server combo (from the keyboard: Up from the lab box).
        box.setFocus()
        qtbot.keyClick(box, Qt.Key.Key_Up)
        await wait_for(lambda: pane.session is not None and pane.session.record.server == url_a)
        await pane.settle()
        stored = await pane.store.thread(record.id)
        assert stored.server == url_a
        # B's model is not on A: the desk's first LLM is picked, and the picker lists A's.
        assert stored.model == pane.settings_bar.current_model()
        assert stored.model in names(watched.models[url_a])
        assert picker_names(pane) == names(watched.models[url_a])
        assert box.currentText() == "Desk" and box.isEnabled()
        turn = await say(qtbot, pane, "on the desk after all")
        assert turn.status == "complete"
        assert len(chat_bodies(sim_a)) == 1 and chat_bodies(sim_b) == []
        assert chat_bodies(sim_a)[0]["model"] == stored.model
        assert thread_labels(pane) == {"on the desk after all": "Desk"}
        assert not box.isEnabled()


async def test_a_thread_whose_server_was_removed_says_so_and_sends_nothing(
    qtbot: QtBot, make_sim: SimFactory, tmp_path: Path
) -> None:
    sim_a, sim_b = make_sim(), make_sim(catalog=REMOTE_CATALOG)
    async with two_servers(qtbot, tmp_path, sim_a, sim_b) as (pane, watched, _, url_b):
        task = pane.chat_with(server=url_b)
        assert task is not None
        record = await task
        await say(qtbot, pane, "before it went away")
        await watched.remove(url_b)  # switched off in Settings
        pane.servers_changed()
        await pane.settle()
        assert thread_labels(pane) == {"before it went away": f"{url_b}  (not watched now)"}
        box = pane.settings_bar.server_box
        assert [box.itemText(i) for i in range(box.count())] == [
            "Desk",
            f"{url_b}  (not watched now)",
        ]
        assert box.currentData() == url_b and not box.isEnabled()

        pane.composer.input.setPlainText("are you there?")
        qtbot.keyClick(pane.composer.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        await pane.settle()
        assert pane.said == [  # type: ignore[attr-defined]
            f"This thread's server, {url_b}, is not among the servers lmgui watches: turn it on "
            "in Settings."
        ]
        assert pane.composer.input.toPlainText() == "are you there?"  # kept, to send later
        assert pane.session is not None and not pane.session.busy
        assert len(await pane.store.turns(record.id)) == 1  # no turn was added
        assert len(chat_bodies(sim_b)) == 1 and chat_bodies(sim_a) == []


async def test_with_one_server_there_is_no_server_combo_and_no_labels(
    qtbot: QtBot, make_sim: SimFactory, tmp_path: Path
) -> None:
    sim_a, sim_b = make_sim(), make_sim(catalog=REMOTE_CATALOG)
    async with two_servers(qtbot, tmp_path, sim_a, sim_b) as (pane, watched, _, url_b):
        await watched.remove(url_b)
        pane.servers_changed()
        task = pane.chat_with()
        assert task is not None
        await task
        await say(qtbot, pane, "just the desk")
        assert not pane.settings_bar.server_box.isVisible()
        assert thread_labels(pane) == {"just the desk": None}
        assert pane.threads.thread_list.item(0).text() == "just the desk"
