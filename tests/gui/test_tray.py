"""The tray's logic offscreen: the menu from a given state, its actions, the fallback when no tray
exists, notifications once per event, background polling, autostart entries, settings."""

from __future__ import annotations

import plistlib
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon
from pytestqt.qtbot import QtBot

from lmgui.api import LMStudioClient
from lmgui.app import LOADING_POLL_MS, LmguiApp
from lmgui.core.actions import LoadRequest
from lmgui.core.autostart import Autostart
from lmgui.core.gpu import GpuMemory
from lmgui.core.launcher import lmgui_command
from lmgui.core.notify import Notifier
from lmgui.core.paths import AppPaths
from lmgui.core.poller import ConnectionState
from lmgui.core.profiles import Profile
from lmgui.core.settings import Settings
from lmgui.sim import Simulator
from lmgui.ui.tray import (
    FleetTrayState,
    TrayController,
    TrayInstance,
    TrayState,
    fleet_icon_name,
    fleet_tooltip,
    icon_name,
    tooltip,
)
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for
from tests.tray_menu import submenus_after_many_openings
from tests.xdg import parse_exec, read_entry

STATE = TrayState(
    server="http://127.0.0.1:1234",
    connection=ConnectionState.CONNECTED,
    instances=[
        TrayInstance("qwen/qwen3-4b", "qwen/qwen3-4b", 8192, 3_300_000_000, 1800.0),
        TrayInstance("google/gemma-3-270m:2", "google/gemma-3-270m", 4096, 340_000_000),
    ],
    last_refresh=1_700_000_000.0,
    quick_loads=[("meta/llama", "★ Llama"), ("ibm/granite", "Granite")],
    url="http://127.0.0.1:1234",
    name="desk",
)
URL = STATE.url


def texts(menu: QMenu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def action(menu: QMenu, text: str) -> QAction:
    return next(a for a in menu.actions() if a.text() == text)


def test_icon_per_state() -> None:
    offline = TrayState("s", ConnectionState.UNREACHABLE)
    assert icon_name(offline) == "state-offline"
    assert icon_name(TrayState("s", ConnectionState.CONNECTED)) == "state-idle"
    assert icon_name(STATE) == "state-loaded"
    assert icon_name(TrayState("s", ConnectionState.CONNECTED, loading=True)) == "state-loading"


def test_tooltip_summarizes_the_state() -> None:
    gpus = [GpuMemory("RTX 4090", 12_000_000_000, 24_000_000_000)]
    tip = tooltip(TrayState(**{**STATE.__dict__, "gpus": gpus}))
    lines = tip.splitlines()
    assert lines[0] == "lmgui: http://127.0.0.1:1234"
    assert lines[1] == "2 instances loaded"
    assert lines[2] == "VRAM in use: about 3.6 GB (estimated)"
    assert lines[3] == "RTX 4090: 12.0 GB of 24.0 GB (measured)"
    assert lines[4].startswith("Refreshed at ")
    assert "Unreachable" in tooltip(TrayState("s", ConnectionState.UNREACHABLE))


def test_a_fleet_of_one_server_shows_that_servers_icon_and_tooltip() -> None:
    gpus = [GpuMemory("RTX 4090", 12_000_000_000, 24_000_000_000)]
    one = TrayState(**{**STATE.__dict__, "gpus": gpus})
    fleet = FleetTrayState([one])
    assert fleet_tooltip(fleet) == tooltip(one)
    assert fleet_icon_name(fleet) == icon_name(one) == "state-loaded"
    # The app-wide switches are the fleet's.
    busy = FleetTrayState([one], paused=True, loading=True)
    assert fleet_icon_name(busy) == "state-loading"
    assert fleet_tooltip(busy).splitlines()[-1] == "Polling paused"
    assert "2 instances loaded, loading…" in fleet_tooltip(busy).splitlines()


def test_menu_is_built_from_live_state_and_its_actions_emit_intents(qapp: object) -> None:
    state = {"now": FleetTrayState([STATE])}
    tray = TrayController(lambda: state["now"])
    got: dict[str, list[Any]] = {}
    for name in (
        "unload_requested",
        "chat_requested",
        "load_requested",
        "toggle_window",
        "refresh_requested",
        "pause_toggled",
        "notifications_paused_toggled",
        "quit_requested",
        "free_requested",
        "restore_requested",
        "pin_toggled",
    ):
        getattr(tray, name).connect(lambda *a, n=name: got.setdefault(n, []).append(a))
    tray.rebuild()
    menu = tray.menu
    assert texts(menu) == [
        "2 loaded · about 3.6 GB VRAM",
        "qwen/qwen3-4b  (8k ctx, 3.3 GB), unloads in 30:00",
        "google/gemma-3-270m:2  (4k ctx, 340.0 MB)",
        "Unload all",
        "Free the GPU (restore later)",
        "Load",
        "Hide window",
        "Timeline…",
        "Refresh",
        "Pause polling",
        "Pause notifications",
        "Quit lmgui",
    ]
    qwen = action(menu, "qwen/qwen3-4b  (8k ctx, 3.3 GB), unloads in 30:00").menu()
    assert isinstance(qwen, QMenu)
    assert texts(qwen) == ["Unload", "Chat", "Pinned (kept when freeing the GPU)"]
    action(qwen, "Unload").trigger()
    action(qwen, "Chat").trigger()
    action(qwen, "Pinned (kept when freeing the GPU)").trigger()
    action(menu, "Unload all").trigger()
    action(menu, "Free the GPU (restore later)").trigger()
    loads = action(menu, "Load").menu()
    assert isinstance(loads, QMenu) and texts(loads) == ["★ Llama", "Granite"]
    action(loads, "★ Llama").trigger()
    for text in ("Hide window", "Refresh", "Quit lmgui"):
        action(menu, text).trigger()
    action(menu, "Pause polling").trigger()
    action(menu, "Pause notifications").trigger()
    # Each intent about the server carries its URL.
    assert got["unload_requested"] == [
        (URL, ["qwen/qwen3-4b"]),
        (URL, ["qwen/qwen3-4b", "google/gemma-3-270m:2"]),
    ]
    assert got["chat_requested"] == [(URL, "qwen/qwen3-4b")]
    assert got["load_requested"] == [(URL, "meta/llama")]
    assert (
        len(got["toggle_window"])
        == len(got["refresh_requested"])
        == len(got["quit_requested"])
        == 1
    )
    assert got["pause_toggled"] == [(True,)] and got["notifications_paused_toggled"] == [(True,)]
    assert got["pin_toggled"] == [(URL, "qwen/qwen3-4b", True)]
    assert got["free_requested"] == [(URL,)]

    # After freeing: Restore is offered, and the tooltip says what it would bring back.
    freed = TrayState(**{**STATE.__dict__, "instances": [], "restorable": 2})
    state["now"] = FleetTrayState([freed])
    tray.menu.aboutToShow.emit()
    assert "Free the GPU (restore later)" not in texts(tray.menu)
    action(tray.menu, "Restore 2 instance(s) unloaded to free the GPU").trigger()
    assert got["restore_requested"] == [(URL,)]
    assert "GPU freed: Restore brings back 2 instance(s)" in fleet_tooltip(state["now"])

    # Rebuilt from the state of the moment it opens: offline, nothing to unload or load. The
    # window and polling switches are the fleet's.
    state["now"] = FleetTrayState(
        [TrayState("s", ConnectionState.UNREACHABLE)], window_visible=False, paused=True
    )
    tray.menu.aboutToShow.emit()
    assert texts(tray.menu)[0] == "Server: Unreachable"
    assert "Unload all" not in texts(tray.menu) and "Open window" in texts(tray.menu)
    assert (
        not action(tray.menu, "Load").isEnabled() and not action(tray.menu, "Refresh").isEnabled()
    )
    assert action(tray.menu, "Pause polling").isChecked()


def test_left_click_toggles_the_window(qapp: object) -> None:
    tray = TrayController(lambda: STATE)
    clicks: list[bool] = []
    tray.toggle_window.connect(lambda: clicks.append(True))
    tray.icon.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    tray.icon.activated.emit(QSystemTrayIcon.ActivationReason.Context)  # the menu, not a toggle
    assert clicks == [True]


def test_an_instance_answering_right_now_stands_out_in_the_menu(qapp: object) -> None:
    generating = TrayInstance(
        "qwen-1",
        "qwen/qwen3-4b",
        8192,
        3_300_000_000,
        280.0,  # the server's countdown
        status="generating",
        queued=2,  # the answer in progress and one more
        busy=True,
    )
    state = TrayState(
        server="http://127.0.0.1:1234",
        connection=ConnectionState.CONNECTED,
        instances=[generating, STATE.instances[1]],
    )
    tray = TrayController(lambda: state)  # a TrayState alone is a fleet of one
    unloads: list[tuple[str, list[str]]] = []
    tray.unload_requested.connect(lambda url, ids: unloads.append((url, ids)))
    tray.rebuild()
    assert texts(tray.menu)[:3] == [
        "2 loaded · about 3.6 GB VRAM · 1 generating",
        "qwen-1  (8k ctx, 3.3 GB) ● generating (+1 queued), TTL 4:40 once idle",
        "google/gemma-3-270m:2  (4k ctx, 340.0 MB)",
    ]
    assert tooltip(state).splitlines()[1] == "2 instances loaded, 1 generating"
    # The tray has no dialog: its Unload says what the user asked, and the app, which sees
    # ``busy``, decides whether to ask first.
    sub = action(tray.menu, texts(tray.menu)[1]).menu()
    assert isinstance(sub, QMenu)
    action(sub, "Unload").trigger()
    assert unloads == [("http://127.0.0.1:1234", ["qwen-1"])] and state.instances[0].busy


def test_notifications_once_per_event_and_never_when_off_or_paused() -> None:
    now = [0.0]
    off = {"vanished"}
    notifier = Notifier(lambda kind: kind not in off, clock=lambda: now[0])
    said: list[tuple[str, str, str]] = []
    notifier.notify.connect(lambda k, t, b: said.append((k, t, b)))
    assert notifier.say("loaded", "a", "Loaded a", "ready")
    assert not notifier.say("loaded", "a", "Loaded a", "ready")  # a repeat
    assert notifier.say("loaded", "b", "Loaded b", "ready")
    assert not notifier.say("vanished", "a", "a is gone", "why")  # this kind is off
    notifier.paused = True
    assert not notifier.say("server", "offline", "Offline", "")
    notifier.paused = False
    now[0] += 120
    assert notifier.say("loaded", "a", "Loaded a", "ready")  # much later: a new event
    assert [s[1] for s in said] == ["Loaded a", "Loaded b", "Loaded a"]


@pytest.fixture
def app_paths(tmp_path: Path) -> AppPaths:
    return AppPaths.under(tmp_path)


async def test_without_a_tray_closing_quits_and_minimized_means_minimized(
    qtbot: QtBot, sim: Simulator, app_paths: AppPaths
) -> None:
    async with running(qtbot, app_paths, sim.url) as app:
        assert not app.tray_available  # offscreen has no system tray
        assert not app.window.hide_on_close
        app.window.close()
        await wait_for(app.closed.is_set)


async def test_with_a_tray_closing_hides_and_says_so_once(
    qtbot: QtBot, sim: Simulator, app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TrayController, "available", staticmethod(lambda: True))
    messages: list[str] = []
    monkeypatch.setattr(TrayController, "show_message", lambda self, t, b: messages.append(t))
    async with running(qtbot, app_paths, sim.url) as app:
        assert app.window.hide_on_close
        app.window.close()
        assert not app.window.isVisible() and not app.closed.is_set()
        app.toggle_window()  # a left click on the icon
        assert app.window.isVisible()
        app.window.close()
        assert messages == ["lmgui is still running"]  # said once, not every time
        app.tray.quit_requested.emit()
        assert app.closed.is_set()


async def test_notifications_from_the_running_app(
    qtbot: QtBot, sim: Simulator, app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TrayController, "available", staticmethod(lambda: True))
    said: list[tuple[str, str]] = []
    async with running(qtbot, app_paths, sim.url) as app:
        app.notifier.notify.connect(lambda k, t, b: said.append((k, t)))
        await app.actions.load(LoadRequest("google/gemma-3-270m"))
        # lmgui must have seen it before it can see it vanish.
        await wait_for(lambda: bool(list(app.poller.snapshot.instances)))
        async with LMStudioClient(sim.url, lms=None) as other:
            await other.unload("google/gemma-3-270m")  # gone without lmgui asking
        await wait_for(lambda: any(k == "vanished" for k, _ in said))
        polls = app.poller.polls
        await wait_for(lambda: app.poller.polls > polls + 3)
        assert said == [
            ("loaded", "Loaded google/gemma-3-270m"),
            ("vanished", "google/gemma-3-270m was unloaded"),
        ]  # once each, however many polls follow


async def test_server_offline_and_back_are_said(
    qtbot: QtBot, make_sim: SimFactory, app_paths: AppPaths
) -> None:
    from lmgui.sim import SimConfig

    sim = make_sim()
    port = sim.port
    async with running(qtbot, app_paths, sim.url) as app:
        said: list[str] = []
        app.notifier.notify.connect(lambda k, t, b: said.append(t))
        await wait_for(lambda: app.poller.status.state is ConnectionState.CONNECTED)
        sim.stop()
        await wait_for(lambda: said == ["LM Studio is unreachable"])
        back = Simulator(SimConfig(port=port, tokens_per_second=0)).start()
        try:
            await wait_for(lambda: said == ["LM Studio is unreachable", "LM Studio is back"])
        finally:
            back.stop()


async def test_polling_is_slower_hidden_and_faster_while_loading(
    qtbot: QtBot, make_sim: SimFactory, app_paths: AppPaths
) -> None:
    sim = make_sim(load_seconds_per_gb=0.4)
    app = LmguiApp(app_paths, server=sim.url)
    qtbot.addWidget(app.window)
    try:
        app.window.show()
        app._update_poll_interval()
        assert app.poller.interval_ms == app.settings.poll_interval_ms == 2000
        app.window.hide()
        assert app.poller.interval_ms == app.settings.hidden_poll_interval_ms == 5000
        app.poller.start()
        task = app.actions.load(LoadRequest("qwen/qwen3-4b"))
        assert app.poller.interval_ms == LOADING_POLL_MS
        await task
        assert app.poller.interval_ms == 5000
        polls = app.poller.polls
        app._on_tray_menu_opening()  # opening the menu refreshes at once
        await wait_for(lambda: app.poller.polls > polls)
    finally:
        await app.shutdown()


async def test_the_trays_load_uses_the_settings_last_used(
    qtbot: QtBot, sim: Simulator, app_paths: AppPaths
) -> None:
    async with running(qtbot, app_paths, sim.url) as app:
        app.settings.remember_load(LoadRequest("qwen/qwen3-4b", context_length=16384))
        app.settings.favourites = ["google/gemma-3-270m"]
        await wait_for(lambda: app.tree.rowCount() == 15)
        (server,) = app.tray.fleet().servers
        assert server.quick_loads == [
            ("google/gemma-3-270m", "★ Gemma 3 270M"),
            ("qwen/qwen3-4b", "Qwen3 4B"),
        ]
        app.tray.load_requested.emit(server.server_url, "qwen/qwen3-4b")
        await wait_for(lambda: bool(sim.received("POST", "/api/v1/models/load")))
        assert sim.received("POST", "/api/v1/models/load")[-1].body["context_length"] == 16384


async def test_start_on_login_from_the_settings(
    qtbot: QtBot,
    sim: Simulator,
    app_paths: AppPaths,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lmgui.core.settings import SettingsValues

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    async with running(qtbot, app_paths, sim.url) as app:
        base = SettingsValues(sim.url, None, 2000, 0.0, True)
        app.apply_settings(SettingsValues(**{**base.__dict__, "start_on_login": True}))
        entry = tmp_path / "xdg" / "autostart" / "lmgui.desktop"
        assert entry.exists() and "--minimized" in entry.read_text()
        app.apply_settings(base)
        assert not entry.exists()


def test_autostart_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    linux = Autostart("linux", home=tmp_path)
    assert linux.supported and not linux.is_enabled()
    linux.enable()
    keys = read_entry(tmp_path / "config" / "autostart" / "lmgui.desktop")
    # This installation's lmgui by its absolute path, as the launcher (a pipx or uv tool lmgui
    # is not on a login session's PATH).
    assert parse_exec(keys["Exec"]) == [*lmgui_command(), "--minimized"]
    assert keys["TryExec"] == lmgui_command()[0] and Path(keys["TryExec"]).is_absolute()
    assert linux.is_enabled()
    linux.disable()
    assert not linux.is_enabled()
    linux.disable()  # twice is fine

    mac = Autostart("darwin", home=tmp_path)
    mac.enable()
    plist = plistlib.loads(
        (tmp_path / "Library" / "LaunchAgents" / "io.github.lmgui.plist").read_bytes()
    )
    assert plist["RunAtLoad"] is True and plist["ProgramArguments"][-1] == "--minimized"
    mac.disable()
    assert not mac.is_enabled()
    assert not Autostart("sunos5", home=tmp_path).supported


def test_settings_round_trip(tmp_path: Path, qapp: object) -> None:
    path = tmp_path / "lmgui.ini"
    s = Settings(path)
    s.profiles = [
        Profile("Home", "127.0.0.1:1234"),
        Profile("Lab", "http://lab:1234/api/v1", False),
    ]
    s.hidden_poll_interval_ms = 9000
    s.close_to_tray = False
    s.start_minimized = True
    s.set_notify("vanished", False)
    s.favourites = ["a", "b", "a"]
    for key in ("x", "y", "x"):
        s.remember_load(LoadRequest(key, context_length=4096, identifier="one-off"))
    s.sync()
    again = Settings(path)
    assert again.profiles == [
        Profile("Home", "http://127.0.0.1:1234"),
        Profile("Lab", "http://lab:1234", enabled=False),
    ]
    assert again.hidden_poll_interval_ms == 9000 and not again.close_to_tray
    assert again.start_minimized and not again.notify("vanished") and again.notify("loaded")
    assert again.favourites == ["a", "b"] and again.recent == ["x", "y"]
    assert again.load_defaults()["x"] == LoadRequest("x", context_length=4096)  # no identifier
    again.forget_load_defaults("x")
    assert "x" not in again.load_defaults()


def test_opening_the_menu_all_day_does_not_grow_it(qapp: object) -> None:
    once = submenus_after_many_openings(TrayController(lambda: FleetTrayState([STATE])))
    assert once == 3  # two instances and Load
