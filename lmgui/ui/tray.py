"""The tray icon: state at a glance, a tooltip summary, and a menu rebuilt from live state.

It reads a ``TrayState`` (core/tray_state.py: built from the snapshot, the ledger and the
settings, Qt-free) and emits intents; it holds no client. Where no system tray exists
(``available`` is False) the app never hides the window into it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from lmgui.core.messages import state_text
from lmgui.core.status import ConnectionState
from lmgui.core.tray_state import (
    TrayInstance,
    TrayState,
    activity_summary,
    icon_name,
    tooltip,
)
from lmgui.ui.icons import state_icon

__all__ = ["TrayController", "TrayInstance", "TrayState", "icon_name", "tooltip"]


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
    free_requested = Signal()
    restore_requested = Signal()
    make_way_restore_requested = Signal()
    timeline_requested = Signal()
    pin_toggled = Signal(str, bool)

    def __init__(self, state: Callable[[], TrayState], parent: QObject | None = None) -> None:
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
        self, menu: QMenu, text: str, intent: tuple[str, object], *, enabled: bool = True
    ) -> QAction:
        """An action whose intent is dispatched by ``_on_menu_triggered``.

        WORKAROUND: a signal connection per action (a lambda, or even a bound emit) keeps the
        action's Python wrapper and its closure alive after the menu deletes the action; rebuilt
        at every opening, an all-day tray grew by megabytes (bench/house.py). The top menu carries
        the one connection; Qt passes a submenu's triggers up to it."""
        action = QAction(text, menu)  # made here, not by addAction(text): see _submenu
        menu.addAction(action)
        action.setData(intent)
        action.setEnabled(enabled)
        return action

    def _on_menu_triggered(self, action: QAction) -> None:
        intent = action.data()
        if not isinstance(intent, tuple):
            return
        kind, arg = intent
        if kind == "unload":
            self.unload_requested.emit(list(arg))
        elif kind == "chat":
            self.chat_requested.emit(arg)
        elif kind == "load":
            self.load_requested.emit(arg)
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
            self.free_requested.emit()
        elif kind == "restore":
            self.restore_requested.emit()
        elif kind == "make_way_restore":
            self.make_way_restore_requested.emit()
        elif kind == "timeline":
            self.timeline_requested.emit()
        elif kind == "pin":
            self.pin_toggled.emit(arg, action.isChecked())

    def _submenu(self, label: str) -> QMenu:
        # WORKAROUND: a QMenu or QAction that Qt made (addMenu(text), addAction(text)) has a
        # Python wrapper shiboken never hears the deletion of, so it and all it references stay
        # alive; objects made from Python tell shiboken when Qt deletes them.
        sub = QMenu(label, self.menu)
        self.menu.addMenu(sub)  # its actions' triggered reaches the top menu's one connection
        self._submenus.append(sub)
        return sub

    def rebuild(self) -> None:
        """The menu, from live state: each instance with Unload and Chat, loads, window, polling."""
        state = self._state()
        menu = self.menu
        menu.clear()
        # WORKAROUND: QMenu.clear() removes the actions but not the submenus addMenu() made (they
        # are children of the menu): an all-day tray would grow one per opening.
        for sub in self._submenus:
            sub.deleteLater()
        self._submenus.clear()
        online = state.connection.online
        busy = activity_summary(state.instances)
        self._act(
            menu,
            f"{len(state.instances)} loaded · about {state.vram_text} VRAM"
            + (f" · {busy}" if busy else "")
            + (" · server slow" if state.connection is ConnectionState.SLOW else "")
            if online
            else f"Server: {state_text(state.status or state.connection)}",
            ("header", None),
            enabled=False,
        )
        for inst in state.instances:
            # The line itself (TrayInstance.label) says what a busy instance is doing. Its Unload
            # emits the intent as any other: the app, which knows it is busy, asks first.
            sub = self._submenu(inst.label)
            self._act(sub, "Unload", ("unload", (inst.instance_id,)))
            self._act(sub, "Chat", ("chat", inst.instance_id))
            pin = self._act(sub, "Pinned (kept when freeing the GPU)", ("pin", inst.instance_id))
            pin.setCheckable(True)
            pin.setChecked(inst.pinned)
        if state.instances:
            ids = tuple(i.instance_id for i in state.instances)
            self._act(menu, "Unload all", ("unload", ids))
            self._act(
                menu,
                "Free the GPU (restore later)",
                ("free", None),
                enabled=online and not state.snapshots_busy,
            )
        if state.restorable:
            self._act(
                menu,
                f"Restore {state.restorable} instance(s) unloaded to free the GPU",
                ("restore", None),
                enabled=online and not state.snapshots_busy,
            )
        if state.make_way_restore:
            self._act(
                menu,
                "Restore the models unloaded to make way",
                ("make_way_restore", None),
                enabled=online,
            )
        loads = self._submenu("Load")
        loads.setEnabled(online and bool(state.quick_loads))
        for key, label in state.quick_loads:
            self._act(loads, label, ("load", key))
        menu.addSeparator()
        self._act(menu, "Hide window" if state.window_visible else "Open window", ("window", None))
        self._act(menu, "Timeline…", ("timeline", None))
        self._act(menu, "Refresh", ("refresh", None), enabled=not state.paused)
        pause = self._act(menu, "Pause polling", ("pause", None))
        pause.setCheckable(True)
        pause.setChecked(state.paused)
        quiet = self._act(menu, "Pause notifications", ("quiet", None))
        quiet.setCheckable(True)
        quiet.setChecked(state.notifications_paused)
        menu.addSeparator()
        self._act(menu, "Quit lmgui", ("quit", None))
