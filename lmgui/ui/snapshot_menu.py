"""The window's Snapshots menu: free the GPU, restore, save the loaded set under a name, restore
or forget a named one. Built from live state each time it opens; the work is the app's
(``SnapshotActions``), this only asks and shows.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMainWindow, QMenu

from lmgui.core.saved_sets import FREEING, check_name
from lmgui.core.snapshot_actions import SnapshotActions

__all__ = ["SnapshotMenu"]


class SnapshotMenu(QMenu):
    def __init__(
        self,
        window: QMainWindow,
        snapshots: SnapshotActions,
        *,
        free_gpu: Callable[[], object],
        say: Callable[[str], None],
        server_name: Callable[[], str] = lambda: "",
    ) -> None:
        """``free_gpu`` frees the GPU after asking about busy instances (the app's); ``say``
        puts a sentence in the status bar; ``server_name()`` names the server the menu acts on
        when lmgui watches several ("" with one)."""
        super().__init__("&Snapshots", window)
        self._window = window
        self._snapshots = snapshots
        self._say = say
        self._server_name = server_name
        self.free_action = QAction("&Free the GPU", window)
        self.free_action.setShortcut(QKeySequence("Ctrl+Shift+F"))
        self.free_action.setStatusTip(
            f'Save what is loaded as "{FREEING}" and unload it all (pinned instances stay)'
        )
        self.free_action.triggered.connect(lambda _checked=False: free_gpu())
        window.addAction(self.free_action)  # the shortcut works wherever the focus is
        self.restore_action = QAction("&Restore", window)
        self.restore_action.setShortcut(QKeySequence("Ctrl+Shift+R"))
        self.restore_action.triggered.connect(lambda _checked=False: self._restore_freed())
        window.addAction(self.restore_action)
        self.save_action = QAction("&Save the loaded set as…", window)
        self.save_action.triggered.connect(lambda _checked=False: self.ask_and_save())
        self._dynamic: list[QMenu] = []
        self.aboutToShow.connect(self.rebuild)
        snapshots.changed.connect(self.update_actions)
        self.update_actions()
        self.rebuild()

    def _restore_freed(self) -> None:
        if self._snapshots.restorable() is not None and not self._snapshots.working:
            self._snapshots.restore(FREEING)

    def update_actions(self) -> None:
        """The actions' state and words for the current server (it changes with the selection
        when lmgui watches several)."""
        saved = self._snapshots.restorable()
        working = self._snapshots.working
        name = self._server_name()
        on = f" on {name.replace('&', '&&')}" if name else ""
        self.free_action.setEnabled(not working)
        self.free_action.setText(f"&Free the GPU{on}")
        self.restore_action.setEnabled(saved is not None and not working)
        self.restore_action.setText(
            f"&Restore {len(saved.instances)} instance(s){on} ({FREEING})"
            if saved is not None
            else f"&Restore{on} (nothing freed)"
        )
        self.save_action.setText(f"&Save the loaded set{on} as…")

    def rebuild(self) -> None:
        self.clear()
        for sub in self._dynamic:
            sub.deleteLater()
        self._dynamic.clear()
        self.update_actions()
        self.addAction(self.free_action)
        self.addAction(self.restore_action)
        self.addSeparator()
        self.addAction(self.save_action)
        names = self._snapshots.names()
        restore = self._submenu("Restore &snapshot")
        forget = self._submenu("F&orget snapshot")
        for name in names:
            act = QAction(name, restore)
            act.triggered.connect(lambda _checked=False, n=name: self._snapshots.restore(n))
            act.setEnabled(not self._snapshots.working)
            restore.addAction(act)
            gone = QAction(name, forget)
            gone.triggered.connect(lambda _checked=False, n=name: self._snapshots.remove(n))
            forget.addAction(gone)
        restore.setEnabled(bool(names))
        forget.setEnabled(bool(names))

    def _submenu(self, label: str) -> QMenu:
        sub = QMenu(label, self)
        self.addMenu(sub)
        self._dynamic.append(sub)
        return sub

    def ask_and_save(self) -> None:
        dialog = QInputDialog(self._window)
        dialog.setWindowTitle("Save the loaded set")
        dialog.setLabelText("Name of the snapshot (an existing one of that name is replaced):")
        dialog.setTextEchoMode(QLineEdit.EchoMode.Normal)
        dialog.textValueSelected.connect(self._save)
        dialog.open()

    def _save(self, name: str) -> None:
        try:
            check_name(name)
        except ValueError as exc:
            self._say(str(exc))
            return
        self._say(self._snapshots.save(name))
