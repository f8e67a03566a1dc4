"""Free the GPU and get it back, as a user does it from the tray and the window's Snapshots menu:
three instances loaded by three apps go, the VRAM drops to nothing, Restore brings them back with
their identifiers and contexts; a busy instance is asked about; pinned ones stay."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMenu, QMessageBox
from pytestqt.qtbot import QtBot

from lmgui.api import LMStudioClient
from lmgui.core.paths import AppPaths
from lmgui.core.requests import LoadRequest
from lmgui.core.saved_sets import FREEING
from lmgui.qtmodels.model_tree import Column
from lmgui.sim import Simulator
from lmgui.ui.load_dialog import LoadDialog
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for


def held(sim: Simulator) -> dict[str, tuple[str, object]]:
    with sim.state.lock:
        return {
            i: (inst.model_key, inst.config.get("context_length"))
            for i, inst in sim.state.instances.items()
        }


async def test_free_the_gpu_from_the_tray_then_restore(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with (
        LMStudioClient(sim.url, lms=None) as ide,
        LMStudioClient(sim.url, lms=None, sdk=False) as script,
    ):
        await ide.load("qwen/qwen3-4b", identifier="coder", context_length=16384)
        await script.load("google/gemma-3-270m", context_length=8192)
        await script.load("text-embedding-nomic-embed-text-v1.5")
    before = held(sim)
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: len(app.tray_state().servers[0].instances) == 3)
        assert app.tray_state().servers[0].vram_bytes > 0
        app.tray.free_requested.emit(app.server_url)  # the tray's "Free the GPU (restore later)"
        await wait_for(lambda: not held(sim) and not app.tray_state().servers[0].instances)
        state = app.tray_state().servers[0]
        assert state.vram_bytes == 0 and state.restorable == 3
        assert app.window.vram.bar.value() == 0
        await wait_for(lambda: "saved them as" in app.window.statusBar().currentMessage())
        assert app.snapshot_menu.restore_action.isEnabled()

        app.tray.restore_requested.emit(app.server_url)  # the tray's "Restore 3 instance(s) ..."
        await wait_for(lambda: held(sim) == before)
        await wait_for(lambda: app.tray_state().servers[0].restorable is None)
        assert app.window.statusBar().currentMessage().startswith(f'Restored "{FREEING}"')
        assert not app.snapshot_menu.restore_action.isEnabled()  # used: no longer offered


async def test_a_busy_instance_is_asked_about_and_a_pinned_one_stays(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with LMStudioClient(sim.url, lms=None) as other:
        await other.load("qwen/qwen3-4b", identifier="answering")
        await other.load("google/gemma-3-270m", identifier="keep-me")
        await other.load("google/gemma-3-270m", identifier="spare")
    with sim.state.lock:
        sim.state.instances["answering"].generating += 1  # another app's answer in progress
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(
            lambda: (
                any(i.busy for i in app.tray_state().servers[0].instances)
                and len(app.tray_state().servers[0].instances) == 3
            )
        )
        app.tray.pin_toggled.emit(app.server_url, "keep-me", True)  # the tray's "Pinned" check
        pinned = {i.instance_id for i in app.tray_state().servers[0].instances if i.pinned}
        assert pinned == {"keep-me"}
        box = app.free_gpu()
        assert isinstance(box, QMessageBox)
        assert box.text() == "answering is generating an answer; unload it anyway?"
        box.done(QMessageBox.StandardButton.No)
        await wait_for(lambda: not app.snapshots.working)
        assert set(held(sim)) == {"answering", "keep-me", "spare"}  # No: nothing touched

        box = app.free_gpu()
        assert isinstance(box, QMessageBox)
        box.done(QMessageBox.StandardButton.Yes)
        await wait_for(lambda: set(held(sim)) == {"keep-me"})
        saved = app.snapshots.restorable()
        assert saved is not None
        assert {i.identifier for i in saved.instances} == {"answering", "spare"}


async def test_named_snapshots_from_the_window_menu(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        app.actions.load(LoadRequest("google/gemma-3-270m", context_length=4096))
        await wait_for(lambda: len(app.tray_state().servers[0].instances) == 1)
        menu = app.snapshot_menu
        assert menu in [a.menu() for a in app.window.menuBar().actions()]
        menu._save("evening")
        assert app.window.statusBar().currentMessage() == 'Saved 1 instance(s) as "evening".'
        menu.rebuild()
        (restore,) = [
            m
            for m in menu.findChildren(QMenu)
            if m.title() == "Restore &snapshot" and m.menuAction() in menu.actions()
        ]
        assert [a.text() for a in restore.actions()] == ["evening"]
        menu._save("   ")
        assert app.window.statusBar().currentMessage() == "Give the snapshot a name."


async def test_the_load_dialog_makes_room_by_unloading_the_least_recently_used_idle_instances(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim(vram_gb=11.0)  # three 2.8 GB instances fit, a 7 GB one does not
    async with LMStudioClient(sim.url, lms=None) as other:
        for ident in ("first", "second", "third"):
            await other.load("qwen/qwen3-4b", identifier=ident, context_length=4096)
        await other.chat("first", "hello", store=False)  # "second" is now the least recent
    with sim.state.lock:
        sim.state.instances["third"].generating += 1  # busy: never proposed
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.conn.hardware is not None)
        await wait_for(lambda: len(app.tray_state().servers[0].instances) == 3)
        dialog = app.window.open_load_dialog("qwen/qwen3.5-9b")
        assert isinstance(dialog, LoadDialog)
        dialog.context.setValue(4096)
        await wait_for(lambda: dialog.make_room_button.isVisibleTo(dialog))
        offer = dialog.room.text()
        assert offer.startswith("To make room, unload second (") and "third" not in offer
        qtbot.mouseClick(dialog.make_room_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: "qwen/qwen3.5-9b" in held(sim))
        assert "second" not in held(sim) and "third" in held(sim)


async def test_pinning_from_the_table_marks_the_row_and_survives_freeing(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with LMStudioClient(sim.url, lms=None) as other:
        await other.load("qwen/qwen3-4b", identifier="coder")
        await other.load("google/gemma-3-270m")
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.instance_index("coder").isValid())
        w = app.window
        w.select_instance("coder")
        pin = w.commands.pin_action
        assert pin.isEnabled() and not pin.isChecked()
        pin.trigger()  # the table's context menu: "Pinned (kept when freeing the GPU)"
        state = app.tree.instance_index("coder").siblingAtColumn(Column.STATE)
        assert state.data() == "loaded, pinned"
        assert app.snapshots.pinned() == {"coder"}
        w.select_instance("google/gemma-3-270m")
        assert not pin.isChecked()
        assert app.free_gpu() is None  # nobody busy: no question
        await wait_for(lambda: set(held(sim)) == {"coder"})
        w.select_instance("coder")
        assert pin.isChecked()
        pin.trigger()
        assert app.snapshots.pinned() == set()
        assert app.tree.instance_index("coder").siblingAtColumn(Column.STATE).data() == "loaded"
