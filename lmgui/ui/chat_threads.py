"""The thread list: every chat thread, newest first, with search; New, Rename, Delete (undone
within a few seconds) and Export of the open thread's branch.

Which thread is open is the pane's business: the list asks ``current()`` and says what the user
chose (``thread_chosen``, ``new_requested``...). Deleting is two steps: the pane hands the thread
over with ``hold_for_undo()``, the list hides it and deletes it for good when the undo time ends.

While lmgui watches several servers, each thread shows its server's label on a second, grey line
(``SERVER_ROLE``); with one server the list looks as it always did.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.urls import display_url
from lmgui.core.chat_store import AsyncChatStore, ExportFormat, ThreadRecord

__all__ = ["SERVER_ROLE", "UNDO_SECONDS", "ThreadList", "server_label"]

UNDO_SECONDS = 8

Spawn = Callable[[Coroutine[Any, Any, Any], str], object]

EXPORTS: tuple[tuple[str, ExportFormat, bool], ...] = (
    ("Markdown…", "md", False),
    ("Markdown with reasoning…", "md", True),
    ("JSON…", "json", False),
    ("JSON with reasoning…", "json", True),
)


SERVER_ROLE = Qt.ItemDataRole.UserRole + 1
"""The label of the thread's server, shown under its title; None while lmgui watches one."""

Index = QModelIndex | QPersistentModelIndex


def server_label(servers: list[tuple[str, str]], server: str) -> str | None:
    """The label shown under a thread's title: its server's, "(not watched now)" after the URL
    when lmgui no longer watches it; None with one server, the thread's own."""
    labels = dict(servers)
    if server in labels:
        return labels[server] if len(servers) > 1 else None
    return f"{display_url(server)}  (not watched now)"


class _ThreadDelegate(QStyledItemDelegate):
    """Title, then the server's label in grey below it when the item has one (both drawn as
    plain text)."""

    def _lines(self, index: Index) -> tuple[str, str | None]:
        label = index.data(SERVER_ROLE)
        return str(index.data(Qt.ItemDataRole.DisplayRole) or ""), (str(label) if label else None)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        size = super().sizeHint(option, index)
        if self._lines(index)[1] is not None:
            size.setHeight(max(size.height(), 2 * option.fontMetrics.height() + 6))
        return size

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        title, label = self._lines(index)
        if label is None:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""  # the background, selection and focus only
        widget = opt.widget
        style = widget.style() if widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        rect: QRect = opt.rect.adjusted(4, 2, -4, -2)
        metrics = opt.fontMetrics
        line = metrics.height()
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        palette: QPalette = opt.palette
        text = palette.color(
            QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        )
        grey = palette.color(
            QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.PlaceholderText
        )
        align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        elide = Qt.TextElideMode.ElideRight
        painter.save()
        painter.setPen(text)
        top = QRect(rect.left(), rect.top(), rect.width(), line)
        painter.drawText(top, align, metrics.elidedText(title, elide, rect.width()))
        painter.setPen(grey)
        bottom = QRect(rect.left(), rect.top() + line, rect.width(), line)
        painter.drawText(bottom, align, metrics.elidedText(label, elide, rect.width()))
        painter.restore()


def export_name(title: str, fmt: ExportFormat) -> str:
    """A file name from a thread's title: letters, digits, spaces, - and _ kept."""
    stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in title)
    return stem + (".md" if fmt == "md" else ".json")


class ThreadList(QWidget):
    thread_chosen = Signal(int)
    """The user picked another thread in the list (its id)."""
    new_requested = Signal()
    rename_requested = Signal()
    delete_requested = Signal()
    restore_requested = Signal(int)
    """Undo: the thread held for deleting (its id) is to be opened again."""
    status = Signal(str)

    def __init__(
        self,
        store: AsyncChatStore,
        spawn: Spawn,
        current: Callable[[], ThreadRecord | None],
        servers: Callable[[], list[tuple[str, str]]],
        parent: QWidget | None = None,
    ) -> None:
        """``servers()``: (URL, label) of the servers lmgui watches now, in order."""
        super().__init__(parent)
        self.store = store
        self._spawn = spawn
        self._current = current
        self._servers = servers
        self._pending_delete: int | None = None
        self.export_dialog: QFileDialog | None = None

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search threads")
        self.search.setAccessibleName("Search threads")
        self.search.setClearButtonEnabled(True)
        self.thread_list = QListWidget()
        self.thread_list.setAccessibleName("Threads")
        self.thread_list.setItemDelegate(_ThreadDelegate(self.thread_list))
        self.new_button = QPushButton("&New")
        self.new_button.setToolTip("Start a new thread (Ctrl+N)")
        self.rename_button = QPushButton("Rena&me")
        self.delete_button = QPushButton("&Delete")
        self.export_button = QToolButton()
        self.export_button.setText("E&xport")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        for label, fmt, reasoning in EXPORTS:
            menu.addAction(label, functools.partial(self.choose_export_file, fmt, reasoning))
        self.export_button.setMenu(menu)
        self.undo_bar = QWidget()
        undo_row = QHBoxLayout(self.undo_bar)
        undo_row.setContentsMargins(0, 0, 0, 0)
        self.undo_label = QLabel()
        self.undo_label.setTextFormat(Qt.TextFormat.PlainText)
        self.undo_button = QPushButton("&Undo")
        undo_row.addWidget(self.undo_label, 1)
        undo_row.addWidget(self.undo_button)
        self.undo_bar.hide()
        self.delete_timer = QTimer(self)
        self.delete_timer.setSingleShot(True)
        self.delete_timer.setInterval(UNDO_SECONDS * 1000)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search)
        layout.addWidget(self.thread_list, 1)
        # Two rows of two: the list is narrow beside the transcript, and four buttons in one row
        # were cut to "enam" and "E...t".
        buttons = QGridLayout()
        buttons.addWidget(self.new_button, 0, 0)
        buttons.addWidget(self.rename_button, 0, 1)
        buttons.addWidget(self.delete_button, 1, 0)
        buttons.addWidget(self.export_button, 1, 1)
        self.export_button.setSizePolicy(self.delete_button.sizePolicy())
        layout.addLayout(buttons)
        layout.addWidget(self.undo_bar)

        self.search.textChanged.connect(
            lambda _t: self._spawn(self.refresh(), "Searching the threads")
        )
        self.thread_list.currentItemChanged.connect(self._on_thread_list_current_changed)
        self.new_button.clicked.connect(self.new_requested)
        self.rename_button.clicked.connect(self.rename_requested)
        self.delete_button.clicked.connect(self.delete_requested)
        self.undo_button.clicked.connect(self.undo_delete)
        self.delete_timer.timeout.connect(
            lambda: self._spawn(self.commit_delete(), "Deleting the thread")
        )

    def set_thread_open(self, has: bool) -> None:
        for w in (self.rename_button, self.delete_button, self.export_button):
            w.setEnabled(has)

    # ------------------------------------------------------------------ the list

    async def refresh(self) -> None:
        """The threads matching the search, the open one selected."""
        threads = await self.store.threads(self.search.text().strip())
        current = self._current()
        servers = self._servers()
        self.thread_list.blockSignals(True)
        self.thread_list.clear()
        for t in threads:
            if t.id == self._pending_delete:
                continue
            item = QListWidgetItem(t.title)  # plain text
            item.setData(Qt.ItemDataRole.UserRole, t.id)
            label = server_label(servers, t.server)
            item.setData(SERVER_ROLE, label)
            if label is not None:
                item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{t.title}, on {label}")
            item.setToolTip(f"{t.model}\n{t.server}")
            self.thread_list.addItem(item)
            if current is not None and t.id == current.id:
                self.thread_list.setCurrentItem(item)
        self.thread_list.blockSignals(False)

    def _on_thread_list_current_changed(self, item: QListWidgetItem | None) -> None:
        if item is not None:
            thread_id = int(item.data(Qt.ItemDataRole.UserRole))
            current = self._current()
            if current is None or current.id != thread_id:
                self.thread_chosen.emit(thread_id)

    # ------------------------------------------------------------------ delete, with undo

    def hold_for_undo(self, record: ThreadRecord) -> None:
        """Hide the thread at once; it is deleted for good unless undone within a few seconds.
        A thread still held from before is deleted now."""
        if self._pending_delete is not None:
            self.delete_timer.stop()
            self._spawn(self.commit_delete(), "Deleting the thread")
        self._pending_delete = record.id
        self.undo_label.setText(f"Deleted \u201c{record.title}\u201d.")
        self.undo_bar.show()
        self.delete_timer.start()
        self._spawn(self.refresh(), "Listing the threads")

    def undo_delete(self) -> None:
        thread_id, self._pending_delete = self._pending_delete, None
        self.delete_timer.stop()
        self.undo_bar.hide()
        if thread_id is not None:
            self.restore_requested.emit(thread_id)
            self._spawn(self.refresh(), "Listing the threads")

    async def commit_delete(self) -> None:
        """Delete the held thread for good (the undo time ran out, or lmgui is closing)."""
        self.delete_timer.stop()
        thread_id, self._pending_delete = self._pending_delete, None
        self.undo_bar.hide()
        if thread_id is not None:
            await self.store.delete_thread(thread_id)

    # ------------------------------------------------------------------ export

    def choose_export_file(self, fmt: ExportFormat, reasoning: bool) -> QFileDialog | None:
        """Ask where to save the open thread's branch; the export runs once a file is chosen.
        The dialog is opened, not exec'd: no event loop is nested inside the running one."""
        record = self._current()
        if record is None:
            return None
        dialog = QFileDialog(self, "Export branch", export_name(record.title, fmt))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(
            functools.partial(self._on_export_file_selected, record.id, fmt, reasoning)
        )
        dialog.finished.connect(self._on_export_dialog_finished)
        self.export_dialog = dialog
        dialog.open()
        return dialog

    def _on_export_dialog_finished(self, _result: int) -> None:
        self.export_dialog = None

    def _on_export_file_selected(
        self, thread_id: int, fmt: ExportFormat, reasoning: bool, path: str
    ) -> None:
        if path:
            self._spawn(self.export(thread_id, Path(path), fmt, reasoning), "Exporting the branch")

    async def export(self, thread_id: int, path: Path, fmt: ExportFormat, reasoning: bool) -> None:
        """Write the thread's branch to ``path``: built on the store's thread, written in
        another, so neither blocks the GUI."""
        text = await self.store.export_branch(thread_id, fmt=fmt, reasoning=reasoning)
        await asyncio.to_thread(path.write_text, text, encoding="utf-8")
        self.status.emit(f"Exported to {path}.")
