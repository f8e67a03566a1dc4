"""The tray icon: state at a glance, a tooltip summary, and a menu rebuilt from live state.

It reads a ``FleetTrayState`` (core/tray_state.py: a ``TrayState`` per server, built from each
server's snapshot, ledger and the settings, Qt-free; its icon, tooltip and headers come from
core/fleet_state.py) and emits intents, each about one server named by its URL; it holds no
client. A fleet of one server shows the one-server menu. Where no system tray exists
(``available`` is False) the app never hides the window into it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from lmgui.core.fleet_state import fleet_icon_name, fleet_tooltip, summarize
from lmgui.core.messages import state_text
from lmgui.core.status import ConnectionState
from lmgui.core.tray_state import (
    FleetTrayState,
    TrayInstance,
    TrayState,
    activity_summary,
    icon_name,
    tooltip,
)
from lmgui.ui.icons import state_icon

__all__ = [
    "FleetTrayState",
    "TrayController",
    "TrayInstance",
    "TrayState",
    "fleet_icon_name",
    "fleet_tooltip",
    "icon_name",
    "tooltip",
]


def _plain(text: str) -> str:
    """A menu text shown as it is: "&" would otherwise mark a shortcut letter and vanish."""
    return text.replace("&", "&&")


class TrayController(QObject):
    toggle_window = Signal()
    refresh_requested = Signal()
    unload_requested = Signal(str, list)
    """(server URL, instance ids)"""
    chat_requested = Signal(str, str)
    """(server URL, instance id)"""
    load_requested = Signal(str, str)
    """(server URL, model key)"""
    pause_toggled = Signal(bool)
    notifications_paused_toggled = Signal(bool)
    quit_requested = Signal()
    menu_opening = Signal()
    free_requested = Signal(str)
    """(server URL)"""
    restore_requested = Signal(str)
    """(server URL)"""
    make_way_restore_requested = Signal(str)
    """(server URL)"""
    timeline_requested = Signal()
    pin_toggled = Signal(str, str, bool)
    """(server URL, instance id, pinned)"""

    def __init__(
        self, state: Callable[[], FleetTrayState | TrayState], parent: QObject | None = None
    ) -> None:
        """``state``: the fleet's state of the moment; a ``TrayState`` is a fleet of one."""
        super().__init__(parent)
        self._state = state
        self.icon = QSystemTrayIcon(state_icon("state-idle"), self)
        self.menu = QMenu()
        self._submenus: list[QMenu] = []
        self.icon.setContextMenu(self.menu)
        self.menu.aboutToShow.connect(self._on_menu_about_to_show)
        self.menu.triggered.connect(self._on_menu_triggered)
        self.icon.activated.connect(self._on_icon_activated)
        self.current_icon = "state-idle"

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def fleet(self) -> FleetTrayState:
        state = self._state()
        return state if isinstance(state, FleetTrayState) else FleetTrayState.of(state)

    def show(self) -> None:
        self.update()
        self.icon.show()

    def update(self) -> None:
        """Icon and tooltip from the current state (cheap: called after every poll)."""
        fleet = self.fleet()
        name = fleet_icon_name(fleet)
        if name != self.current_icon:
            self.current_icon = name
            self.icon.setIcon(state_icon(name))
        self.icon.setToolTip(fleet_tooltip(fleet))

    def show_message(self, title: str, body: str) -> None:
        self.icon.showMessage(title, body, QSystemTrayIcon.MessageIcon.Information, 8000)

    def _on_icon_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.toggle_window.emit()

    def _on_menu_about_to_show(self) -> None:
        self.menu_opening.emit()  # refresh now, so the next opening is current too
        self.rebuild()

    def _act(
        self,
        menu: QMenu,
        text: str,
        intent: tuple[str, str, object],
        *,
        enabled: bool = True,
    ) -> QAction:
        """An action whose intent (kind, server URL or "", argument) is dispatched by
        ``_on_menu_triggered``.

        WORKAROUND: a signal connection per action (a lambda, or even a bound emit) keeps the
        action's Python wrapper and its closure alive after the menu deletes the action; rebuilt
        at every opening, an all-day tray grew by megabytes (bench/house.py). The top menu carries
        the one connection; Qt passes a submenu's triggers up to it."""
        action = QAction(text, menu)  # made here, not by addAction(text): see _submenu
        menu.addAction(action)
        action.setData(intent)
        action.setEnabled(enabled)
        return action

    def _header(self, menu: QMenu, text: str, *, bold: bool = False) -> QAction:
        # A disabled action, not QMenu.addSection: native menus (macOS, a DBus tray on Linux)
        # draw a section as a bare separator and drop its text, which is the whole point here.
        action = self._act(menu, text, ("header", "", None), enabled=False)
        if bold:  # where the menu is Qt's own; a native one draws it plain, still a header
            font = action.font()
            font.setBold(True)
            action.setFont(font)
        return action

    def _on_menu_triggered(self, action: QAction) -> None:
        intent = action.data()
        if not isinstance(intent, tuple) or len(intent) != 3:
            return
        kind, url, arg = intent
        if kind == "unload":
            self.unload_requested.emit(url, list(arg))
        elif kind == "chat":
            self.chat_requested.emit(url, arg)
        elif kind == "load":
            self.load_requested.emit(url, arg)
        elif kind == "window":
            self.toggle_window.emit()
        elif kind == "refresh":
            self.refresh_requested.emit()
        elif kind == "pause":
            self.pause_toggled.emit(action.isChecked())
        elif kind == "quiet":
            self.notifications_paused_toggled.emit(action.isChecked())
        elif kind == "quit":
            self.quit_requested.emit()
        elif kind == "free":
            self.free_requested.emit(url)
        elif kind == "restore":
            self.restore_requested.emit(url)
        elif kind == "make_way_restore":
            self.make_way_restore_requested.emit(url)
        elif kind == "timeline":
            self.timeline_requested.emit()
        elif kind == "pin":
            self.pin_toggled.emit(url, arg, action.isChecked())

    def _submenu(self, label: str, into: QMenu | None = None) -> QMenu:
        """A submenu of ``into`` (the top menu by default).

        WORKAROUND: a QMenu or QAction that Qt made (addMenu(text), addAction(text)) has a
        Python wrapper shiboken never hears the deletion of, so it and all it references stay
        alive; objects made from Python tell shiboken when Qt deletes them."""
        # Every submenu is the top menu's child, however deep it sits: Qt passes its actions'
        # triggers up the parent chain to the top menu's one connection, and rebuild deletes
        # each exactly once.
        sub = QMenu(label, self.menu)
        (into or self.menu).addMenu(sub)
        self._submenus.append(sub)
        return sub

    def rebuild(self) -> None:
        """The menu, from live state. One server: its instances with Unload, Chat and Pinned,
        its loads, then the window and polling. Several: the fleet's totals, then per server a
        header, its instances and a "More on <server>" submenu, then the window and polling."""
        fleet = self.fleet()
        menu = self.menu
        menu.clear()
        # WORKAROUND: QMenu.clear() removes the actions but not the submenus addMenu() made (they
        # are children of the menu): an all-day tray would grow one per opening.
        for sub in self._submenus:
            sub.deleteLater()
        self._submenus.clear()
        one = fleet.alone()
        if one is not None:
            self._one_server(one)
        else:
            self._servers(fleet)
        menu.addSeparator()
        self._act(
            menu, "Hide window" if fleet.window_visible else "Open window", ("window", "", None)
        )
        self._act(menu, "Timeline…", ("timeline", "", None))
        self._act(menu, "Refresh", ("refresh", "", None), enabled=not fleet.paused)
        pause = self._act(menu, "Pause polling", ("pause", "", None))
        pause.setCheckable(True)
        pause.setChecked(fleet.paused)
        quiet = self._act(menu, "Pause notifications", ("quiet", "", None))
        quiet.setCheckable(True)
        quiet.setChecked(fleet.notifications_paused)
        menu.addSeparator()
        self._act(menu, "Quit lmgui", ("quit", "", None))

    def _one_server(self, state: TrayState) -> None:
        """The one-server menu: its header, its instances, then what it offers, all at the top."""
        busy = activity_summary(state.instances)
        self._header(
            self.menu,
            f"{len(state.instances)} loaded · about {state.vram_text} VRAM"
            + (f" · {busy}" if busy else "")
            + (" · server slow" if state.connection is ConnectionState.SLOW else "")
            if state.connection.online
            else f"Server: {state_text(state.status or state.connection)}",
        )
        self._instances(state)
        self._server_actions(self.menu, state)

    def _servers(self, fleet: FleetTrayState) -> None:
        """Several servers: per server a header, its instances, and a submenu with the rest."""
        summary = summarize(fleet)
        self._header(self.menu, summary.header)
        for state, line in zip(fleet.servers, summary.servers, strict=True):
            self.menu.addSeparator()
            self._header(self.menu, _plain(line.header), bold=True)
            if not state.connection.online:
                continue  # its last list may be stale and nothing can reach it: the header says
            self._instances(state)
            more = f"More on {state.label}"
            if state.restorable or state.make_way_restore:
                more += " (Restore available)"
            self._server_actions(self._submenu(_plain(more)), state)

    def _instances(self, state: TrayState) -> None:
        url = state.server_url
        for inst in state.instances:
            # The line itself (TrayInstance.label) says what a busy instance is doing. Its Unload
            # emits the intent as any other: the app, which knows it is busy, asks first.
            sub = self._submenu(_plain(inst.label))
            self._act(sub, "Unload", ("unload", url, (inst.instance_id,)))
            self._act(sub, "Chat", ("chat", url, inst.instance_id))
            pin = self._act(
                sub, "Pinned (kept when freeing the GPU)", ("pin", url, inst.instance_id)
            )
            pin.setCheckable(True)
            pin.setChecked(inst.pinned)

    def _server_actions(self, menu: QMenu, state: TrayState) -> None:
        """Unload all, Free the GPU, the Restores and Load for one server, into ``menu``."""
        url = state.server_url
        online = state.connection.online
        if state.instances:
            ids = tuple(i.instance_id for i in state.instances)
            self._act(menu, "Unload all", ("unload", url, ids))
            self._act(
                menu,
                "Free the GPU (restore later)",
                ("free", url, None),
                enabled=online and not state.snapshots_busy,
            )
        if state.restorable:
            self._act(
                menu,
                f"Restore {state.restorable} instance(s) unloaded to free the GPU",
                ("restore", url, None),
                enabled=online and not state.snapshots_busy,
            )
        if state.make_way_restore:
            self._act(
                menu,
                "Restore the models unloaded to make way",
                ("make_way_restore", url, None),
                enabled=online,
            )
        loads = self._submenu("Load", menu)
        loads.setEnabled(online and bool(state.quick_loads))
        for key, label in state.quick_loads:
            self._act(loads, _plain(label), ("load", url, key))
