"""The tray icon: state at a glance, a tooltip summary, and a menu rebuilt from live state.

It reads a ``TrayState`` (built by the app from the poller, the tree and the ledger) and emits
intents; it holds no client. Where no system tray exists (``available`` is False) the app never
hides the window into it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from lmgui.core.format import human_bytes, human_count, human_duration
from lmgui.core.gpu import GpuMemory
from lmgui.core.poller import ConnectionState
from lmgui.ui.icons import state_icon

__all__ = ["TrayController", "TrayInstance", "TrayState", "icon_name"]


@dataclass(frozen=True)
class TrayInstance:
    instance_id: str
    model_key: str
    context_length: int | None
    vram_bytes: int
    ttl_left: float | None = None


@dataclass(frozen=True)
class TrayState:
    server: str
    connection: ConnectionState
    instances: list[TrayInstance] = field(default_factory=list)
    loading: bool = False
    last_refresh: float | None = None
    gpus: list[GpuMemory] | None = None
    paused: bool = False
    notifications_paused: bool = False
    window_visible: bool = True
    quick_loads: list[tuple[str, str]] = field(default_factory=list)
    """(model key, label) for the Load submenu: favourites, then recent models."""

    @property
    def vram_bytes(self) -> int:
        return sum(i.vram_bytes for i in self.instances)


def icon_name(state: TrayState) -> str:
    """Which state icon: offline, a load in progress, instances loaded, or nothing loaded."""
    if not state.connection.online:
        return "state-offline"
    if state.loading:
        return "state-loading"
    return "state-loaded" if state.instances else "state-idle"


def tooltip(state: TrayState) -> str:
    lines = [f"lmgui: {state.server}"]
    if not state.connection.online:
        lines.append(state.connection.value.capitalize())
    else:
        if state.connection is ConnectionState.SLOW:
            lines.append("Slow: the server is taking long to answer")
        n = len(state.instances)
        lines.append(
            f"{n} instance{'s' if n != 1 else ''} loaded" + (", loading…" if state.loading else "")
        )
        lines.append(f"VRAM in use: about {human_bytes(state.vram_bytes)} (estimated)")
        for g in state.gpus or ():
            lines.append(
                f"{g.name}: {human_bytes(g.used_bytes)} of {human_bytes(g.total_bytes)} (measured)"
            )
    if state.last_refresh is not None:
        lines.append(
            "Refreshed at " + time.strftime("%H:%M:%S", time.localtime(state.last_refresh))
        )
    if state.paused:
        lines.append("Polling paused")
    return "\n".join(lines)


class TrayController(QObject):
    toggle_window = Signal()
    refresh_requested = Signal()
    unload_requested = Signal(list)
    chat_requested = Signal(str)
    load_requested = Signal(str)
    pause_toggled = Signal(bool)
    notifications_paused_toggled = Signal(bool)
    quit_requested = Signal()
    menu_opening = Signal()

    def __init__(self, state: Callable[[], TrayState], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self.icon = QSystemTrayIcon(state_icon("state-idle"), self)
        self.menu = QMenu()
        self.icon.setContextMenu(self.menu)
        self.menu.aboutToShow.connect(self._on_menu_about_to_show)
        self.icon.activated.connect(self._on_icon_activated)
        self.current_icon = "state-idle"

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self) -> None:
        self.update()
        self.icon.show()

    def update(self) -> None:
        """Icon and tooltip from the current state (cheap: called after every poll)."""
        state = self._state()
        name = icon_name(state)
        if name != self.current_icon:
            self.current_icon = name
            self.icon.setIcon(state_icon(name))
        self.icon.setToolTip(tooltip(state))

    def show_message(self, title: str, body: str) -> None:
        self.icon.showMessage(title, body, QSystemTrayIcon.MessageIcon.Information, 8000)

    def _on_icon_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.toggle_window.emit()

    def _on_menu_about_to_show(self) -> None:
        self.menu_opening.emit()  # refresh now, so the next opening is current too
        self.rebuild()

    def _act(
        self, menu: QMenu, text: str, slot: Callable[[], None], *, enabled: bool = True
    ) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(lambda _checked=False: slot())
        action.setEnabled(enabled)
        return action

    def rebuild(self) -> None:
        """The menu, from live state: each instance with Unload and Chat, loads, window, polling."""
        state = self._state()
        menu = self.menu
        menu.clear()
        online = state.connection.online
        header = menu.addAction(
            f"{len(state.instances)} loaded · about {human_bytes(state.vram_bytes)} VRAM"
            + (" · server slow" if state.connection is ConnectionState.SLOW else "")
            if online
            else f"Server {state.connection.value}"
        )
        header.setEnabled(False)
        for inst in state.instances:
            ctx, vram = human_count(inst.context_length), human_bytes(inst.vram_bytes)
            label = f"{inst.instance_id}  ({ctx} ctx, {vram})"
            if inst.ttl_left is not None:
                label += f", unloads in {human_duration(inst.ttl_left)}"
            sub = menu.addMenu(label)
            self._act(
                sub, "Unload", functools.partial(self.unload_requested.emit, [inst.instance_id])
            )
            self._act(sub, "Chat", functools.partial(self.chat_requested.emit, inst.instance_id))
        if state.instances:
            ids = [i.instance_id for i in state.instances]
            self._act(menu, "Unload all", functools.partial(self.unload_requested.emit, ids))
        loads = menu.addMenu("Load")
        loads.setEnabled(online and bool(state.quick_loads))
        for key, label in state.quick_loads:
            self._act(loads, label, functools.partial(self.load_requested.emit, key))
        menu.addSeparator()
        self._act(
            menu, "Hide window" if state.window_visible else "Open window", self.toggle_window.emit
        )
        self._act(menu, "Refresh", self.refresh_requested.emit, enabled=not state.paused)
        pause = menu.addAction("Pause polling")
        pause.setCheckable(True)
        pause.setChecked(state.paused)
        pause.toggled.connect(self.pause_toggled.emit)
        quiet = menu.addAction("Pause notifications")
        quiet.setCheckable(True)
        quiet.setChecked(state.notifications_paused)
        quiet.toggled.connect(self.notifications_paused_toggled.emit)
        menu.addSeparator()
        self._act(menu, "Quit lmgui", self.quit_requested.emit)
