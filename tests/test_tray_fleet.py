"""The fleet's tray menu (offscreen): the fleet's totals, per server a header, its instances and
a submenu with the rest, the app-wide items once; each action names its server by URL."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from lmgui.core.fleet_state import FleetTrayState
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.tray_state import TrayInstance, TrayState
from lmgui.ui.tray import TrayController
from tests.tray_menu import submenus_after_many_openings

S = ConnectionState
SINCE = time.mktime((2026, 12, 1, 14, 5, 0, 0, 0, -1))
GPU_BOX, LAPTOP, DESK = "http://gpu-box:1234", "http://laptop:1234", "http://desk:1234"

SIGNALS = (
    "unload_requested",
    "chat_requested",
    "load_requested",
    "free_requested",
    "restore_requested",
    "make_way_restore_requested",
    "pin_toggled",
    "toggle_window",
    "refresh_requested",
    "pause_toggled",
    "notifications_paused_toggled",
    "quit_requested",
    "timeline_requested",
)


def server(url: str, name: str, state: ConnectionState, **kw: Any) -> TrayState:
    status = PollStatus(state, since=SINCE if state is S.UNREACHABLE else 0.0)
    return TrayState(server=url, connection=state, status=status, url=url, name=name, **kw)


def inst(instance_id: str, gb: float, **kw: Any) -> TrayInstance:
    return TrayInstance(instance_id, instance_id.split(":")[0], 8192, int(gb * 1e9), **kw)


FLEET = FleetTrayState(
    [
        server(
            GPU_BOX,
            "gpu-box",
            S.CONNECTED,
            instances=[
                inst("qwen/qwen3-4b", 4.1, status="generating", busy=True),
                inst("google/gemma-3-270m", 3.0, pinned=True),
            ],
            quick_loads=[("meta/llama", "★ Llama")],
            restorable=1,
        ),
        # Unreachable: its last list may be stale, so none of it is offered.
        server(LAPTOP, "laptop", S.UNREACHABLE, instances=[inst("phi", 2.0)]),
        server(
            DESK,
            "desk",
            S.CONNECTED,
            # The same instance id as on gpu-box: only the URL tells them apart.
            instances=[inst("qwen/qwen3-4b", 4.1)],
            quick_loads=[("ibm/granite", "Granite")],
            make_way_restore=True,
        ),
    ],
    window_visible=False,
)


def texts(menu: QMenu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def action(menu: QMenu, text: str) -> QAction:
    return next(a for a in menu.actions() if a.text() == text)


def submenu(menu: QMenu, text: str) -> QMenu:
    sub = action(menu, text).menu()
    assert isinstance(sub, QMenu)
    return sub


def listen(tray: TrayController) -> dict[str, list[tuple[Any, ...]]]:
    got: dict[str, list[tuple[Any, ...]]] = {name: [] for name in SIGNALS}
    for name in SIGNALS:
        getattr(tray, name).connect(lambda *a, n=name: got[n].append(a))
    return got


def test_the_menu_groups_instances_under_their_server(qapp: object) -> None:
    tray = TrayController(lambda: FLEET)
    tray.menu.aboutToShow.emit()
    menu = tray.menu
    assert texts(menu) == [
        "3 servers (1 offline) · 3 loaded · about 11.2 GB VRAM · 1 generating",
        "gpu-box — Connected · 2 loaded · 7.1 GB · 1 generating",
        "qwen/qwen3-4b  (8k ctx, 4.1 GB) ● generating",
        "google/gemma-3-270m  (8k ctx, 3.0 GB)",
        "More on gpu-box (Restore available)",
        "laptop — Unreachable since 14:05",
        "desk — Connected · 1 loaded · 4.1 GB",
        "qwen/qwen3-4b  (8k ctx, 4.1 GB)",
        "More on desk (Restore available)",
        "Open window",
        "Timeline…",
        "Refresh",
        "Pause polling",
        "Pause notifications",
        "Quit lmgui",
    ]
    # The headers say, they do nothing; a separator before each server's group, its name bold.
    servers = [a for a in menu.actions() if a.text().startswith(("gpu-box —", "laptop —"))]
    assert len(servers) == 2 and all(a.font().bold() for a in servers)
    assert not any(a.isEnabled() for a in [menu.actions()[0], *servers])
    assert menu.actions()[1].isSeparator()
    assert texts(submenu(menu, "More on gpu-box (Restore available)")) == [
        "Unload all",
        "Free the GPU (restore later)",
        "Restore 1 instance(s) unloaded to free the GPU",
        "Load",
    ]
    assert texts(submenu(menu, "More on desk (Restore available)")) == [
        "Unload all",
        "Free the GPU (restore later)",
        "Restore the models unloaded to make way",
        "Load",
    ]


def test_each_instances_actions_name_its_server(qapp: object) -> None:
    tray = TrayController(lambda: FLEET)
    got = listen(tray)
    tray.menu.aboutToShow.emit()
    on_gpu_box, on_desk = (
        submenu(tray.menu, text)
        for text in (
            "qwen/qwen3-4b  (8k ctx, 4.1 GB) ● generating",
            "qwen/qwen3-4b  (8k ctx, 4.1 GB)",
        )
    )
    gemma = submenu(tray.menu, "google/gemma-3-270m  (8k ctx, 3.0 GB)")
    for sub in (on_desk, on_gpu_box):
        assert texts(sub) == ["Unload", "Chat", "Pinned (kept when freeing the GPU)"]
        action(sub, "Unload").trigger()
        action(sub, "Chat").trigger()
    assert action(gemma, "Pinned (kept when freeing the GPU)").isChecked()
    action(gemma, "Pinned (kept when freeing the GPU)").trigger()  # unpins
    assert got["unload_requested"] == [
        (DESK, ["qwen/qwen3-4b"]),
        (GPU_BOX, ["qwen/qwen3-4b"]),
    ]
    assert got["chat_requested"] == [(DESK, "qwen/qwen3-4b"), (GPU_BOX, "qwen/qwen3-4b")]
    assert got["pin_toggled"] == [(GPU_BOX, "google/gemma-3-270m", False)]


def test_each_servers_submenu_acts_on_that_server(qapp: object) -> None:
    tray = TrayController(lambda: FLEET)
    got = listen(tray)
    tray.menu.aboutToShow.emit()
    gpu_box = submenu(tray.menu, "More on gpu-box (Restore available)")
    desk = submenu(tray.menu, "More on desk (Restore available)")
    action(gpu_box, "Unload all").trigger()
    action(desk, "Free the GPU (restore later)").trigger()
    action(gpu_box, "Restore 1 instance(s) unloaded to free the GPU").trigger()
    action(desk, "Restore the models unloaded to make way").trigger()
    # Load offers what that server has (its favourites and recent models).
    assert texts(submenu(gpu_box, "Load")) == ["★ Llama"]
    assert texts(submenu(desk, "Load")) == ["Granite"]
    action(submenu(desk, "Load"), "Granite").trigger()
    assert got["unload_requested"] == [(GPU_BOX, ["qwen/qwen3-4b", "google/gemma-3-270m"])]
    assert got["free_requested"] == [(DESK,)]
    assert got["restore_requested"] == [(GPU_BOX,)]
    assert got["make_way_restore_requested"] == [(DESK,)]
    assert got["load_requested"] == [(DESK, "ibm/granite")]


def test_the_app_wide_items_come_once_and_say_nothing_of_a_server(qapp: object) -> None:
    fleet = FleetTrayState(FLEET.servers, paused=True, notifications_paused=True)
    tray = TrayController(lambda: fleet)
    got = listen(tray)
    tray.menu.aboutToShow.emit()
    menu = tray.menu
    for text in ("Hide window", "Timeline…", "Quit lmgui"):
        assert texts(menu).count(text) == 1
        action(menu, text).trigger()
    assert action(menu, "Pause polling").isChecked()
    assert action(menu, "Pause notifications").isChecked()
    assert not action(menu, "Refresh").isEnabled()  # polling is paused
    action(menu, "Pause polling").trigger()
    assert got["toggle_window"] == got["timeline_requested"] == got["quit_requested"] == [()]
    assert got["pause_toggled"] == [(False,)]


def test_a_servers_name_and_its_models_are_shown_as_they_are(qapp: object) -> None:
    odd = server(
        "http://rd:1234",
        "R&D box",
        S.CONNECTED,
        instances=[inst("a&b", 1.0)],
        quick_loads=[("x", "Q&A model")],
    )
    tray = TrayController(lambda: FleetTrayState([odd, server(DESK, "desk", S.CONNECTED)]))
    tray.menu.aboutToShow.emit()
    # A "&" is not taken for a shortcut mark: the text shown (iconText) is the name itself.
    shown = [a.iconText() for a in tray.menu.actions() if not a.isSeparator()]
    assert shown[1:4] == [
        "R&D box — Connected · 1 loaded · 1.0 GB",
        "a&b  (8k ctx, 1.0 GB)",
        "More on R&D box",
    ]
    more = next(a.menu() for a in tray.menu.actions() if a.iconText() == "More on R&D box")
    assert isinstance(more, QMenu)
    load = next(a.menu() for a in more.actions() if a.text() == "Load")
    assert isinstance(load, QMenu) and [a.iconText() for a in load.actions()] == ["Q&A model"]


def test_an_empty_fleet_menu_says_so_and_keeps_the_app_items(qapp: object) -> None:
    tray = TrayController(lambda: FleetTrayState([]))
    tray.menu.aboutToShow.emit()
    assert texts(tray.menu) == [
        "No servers enabled",
        "Hide window",
        "Timeline…",
        "Refresh",
        "Pause polling",
        "Pause notifications",
        "Quit lmgui",
    ]
    tray.update()
    assert tray.current_icon == "state-offline"
    assert tray.icon.toolTip() == "lmgui — No servers enabled"


def test_the_icon_and_tooltip_follow_the_fleet(qapp: object) -> None:
    now = {"fleet": FLEET}
    tray = TrayController(lambda: now["fleet"])
    tray.update()
    assert tray.current_icon == "state-offline"  # laptop is unreachable
    assert tray.icon.toolTip().splitlines()[:2] == [
        "lmgui — 3 servers (1 offline): 3 instances, about 11.2 GB VRAM (estimated)",
        "gpu-box: Connected, 2 instances (1 generating), about 7.1 GB VRAM",
    ]
    now["fleet"] = FleetTrayState([FLEET.servers[0], FLEET.servers[2]])
    tray.update()
    assert tray.current_icon == "state-loaded"


def test_opening_the_fleet_menu_all_day_does_not_grow_it(qapp: object) -> None:
    once = submenus_after_many_openings(TrayController(lambda: FLEET))
    assert once == 3 + 2 * 2  # three instances, and per server online "More on" and its Load
