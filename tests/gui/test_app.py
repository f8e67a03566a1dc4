"""The whole app against the simulator: what a user sees and does in the main window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QKeySequence
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from lmgui.api import LMStudioClient
from lmgui.app import LmguiApp
from lmgui.core.actions import LoadRequest
from lmgui.core.paths import AppPaths
from lmgui.core.poller import ConnectionState
from lmgui.core.settings import SettingsValues
from lmgui.qtmodels.model_tree import Column
from lmgui.sim import SimConfig, Simulator
from lmgui.ui.load_dialog import LoadDialog
from lmgui.ui.unload_dialog import UnloadDialog
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for


def instance_rows(app: LmguiApp, key: str) -> list[str]:
    parent = app.tree.model_index(key)
    return [app.tree.index(r, 0, parent).data() for r in range(app.tree.rowCount(parent))]


def cell(app: LmguiApp, instance_id: str, col: Column) -> str:
    idx = app.tree.instance_index(instance_id)
    return str(app.tree.index(idx.row(), col, idx.parent()).data())


async def test_the_window_lists_the_servers_models(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        w = app.window
        assert w.state_label.text() == "Connected"
        assert w.server_label.text() == sim.url
        assert w.age_label.text().startswith("refreshed")
        assert "estimated" in w.vram_bar.format()


async def test_load_through_the_dialog_then_unload(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim(load_seconds_per_gb=0.4)  # 1 s: long enough to see "loading"
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        dialog = app.window.open_load_dialog("qwen/qwen3-4b")
        assert isinstance(dialog, LoadDialog)
        dialog.context.setValue(8192)
        dialog.flash.setCurrentIndex(dialog.flash.findData(False))
        results: list[int] = []
        dialog.finished.connect(results.append)
        qtbot.mouseClick(dialog.load_button, Qt.MouseButton.LeftButton)

        # Progress in the dialog and in the row while the server is loading.
        await wait_for(lambda: instance_rows(app, "qwen/qwen3-4b") == ["qwen/qwen3-4b"])
        assert dialog.progress.isVisible() and "Loading qwen/qwen3-4b" in dialog.status.text()
        row = app.tree.model_index("qwen/qwen3-4b").row()
        assert app.tree.index(row, Column.STATE).data().startswith("loading")

        await wait_for(lambda: results == [1])  # it closes itself (accepted) once loaded
        await wait_for(lambda: app.tree.index(row, Column.STATE).data() == "loaded")
        assert cell(app, "qwen/qwen3-4b", Column.CONTEXT) == "8k"
        assert cell(app, "qwen/qwen3-4b", Column.FLASH) == "no"
        assert cell(app, "qwen/qwen3-4b", Column.STATE) == "loaded"  # not marked: lmgui did it
        body = sim.received("POST", "/api/v1/models/load")[-1].body
        assert body["context_length"] == 8192 and body["flash_attention"] is False
        assert app.settings.load_defaults()["qwen/qwen3-4b"].context_length == 8192

        app.window.select_instance("qwen/qwen3-4b")
        unload = app.window.open_unload_dialog()
        assert isinstance(unload, UnloadDialog)
        assert unload.selected() == ["qwen/qwen3-4b"]
        qtbot.mouseClick(unload.unload_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: instance_rows(app, "qwen/qwen3-4b") == [])
        await wait_for(lambda: app.window.statusBar().currentMessage() == "Unloaded qwen/qwen3-4b.")


async def test_a_failed_load_shows_the_servers_message(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim(vram_gb=8)
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        dialog = app.window.open_load_dialog("meta/llama-3.3-70b-instruct")
        assert dialog is not None
        qtbot.mouseClick(dialog.load_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: "insufficient system resources" in dialog.status.text())
        assert dialog.isVisible() and not dialog.progress.isVisible()
        assert dialog.load_button.isEnabled()  # try again with other settings


async def test_a_second_load_warns_and_defaults_to_the_loaded_one(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await app.actions.load(LoadRequest("google/gemma-3-270m"))
        await wait_for(lambda: instance_rows(app, "google/gemma-3-270m") == ["google/gemma-3-270m"])
        dialog = app.window.open_load_dialog("google/gemma-3-270m")
        assert dialog is not None
        assert dialog.loaded_box.isVisible() and dialog.use_existing.isChecked()
        assert "google/gemma-3-270m:2" in dialog.loaded_note.text()
        assert dialog.load_button.text() == "&Use loaded"
        qtbot.mouseClick(dialog.load_button, Qt.MouseButton.LeftButton)
        current = app.window.view.currentIndex()
        assert current.data() == "google/gemma-3-270m"  # selected the loaded instance
        assert len(sim.received("POST", "/api/v1/models/load")) == 1  # and loaded nothing


async def test_ttl_the_server_ignores_is_enforced_by_lmgui(
    qtbot: QtBot, rest_sim: Simulator, paths: AppPaths
) -> None:
    sim = rest_sim  # the REST path: no SDK channel
    async with running(qtbot, paths, sim.url) as app:
        expired: list[str] = []
        app.actions.ttl_expired.connect(lambda iid, _url: expired.append(iid))
        result = await app.actions.load(LoadRequest("google/gemma-3-270m", ttl_seconds=600))
        assert result is not None and result.not_applied == ("ttl",)
        await wait_for(lambda: cell(app, "google/gemma-3-270m", Column.TTL).endswith("(lmgui)"))
        assert cell(app, "google/gemma-3-270m", Column.TTL).startswith(("9:", "10:"))
        ledger = json.loads(
            (
                paths.state_dir
                / next(p.name for p in paths.state_dir.iterdir() if p.name.startswith("instances-"))
            ).read_text()
        )
        assert ledger["google/gemma-3-270m"]["enforced"] is True

        # Idle past its TTL: lmgui unloads it.
        entry = app.ledger.entries["google/gemma-3-270m"]
        app.ledger.entries["google/gemma-3-270m"] = type(entry)(
            **{**entry.__dict__, "last_used": entry.last_used - 601}
        )
        await wait_for(lambda: instance_rows(app, "google/gemma-3-270m") == [])
        assert expired == ["google/gemma-3-270m"]


async def test_instances_loaded_elsewhere_are_marked(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        async with LMStudioClient(sim.url, lms=None) as other:
            await other.load("google/gemma-3-270m")
            await wait_for(lambda: bool(instance_rows(app, "google/gemma-3-270m")))
            assert cell(app, "google/gemma-3-270m", Column.STATE).startswith("appeared")
            await other.unload("google/gemma-3-270m")
        await wait_for(lambda: cell(app, "google/gemma-3-270m", Column.STATE).startswith("gone"))


async def test_hidden_in_the_tray_polls_ask_the_list_only_when_something_moves(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    def lists_asked() -> int:
        return len(sim.received("GET", "/api/v1/models"))

    sim.state.finish_load(sim.state.begin_load("google/gemma-3-270m", {}).id)
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: bool(instance_rows(app, "google/gemma-3-270m")))
        app.window.hide()
        polls = app.poller.polls
        await wait_for(lambda: app.poller.polls >= polls + 2)  # one may have started shown
        asked, polls = lists_asked(), app.poller.polls
        await wait_for(lambda: app.poller.polls >= polls + 3)
        assert lists_asked() == asked, "the SDK channel's truth alone"
        # Another client loads a model: the list is asked again and its row appears.
        async with LMStudioClient(sim.url, lms=None) as other:
            await other.load("qwen/qwen3-4b")
        await wait_for(lambda: bool(instance_rows(app, "qwen/qwen3-4b")))
        assert lists_asked() > asked
        # The tray's Refresh asks everything.
        asked = lists_asked()
        app.tray.refresh_requested.emit()
        await wait_for(lambda: lists_asked() > asked)
        # Shown again: every poll asks for the list.
        app.window.show()
        polls = app.poller.polls
        await wait_for(lambda: app.poller.polls >= polls + 2)
        asked, polls = lists_asked(), app.poller.polls
        await wait_for(lambda: app.poller.polls >= polls + 3)
        assert lists_asked() >= asked + 3


async def test_server_down_then_up(qtbot: QtBot, make_sim: SimFactory, paths: AppPaths) -> None:
    sim = make_sim()
    port = sim.port
    async with running(qtbot, paths, sim.url) as app:
        await app.actions.load(LoadRequest("google/gemma-3-270m"))
        await wait_for(lambda: bool(instance_rows(app, "google/gemma-3-270m")))
        sim.stop()
        await wait_for(lambda: app.poller.status.state is ConnectionState.UNREACHABLE)
        assert app.window.state_label.text().startswith("Unreachable since ")
        assert app.tree.dimmed
        assert instance_rows(app, "google/gemma-3-270m") == ["google/gemma-3-270m"]  # still shown
        assert app.poller.next_delay_ms() > app.poller.interval_ms  # backing off

        back = Simulator(SimConfig(port=port, tokens_per_second=0, load_seconds_per_gb=0)).start()
        try:
            await wait_for(lambda: app.poller.status.state is ConnectionState.CONNECTED)
            await wait_for(lambda: not app.tree.dimmed)
            assert app.window.state_label.text() == "Connected"
            # A restarted server has forgotten the instance: the row goes (marked, not by lmgui).
            await wait_for(
                lambda: (
                    cell(app, "google/gemma-3-270m", Column.STATE).startswith("gone")
                    if instance_rows(app, "google/gemma-3-270m")
                    else True
                )
            )
        finally:
            back.stop()


async def test_a_401_then_a_token(qtbot: QtBot, make_sim: SimFactory, paths: AppPaths) -> None:
    sim = make_sim(token="sk-lm-gui:secret")
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.poller.status.state is ConnectionState.TOKEN_NEEDED)
        assert app.window.state_label.text() == "Token needed"
        assert "LM_API_TOKEN" in app.window.state_label.toolTip()
        dialog = app.open_settings()
        dialog.token.setText("sk-lm-gui:secret")
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        await wait_for(lambda: app.poller.status.state is ConnectionState.CONNECTED)
        assert app.tree.rowCount() == 15
        # No keyring on this machine: the token is kept for the session and the user is told.
        assert app.tokens.problem is not None and "session only" in app.tokens.problem
        assert app.window.statusBar().currentMessage() == app.tokens.problem
        assert "secret" not in app.window.statusBar().currentMessage()


async def test_settings_apply_without_a_restart(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    first, second = make_sim(), make_sim(catalog=[])
    async with running(qtbot, paths, first.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        app.apply_settings(SettingsValues(second.url, None, 1500, 24.0, False))
        await wait_for(lambda: app.tree.rowCount() == 0 and app.poller.polls > 1)
        assert app.window.server_label.text() == second.url
        assert app.settings.poll_interval_ms == 1500 and app.settings.vram_budget_gb == 24.0
        assert app.window.vram_bar.format().endswith("of 24.0 GB")
        assert app.settings.server_url == second.url


async def test_layout_filter_and_sort_are_restored(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        app.window.filter_box.setText("qwen")
        app.window.toggles["llm"].setChecked(True)
        app.window.view.sortByColumn(Column.SIZE, Qt.SortOrder.AscendingOrder)
        app.window.resize(640, 480)  # within the offscreen screen (800 x 600)
        app.window.close()
    async with running(qtbot, paths, sim.url) as again:
        w = again.window
        assert w.filter_box.text() == "qwen" and w.toggles["llm"].isChecked()
        assert w.view.header().sortIndicatorSection() == Column.SIZE
        assert (w.width(), w.height()) == (640, 480)
        await wait_for(lambda: again.tree.rowCount() == 15)
        shown = [w.proxy.index(r, 0).data() for r in range(w.proxy.rowCount())]
        assert sorted(shown) == ["Qwen2.5 VL 7B Instruct", "Qwen3 4B", "Qwen3.5 9B"]


async def test_selection_survives_polls_in_the_window(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await app.actions.load(LoadRequest("google/gemma-3-270m"))
        await wait_for(lambda: bool(instance_rows(app, "google/gemma-3-270m")))
        app.window.select_instance("google/gemma-3-270m")
        polls = app.poller.polls
        async with LMStudioClient(sim.url, lms=None) as other:
            await other.load("qwen/qwen3-4b")  # something else changes meanwhile
        await wait_for(lambda: app.poller.polls >= polls + 3)
        assert app.window.view.currentIndex().data() == "google/gemma-3-270m"
        assert app.window.details.toPlainText().startswith("instance: google/gemma-3-270m")


def test_shortcuts_and_accessible_names(qtbot: QtBot, tmp_path: Path, qapp: object) -> None:
    from lmgui.core.settings import Settings

    expected = {
        "refresh_action": "F5",
        "load_action": "Ctrl+L",
        "unload_action": "Del",
        "settings_action": "Ctrl+,",
        "quit_action": "Ctrl+Q",
    }
    paths = AppPaths.under(tmp_path)
    app = LmguiApp(paths, server="http://127.0.0.1:9")
    qtbot.addWidget(app.window)
    for name, keys in expected.items():
        action = getattr(app.window, name)
        shortcuts = [s.toString() for s in action.shortcuts()]
        assert keys in shortcuts, (name, shortcuts)
        assert action.toolTip()
    assert QKeySequence(QKeySequence.StandardKey.Find).toString() == "Ctrl+F"
    for widget in (app.window.view, app.window.filter_box, app.window.vram_bar, app.window.details):
        assert widget.accessibleName()
    assert isinstance(app.settings, Settings)


def test_screenshot_of_the_demo(tmp_path: Path) -> None:
    shot = tmp_path / "window.png"
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    p = subprocess.run(
        [sys.executable, "-m", "lmgui", "--demo", "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    image = QImage(str(shot))
    assert image.width() >= 800 and image.height() >= 400


async def test_unreachable_server_at_start(qtbot: QtBot, paths: AppPaths) -> None:
    async with running(qtbot, paths, "http://127.0.0.1:9") as app:
        await wait_for(lambda: app.poller.status.state is ConnectionState.UNREACHABLE)
        assert "Cannot connect" in app.window.state_label.toolTip()
        assert app.tree.rowCount() == 0


async def test_loaded_models_are_expanded_from_the_start(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with LMStudioClient(sim.url, lms=None) as other:
        await other.load("google/gemma-3-270m")
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        w = app.window
        shown = w.proxy.mapFromSource(app.tree.model_index("google/gemma-3-270m"))
        assert w.view.isExpanded(shown)
        assert cell(app, "google/gemma-3-270m", Column.STATE) == "loaded"  # baseline: no mark


def test_unexpected_errors_are_logged_and_reported_once(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from PySide6.QtWidgets import QMessageBox

    from lmgui.app import install_excepthook

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "open", lambda self: shown.append(self.text()))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    install_excepthook(tmp_path / "lmgui.log")
    for _ in range(2):
        try:
            raise ValueError("boom")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    assert len(shown) == 1 and "ValueError: boom" in shown[0] and "lmgui.log" in shown[0]
    assert caplog.text.count("Traceback") == 2  # every one is logged


def test_nvml_absent_means_estimates_only() -> None:
    from lmgui.core.gpu import NvmlReader

    reader = NvmlReader()  # nvidia-ml-py is not installed here, and there is no GPU
    assert not reader.available and reader.read() is None


async def test_an_enforced_ttl_survives_a_restart_of_lmgui(
    qtbot: QtBot, rest_sim: Simulator, paths: AppPaths
) -> None:
    sim = rest_sim  # the REST path: no SDK channel
    async with running(qtbot, paths, sim.url) as app:
        await app.actions.load(LoadRequest("google/gemma-3-270m", ttl_seconds=900))
        await wait_for(lambda: cell(app, "google/gemma-3-270m", Column.TTL).endswith("(lmgui)"))
    async with running(qtbot, paths, sim.url) as again:
        entry = again.ledger.entries["google/gemma-3-270m"]
        assert entry.enforced and entry.ttl_seconds == 900
        await wait_for(lambda: cell(again, "google/gemma-3-270m", Column.TTL).endswith("(lmgui)"))


async def test_an_instance_that_stays_after_unloading_is_reported(
    qtbot: QtBot, sim: Simulator, paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await app.actions.load(LoadRequest("google/gemma-3-270m"))
        await wait_for(lambda: bool(instance_rows(app, "google/gemma-3-270m")))
        monkeypatch.setattr(sim.state, "unload", lambda instance_id: None)  # the server keeps it
        failures: list[str] = []
        app.actions.unload_failed.connect(lambda iid, msg: failures.append(msg))
        await app.actions.unload(["google/gemma-3-270m"])
        assert failures == [
            "google/gemma-3-270m is still loaded after unloading it; the server kept it."
        ]
        assert app.window.statusBar().currentMessage() == failures[0]
        assert instance_rows(app, "google/gemma-3-270m") == ["google/gemma-3-270m"]


def test_a_failed_start_is_one_sentence(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "data" / "lmgui" / "chats.sqlite3"
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA user_version=99")  # written by a newer lmgui
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmgui",
            "--server",
            "http://127.0.0.1:9",
            "--screenshot",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert p.returncode == 1
    lines = [line for line in p.stderr.splitlines() if "propagateSizeHints" not in line]
    assert lines == [
        "lmgui could not start: The chat history was written by a newer lmgui (schema 99); "
        f"this one reads up to 1 (details in {tmp_path / 'state' / 'lmgui' / 'log' / 'lmgui.log'})."
    ]
