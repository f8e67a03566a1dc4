"""The main window's commands: its shared ``QAction``s with their shortcuts and tips, the toolbar,
the menus, the context menu and the filter box, built once and exposed by name.

One ``QAction`` per command, shared by the toolbar, the menu bar and the context menu, so a
shortcut, a tooltip or an enabled state is set in one place and seen everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import QLineEdit, QMainWindow, QMenu, QToolBar, QWidget

from lmgui.ui.icons import state_icon

__all__ = ["FILTER_TOGGLES", "WindowActions"]

Slot = Callable[[], object]

FILTER_TOGGLES = (
    ("loaded", "Loaded", "Show only loaded models"),
    ("llm", "LLM", "Show LLMs"),
    ("embedding", "Embedding", "Show embedding models"),
    ("vision", "Vision", "Show only vision models"),
    ("tools", "Tools", "Show only models trained for tool use"),
)
"""(name, text, tip) of each filter toggle; the name is what the layout saves."""


class WindowActions(QObject):
    filter_changed = Signal()
    """The filter text or one of the toggles changed."""

    def __init__(
        self,
        window: QMainWindow,
        *,
        on_refresh: Slot,
        on_load: Slot,
        on_unload: Slot,
        on_unload_all: Slot,
        on_settings: Slot,
        on_quit: Slot,
        on_chat: Slot,
        on_copy_key: Slot,
        on_pin: Callable[[bool], None],
    ) -> None:
        super().__init__(window)
        self._window = window
        self.refresh_action = self._action(
            "&Refresh",
            on_refresh,
            QKeySequence.StandardKey.Refresh,
            "Refresh now (F5)",
            state_icon("refresh"),
        )
        # StandardKey.Refresh is F5 only on some platforms: name both keys the docs promise.
        self.refresh_action.setShortcuts([QKeySequence("F5"), QKeySequence("Ctrl+R")])
        self.load_action = self._action(
            "&Load…",
            on_load,
            "Ctrl+L",
            "Load the selected model (Ctrl+L)",
            state_icon("load"),
        )
        self.unload_action = self._action(
            "&Unload…",
            on_unload,
            QKeySequence.StandardKey.Delete,
            "Unload the selected instances (Del)",
            state_icon("unload"),
        )
        self.unload_all_action = self._action(
            "Unload &all instances of all models…",
            on_unload_all,
            None,
            "Unload every loaded instance on the server",
        )
        self.settings_action = self._action(
            "&Settings…", on_settings, "Ctrl+,", "Settings (Ctrl+,)"
        )
        self.quit_action = self._action("&Quit", on_quit, "Ctrl+Q", "Quit lmgui")
        self.chat_action = self._action(
            "&Chat", on_chat, "Ctrl+T", "Chat with the selected model or instance (Ctrl+T)"
        )
        self.copy_key_action = self._action(
            "Copy model &key",
            on_copy_key,
            QKeySequence.StandardKey.Copy,
            "Copy the selected model's key, or the instance id (Ctrl+C)",
        )

        self.pin_action = QAction("&Pinned (kept when freeing the GPU)", window)
        self.pin_action.setCheckable(True)
        self.pin_action.setToolTip(
            "Keep the selected instance when the GPU is freed or room is made for a load"
        )
        self.pin_action.setStatusTip(self.pin_action.toolTip())
        self.pin_action.triggered.connect(on_pin)

        self.filter_box = QLineEdit()
        self.filter_box.setPlaceholderText("Filter by name, key or publisher")
        self.filter_box.setAccessibleName("Filter")
        self.filter_box.setToolTip("Filter by name, key or publisher (Ctrl+F)")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.setMaximumWidth(320)
        self.filter_box.textChanged.connect(self.filter_changed)
        # No menu entry: the action exists for its shortcut, which focuses the box.
        self.filter_action = self._action(
            "&Filter", self._focus_filter, QKeySequence.StandardKey.Find, "Filter (Ctrl+F)"
        )

        self.toggles: dict[str, QAction] = {}
        for name, text, tip in FILTER_TOGGLES:
            act = QAction(text, window)
            act.setCheckable(True)
            act.setToolTip(tip)
            act.toggled.connect(self.filter_changed)
            self.toggles[name] = act

        self.toolbar = self._build_toolbar()
        self.view_menu = self._build_menus()

    def _action(
        self,
        text: str,
        slot: Slot,
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
        tip: str = "",
        icon: QIcon | None = None,
    ) -> QAction:
        action = QAction(text, self._window)
        if icon is not None:
            action.setIcon(icon)
        if shortcut is not None:
            action.setShortcut(
                shortcut if isinstance(shortcut, QKeySequence) else QKeySequence(shortcut)
            )
        action.setToolTip(tip or text.replace("&", "").rstrip("…"))
        action.setStatusTip(action.toolTip())
        # The lambda drops triggered's `checked`: PySide would pass it on as a slot's first
        # optional argument (open_load_dialog's model key).
        action.triggered.connect(lambda _checked=False: slot())
        # On the window itself, so the shortcut works wherever the focus is in it.
        self._window.addAction(action)
        return action

    def _build_toolbar(self) -> QToolBar:
        bar = QToolBar("Main")
        bar.setObjectName("main-toolbar")  # saveState/restoreState find it by this name
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for act in (self.refresh_action, self.load_action, self.unload_action):
            bar.addAction(act)
        bar.addSeparator()
        bar.addWidget(self.filter_box)
        for act in self.toggles.values():
            bar.addAction(act)
        self._window.addToolBar(bar)
        return bar

    def _build_menus(self) -> QMenu:
        """File, Models and View; returns View, where the chat pane's toggle goes later."""
        menu = self._window.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        models_menu = menu.addMenu("&Models")
        for act in (self.refresh_action, self.load_action, self.unload_action):
            models_menu.addAction(act)
        models_menu.addAction(self.chat_action)
        models_menu.addAction(self.pin_action)
        models_menu.addSeparator()
        models_menu.addAction(self.unload_all_action)
        models_menu.addSeparator()
        models_menu.addAction(self.copy_key_action)
        view_menu = menu.addMenu("&View")
        for act in self.toggles.values():
            view_menu.addAction(act)
        return view_menu

    def context_menu(self, parent: QWidget) -> QMenu:
        """The table's right-click menu: the same actions, so the same shortcuts and states."""
        menu = QMenu(parent)
        menu.addAction(self.load_action)
        menu.addAction(self.unload_action)
        menu.addAction(self.chat_action)
        menu.addAction(self.pin_action)
        menu.addSeparator()
        menu.addAction(self.copy_key_action)
        menu.addAction(self.refresh_action)
        return menu

    def checked_toggles(self) -> set[str]:
        return {name for name, act in self.toggles.items() if act.isChecked()}

    def _focus_filter(self) -> None:
        self.filter_box.setFocus()
        self.filter_box.selectAll()
