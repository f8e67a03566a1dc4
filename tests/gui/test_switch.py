"""Switching servers replaces the connection as a whole: what was in flight on the old one ends
with a sentence, the old client is closed, and nothing of the old server shows afterwards."""

from __future__ import annotations

import asyncio

from pytestqt.qtbot import QtBot

from lmgui.core.actions import LoadRequest
from lmgui.core.paths import AppPaths
from lmgui.core.settings import SettingsValues
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for


async def test_a_load_in_flight_ends_with_a_sentence_when_the_server_changes(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    slow, other = make_sim(load_seconds_per_gb=50.0), make_sim(catalog=[])
    async with running(qtbot, paths, slow.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        failed: list[str] = []
        app.actions.load_failed.connect(lambda req, msg: failed.append(msg))
        load = app.actions.load(LoadRequest("qwen/qwen3-4b"))
        await wait_for(lambda: bool(slow.received("POST", "/api/v1/models/load")))
        old = app.conn
        app.apply_settings(SettingsValues(other.url, None, 100, 0.0, True))
        await wait_for(lambda: app.conn is not old and app.tree.rowCount() == 0)
        await wait_for(lambda: load.done())
        assert failed == [
            "lmgui stopped following the load of qwen/qwen3-4b: lmgui no longer watches "
            f"{slow.url}; that server may still finish it."
        ]
        assert app.window.server_label.text() == other.url
        await wait_for(lambda: app.poller.polls >= 1)
        assert app.tree.rowCount() == 0, "nothing of the old server shows"
        assert not old.poller.running and not old.poller.in_flight


async def test_two_switches_in_a_row_end_on_the_second(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    first, second, third = make_sim(), make_sim(catalog=[]), make_sim()
    async with running(qtbot, paths, first.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        a = app.switch_server(second.url)
        b = app.switch_server(third.url)
        await wait_for(lambda: a.done() and b.done())
        assert app.server_url == third.url
        await wait_for(lambda: app.tree.rowCount() == 15)
        assert not a.exception() and not b.exception()


async def test_unloading_an_answering_instance_from_the_tray_asks_first(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    from PySide6.QtWidgets import QMessageBox

    from lmgui.api import LMStudioClient

    sim = make_sim(tokens_per_second=20.0)
    async with running(qtbot, paths, sim.url) as app:
        await app.actions.load(LoadRequest("google/gemma-3-270m", ttl_seconds=600))
        async with LMStudioClient(sim.url, lms=None, sdk=False) as other:

            async def answer() -> None:  # another app chatting with the instance
                await other.chat_stream("google/gemma-3-270m", "a long story, please").collect()

            # Ended as Stop ends a stream: by cancelling its task (toolchain.md, qasync traps).
            chatting = asyncio.ensure_future(answer())
            try:
                await wait_for(
                    lambda: any(i.busy for _, i in app.poller.snapshot.instances), within=10
                )
                box = app._on_tray_unload_requested(app.server_url, ["google/gemma-3-270m"])
                assert isinstance(box, QMessageBox)
                assert box.text() == (
                    "google/gemma-3-270m is generating an answer; unload it anyway?"
                )
                assert not sim.received("POST", "/api/v1/models/unload"), "nothing unloaded yet"
                box.button(QMessageBox.StandardButton.Yes).click()
                await wait_for(lambda: bool(sim.received("POST", "/api/v1/models/unload")))
            finally:
                chatting.cancel()
                await asyncio.gather(chatting, return_exceptions=True)
