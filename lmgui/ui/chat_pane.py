"""The chat pane: threads on the left; the open thread's branch, its settings and the input.

It never holds HTTP: a ``ChatSession`` (core) talks to the server and the store; the pane shows
what the session signals and turns clicks into calls on it. Store calls run on the store's worker
thread, awaited from tasks the pane keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import mimetypes
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.client import LMStudioClient
from lmgui.api.records import Model
from lmgui.core.chat import IMAGE_LIMIT_BYTES, ChatSession, ThreadSettings
from lmgui.core.chat_export import branch_json, branch_markdown, transcript
from lmgui.core.chat_store import AsyncChatStore, ThreadRecord, TurnRecord
from lmgui.core.format import human_bytes, human_count
from lmgui.ui.chat_view import SiblingInfo, TranscriptView

__all__ = ["ChatPane", "MessageEdit"]

log = logging.getLogger(__name__)

NEW_TITLE = "New thread"
UNDO_SECONDS = 8


class MessageEdit(QPlainTextEdit):
    """The input: Ctrl+Enter sends; pasted or dropped images become attachments."""

    send_requested = Signal()
    image_added = Signal(str, bytes)
    """(mime, data)"""

    def keyPressEvent(self, event: Any) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and (
            event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            self.send_requested.emit()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return source.hasImage() or source.hasUrls() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        if source.hasImage():
            image = QImage(source.imageData())
            data = QByteArray()
            buffer = QBuffer(data)
            buffer.open(QIODevice.OpenModeFlag.WriteOnly)
            image.save(buffer, b"PNG")
            self.image_added.emit("image/png", bytes(data.data()))
            return
        if source.hasUrls():
            for url in source.urls():
                path = Path(url.toLocalFile())
                mime = mimetypes.guess_type(path.name)[0] or ""
                if path.is_file() and mime.startswith("image/"):
                    self.image_added.emit(mime, path.read_bytes())
            return
        super().insertFromMimeData(source)


class ChatPane(QWidget):
    status = Signal(str)
    """A sentence for the window's status bar."""

    def __init__(
        self,
        store: AsyncChatStore,
        client: Callable[[], LMStudioClient],
        server_url: Callable[[], str],
        models: Callable[[], list[Model]],
        *,
        on_used: Callable[[str], None] = lambda instance_id: None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self._client = client
        self._server_url = server_url
        self._models = models
        self._on_used = on_used
        self.session: ChatSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._images: list[tuple[str, bytes]] = []
        self._pending_delete: int | None = None

        # threads
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search threads")
        self.search.setAccessibleName("Search threads")
        self.search.setClearButtonEnabled(True)
        self.thread_list = QListWidget()
        self.thread_list.setAccessibleName("Threads")
        self.new_button = QPushButton("&New")
        self.new_button.setToolTip("Start a new thread (Ctrl+N)")
        self.rename_button = QPushButton("Rena&me")
        self.delete_button = QPushButton("&Delete")
        self.export_button = QToolButton()
        self.export_button.setText("E&xport")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        for label, fmt, reasoning in (
            ("Markdown…", "md", False),
            ("Markdown with reasoning…", "md", True),
            ("JSON…", "json", False),
            ("JSON with reasoning…", "json", True),
        ):
            menu.addAction(label, functools.partial(self._on_export_chosen, fmt, reasoning))
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
        self._delete_timer = QTimer(self)
        self._delete_timer.setSingleShot(True)
        self._delete_timer.setInterval(UNDO_SECONDS * 1000)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.search)
        left_layout.addWidget(self.thread_list, 1)
        buttons = QHBoxLayout()
        for b in (self.new_button, self.rename_button, self.delete_button, self.export_button):
            buttons.addWidget(b)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.undo_bar)

        # the open thread
        self.model_box = QComboBox()
        self.model_box.setAccessibleName("Model or instance to chat with")
        self.model_box.setMinimumContentsLength(24)
        self.system_button = QPushButton("S&ystem prompt…")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(-0.1, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setSpecialValueText("temp: default")
        self.temperature.setAccessibleName("Temperature")
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(0, 1_000_000)
        self.max_tokens.setSpecialValueText("max tokens: default")
        self.max_tokens.setAccessibleName("Maximum output tokens")
        self.reasoning = QComboBox()
        self.reasoning.setAccessibleName("Reasoning")
        self.store_box = QCheckBox("S&tore")
        self.store_box.setToolTip(
            "Keep turns on the server so they can be continued. Off: no response ids, and a turn "
            "cannot be continued."
        )
        header = QHBoxLayout()
        header.addWidget(self.model_box, 2)
        header.addWidget(self.system_button)
        header.addWidget(self.temperature)
        header.addWidget(self.max_tokens)
        header.addWidget(self.reasoning)
        header.addWidget(self.store_box)

        self.lost_bar = QWidget()
        lost_row = QHBoxLayout(self.lost_bar)
        lost_row.setContentsMargins(0, 0, 0, 0)
        self.lost_label = QLabel()
        self.lost_label.setTextFormat(Qt.TextFormat.PlainText)
        self.lost_label.setWordWrap(True)
        self.lost_label.setStyleSheet("color: #8a5a00;")
        self.reseed_button = QPushButton("Start a new thread with this transcript")
        lost_row.addWidget(self.lost_label, 1)
        lost_row.addWidget(self.reseed_button)
        self.lost_bar.hide()

        self.view = TranscriptView()
        self.load_bar = QProgressBar()
        self.load_bar.setRange(0, 100)
        self.load_bar.setFormat("Loading the model… %p%")
        self.load_bar.setAccessibleName("Model load progress")
        self.load_bar.hide()
        self.context_meter = QProgressBar()
        self.context_meter.setAccessibleName("Context used")
        self.context_meter.setTextVisible(True)
        self.context_meter.setFormat("context: -")
        self.input = MessageEdit()
        self.input.setPlaceholderText("Message (Ctrl+Enter to send)")
        self.input.setAccessibleName("Message")
        self.input.setMaximumHeight(110)
        self.attach_button = QPushButton("&Image…")
        self.attach_button.setToolTip("Attach an image (vision models), or paste or drop one")
        self.attachments = QLabel()
        self.attachments.setTextFormat(Qt.TextFormat.PlainText)
        self.clear_images = QToolButton()
        self.clear_images.setText("✕")
        self.clear_images.setToolTip("Remove the attached images")
        self.send_button = QPushButton("&Send")
        self.send_button.setToolTip("Send (Ctrl+Enter); Esc stops an answer")
        input_row = QHBoxLayout()
        input_row.addWidget(self.attach_button)
        input_row.addWidget(self.attachments, 1)
        input_row.addWidget(self.clear_images)
        input_row.addWidget(self.context_meter, 1)
        input_row.addWidget(self.send_button)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(header)
        right_layout.addWidget(self.lost_bar)
        right_layout.addWidget(self.view, 1)
        right_layout.addWidget(self.load_bar)
        right_layout.addWidget(self.input)
        right_layout.addLayout(input_row)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 4)
        left.setMinimumWidth(150)
        self.splitter.setSizes([180, 720])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.splitter)

        self.search.textChanged.connect(lambda _t: self._spawn(self.refresh_threads()))
        self.thread_list.currentItemChanged.connect(self._on_thread_list_current_changed)
        self.new_button.clicked.connect(lambda: self._spawn(self.new_thread()))
        self.rename_button.clicked.connect(self._on_rename_clicked)
        self.delete_button.clicked.connect(self.delete_current)
        self.undo_button.clicked.connect(self.undo_delete)
        self._delete_timer.timeout.connect(lambda: self._spawn(self._commit_delete()))
        self.model_box.activated.connect(lambda _i: self._spawn(self._save_settings()))
        self.system_button.clicked.connect(self._on_system_clicked)
        self.temperature.editingFinished.connect(lambda: self._spawn(self._save_settings()))
        self.max_tokens.editingFinished.connect(lambda: self._spawn(self._save_settings()))
        self.reasoning.activated.connect(lambda _i: self._spawn(self._save_settings()))
        self.store_box.toggled.connect(lambda _on: self._spawn(self._save_settings()))
        self.view.action.connect(self._on_view_action)
        self.input.send_requested.connect(self.send)
        self.input.image_added.connect(self.add_image)
        self.attach_button.clicked.connect(self._on_attach_clicked)
        self.clear_images.clicked.connect(self._clear_images)
        self.send_button.clicked.connect(self._on_send_clicked)
        self.reseed_button.clicked.connect(lambda: self._spawn(self.reseed()))
        QShortcut(
            QKeySequence("Escape"),
            self,
            self.stop,
            context=Qt.ShortcutContext.WidgetWithChildrenShortcut,
        )
        QShortcut(
            QKeySequence.StandardKey.New,
            self,
            lambda: self._spawn(self.new_thread()),
            context=Qt.ShortcutContext.WidgetWithChildrenShortcut,
        )
        self._system_prompt = ""
        self._picker_entries: list[tuple[str, str]] = []
        self._picker_dirty = True
        self._picker_timer = QTimer(self)
        self._picker_timer.setSingleShot(True)
        self._picker_timer.setInterval(0)
        self._picker_timer.timeout.connect(self._on_picker_timer_timeout)
        self._update_images()
        self._set_busy(False)
        self._enable_thread_controls()

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("chat task failed", exc_info=exc)
            self.status.emit(f"Chat: {exc}")

    async def aclose(self) -> None:
        if self.session is not None:
            self.session.stop()
            await self.session.wait()
        if self._pending_delete is not None:
            self._delete_timer.stop()
            await self._commit_delete()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):  # closing: every task ends, however
                await t

    async def settle(self) -> None:
        """Wait for the pane's own tasks (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ models

    def models_changed(self) -> None:
        """After a poll: refresh the picker later, in its own slice of the event loop, and only
        while the pane is visible (a 2000-model picker costs a few milliseconds)."""
        self._picker_dirty = True
        self._picker_timer.start()

    def _on_picker_timer_timeout(self) -> None:
        if self.isVisible():
            self.refresh_models()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._picker_dirty:
            self.refresh_models()

    def refresh_models(self) -> None:
        """Loaded instances first, then every other LLM (which loads on its first message)."""
        self._picker_dirty = False
        current = self.model_box.currentData()
        models = self._models()
        entries = [(f"{i.id}  (loaded)", i.id) for m in models for i in m.instances]
        entries += [
            (f"{m.display_name}  ({m.key}, loads on first message)", m.key)
            for m in models
            if m.type == "llm" and not m.instances
        ]
        if entries == self._picker_entries and self.model_box.findData(current) >= 0:
            return
        self._picker_entries = entries
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for label, data in entries:
            self.model_box.addItem(label, data)
        if current is not None and self.model_box.findData(current) < 0:
            self.model_box.addItem(f"{current}  (not on the server now)", current)
        self.model_box.setCurrentIndex(max(0, self.model_box.findData(current)))
        self.model_box.blockSignals(False)
        self._refresh_reasoning()

    def _model_of(self, name: str) -> Model | None:
        for m in self._models():
            if m.key == name or any(i.id == name for i in m.instances):
                return m
        return None

    def _refresh_reasoning(self) -> None:
        m = self._model_of(str(self.model_box.currentData() or ""))
        keep = self.reasoning.currentData()
        self.reasoning.clear()
        self.reasoning.addItem("reasoning: default", None)
        for option in m.reasoning_options if m else ():
            self.reasoning.addItem(f"reasoning: {option}", option)
        self.reasoning.setVisible(bool(m and m.reasoning_options))
        self.reasoning.setCurrentIndex(max(0, self.reasoning.findData(keep)))
        vision = bool(m and m.vision)
        self.attach_button.setEnabled(vision)
        if not vision:
            self.attach_button.setToolTip("This model does not take images")
        else:
            self.attach_button.setToolTip("Attach an image, or paste or drop one")

    # ------------------------------------------------------------------ threads

    async def refresh_threads(self) -> None:
        threads = await self.store.run(self.store.store.threads, self.search.text().strip())
        current = self.session.record.id if self.session else None
        self.thread_list.blockSignals(True)
        self.thread_list.clear()
        for t in threads:
            if t.id == self._pending_delete:
                continue
            item = QListWidgetItem(t.title)  # plain text
            item.setData(Qt.ItemDataRole.UserRole, t.id)
            item.setToolTip(f"{t.model}\n{t.server}")
            self.thread_list.addItem(item)
            if t.id == current:
                self.thread_list.setCurrentItem(item)
        self.thread_list.blockSignals(False)

    def _on_thread_list_current_changed(self, item: QListWidgetItem | None) -> None:
        if item is not None:
            thread_id = int(item.data(Qt.ItemDataRole.UserRole))
            if self.session is None or self.session.record.id != thread_id:
                self._spawn(self.open_thread(thread_id))

    async def new_thread(
        self,
        model: str | None = None,
        settings: ThreadSettings | None = None,
        title: str = NEW_TITLE,
    ) -> ThreadRecord:
        model = model or str(self.model_box.currentData() or "")
        if not model:
            models = self._models()
            model = next((m.key for m in models if m.type == "llm"), "")
        base = settings or (self.session.settings if self.session else ThreadSettings())
        record = await self.store.run(
            self.store.store.create_thread, title, self._server_url(), model, base.to_dict()
        )
        await self.open_thread(record.id)
        await self.refresh_threads()
        self.input.setFocus()
        return record

    async def open_thread(self, thread_id: int) -> None:
        if self.session is not None and self.session.busy:
            self.status.emit("An answer is still streaming; stop it first (Esc).")
            return
        record = await self.store.run(self.store.store.thread, thread_id)
        session = ChatSession(self.store, self._client, record, on_used=self._on_used, parent=self)
        session.turn_started.connect(self._on_session_turn_started)
        session.delta.connect(self._on_session_delta)
        session.item_added.connect(self._on_session_item_added)
        session.model_loading.connect(self._on_session_model_loading)
        session.turn_finished.connect(self._on_session_turn_finished)
        session.continuation_lost.connect(self._on_session_continuation_lost)
        session.busy_changed.connect(self._set_busy)
        old, self.session = self.session, session
        if old is not None:
            old.deleteLater()
        self.lost_bar.hide()
        self._show_settings(session.settings, record.model)
        await self.render_branch()
        self._enable_thread_controls()

    async def render_branch(self) -> None:
        if self.session is None:
            return
        turns = await self.session.branch()
        siblings = await self._siblings(turns)
        self.view.show_branch(turns, siblings)
        self._update_context(turns[-1] if turns else None)

    async def _siblings(self, turns: list[TurnRecord]) -> dict[int, SiblingInfo]:
        if self.session is None or not turns:
            return {}
        every = await self.store.run(self.store.store.turns, self.session.record.id)
        by_parent: dict[int | None, list[int]] = {}
        for t in every:
            by_parent.setdefault(t.parent_id, []).append(t.id)
        out = {}
        for t in turns:
            group = by_parent.get(t.parent_id, [t.id])
            i = group.index(t.id)
            out[t.id] = SiblingInfo(
                i + 1,
                len(group),
                group[i - 1] if i > 0 else None,
                group[i + 1] if i + 1 < len(group) else None,
            )
        return out

    async def _switch_to_sibling(self, turn_id: int) -> None:
        """Show the branch through ``turn_id``, down to its newest leaf."""
        if self.session is None:
            return
        every = await self.store.run(self.store.store.turns, self.session.record.id)
        children: dict[int, list[int]] = {}
        for t in every:
            if t.parent_id is not None:
                children.setdefault(t.parent_id, []).append(t.id)
        tip = turn_id
        while children.get(tip):
            tip = children[tip][-1]
        await self.session.continue_from(tip)
        await self.render_branch()

    def _on_rename_clicked(self) -> None:
        if self.session is None:
            return
        title, ok = QInputDialog.getText(
            self, "Rename thread", "Title:", QLineEdit.EchoMode.Normal, self.session.record.title
        )
        if ok and title.strip():
            self._spawn(self.rename(title.strip()))

    async def rename(self, title: str) -> None:
        if self.session is not None:
            await self.store.run(self.store.store.rename_thread, self.session.record.id, title)
            self.session.record = await self.store.run(
                self.store.store.thread, self.session.record.id
            )
            await self.refresh_threads()

    def delete_current(self) -> None:
        """Hide the thread at once; it is deleted for good unless undone within a few seconds."""
        if self.session is None or self.session.busy:
            return
        if self._pending_delete is not None:
            self._delete_timer.stop()
            self._spawn(self._commit_delete())
        self._pending_delete = self.session.record.id
        self.undo_label.setText(f"Deleted \u201c{self.session.record.title}\u201d.")
        self.undo_bar.show()
        self._delete_timer.start()
        self.session = None
        self.view.show_branch([], {})
        self._enable_thread_controls()
        self._spawn(self.refresh_threads())

    def undo_delete(self) -> None:
        thread_id, self._pending_delete = self._pending_delete, None
        self._delete_timer.stop()
        self.undo_bar.hide()
        if thread_id is not None:
            self._spawn(self.open_thread(thread_id))
            self._spawn(self.refresh_threads())

    async def _commit_delete(self) -> None:
        thread_id, self._pending_delete = self._pending_delete, None
        self.undo_bar.hide()
        if thread_id is not None:
            await self.store.run(self.store.store.delete_thread, thread_id)

    def _enable_thread_controls(self) -> None:
        has = self.session is not None
        for w in (
            self.rename_button,
            self.delete_button,
            self.export_button,
            self.send_button,
            self.input,
            self.model_box,
        ):
            w.setEnabled(has)

    # ------------------------------------------------------------------ settings

    def _show_settings(self, s: ThreadSettings, model: str) -> None:
        self.refresh_models()
        if self.model_box.findData(model) < 0:
            self.model_box.addItem(f"{model}  (not on the server now)", model)
        self.model_box.setCurrentIndex(self.model_box.findData(model))
        self._refresh_reasoning()
        self._system_prompt = s.system_prompt or ""
        self.system_button.setText("S&ystem prompt ✓" if self._system_prompt else "S&ystem prompt…")
        self.temperature.setValue(s.temperature if s.temperature is not None else -0.1)
        self.max_tokens.setValue(s.max_output_tokens or 0)
        self.reasoning.setCurrentIndex(max(0, self.reasoning.findData(s.reasoning)))
        self.store_box.blockSignals(True)
        self.store_box.setChecked(s.store)
        self.store_box.blockSignals(False)

    def current_settings(self) -> ThreadSettings:
        temp = self.temperature.value()
        return ThreadSettings(
            system_prompt=self._system_prompt or None,
            temperature=None if temp < 0 else round(temp, 2),
            max_output_tokens=self.max_tokens.value() or None,
            reasoning=self.reasoning.currentData(),
            store=self.store_box.isChecked(),
        )

    async def _save_settings(self) -> None:
        self._refresh_reasoning()
        if self.session is not None:
            await self.session.set_settings(
                self.current_settings(), model=str(self.model_box.currentData() or "") or None
            )
            if not self.store_box.isChecked():
                self.status.emit(
                    "Store is off: answers get no response id and cannot be continued."
                )

    def _on_system_clicked(self) -> None:
        text, ok = QInputDialog.getMultiLineText(
            self, "System prompt", "System prompt for this thread:", self._system_prompt
        )
        if ok:
            self.set_system_prompt(text)

    def set_system_prompt(self, text: str) -> None:
        self._system_prompt = text.strip()
        self.system_button.setText("S&ystem prompt ✓" if self._system_prompt else "S&ystem prompt…")
        self._spawn(self._save_settings())

    # ------------------------------------------------------------------ images

    def add_image(self, mime: str, data: bytes) -> None:
        if len(data) > IMAGE_LIMIT_BYTES:
            self.status.emit(
                f"That image is {human_bytes(len(data))}; images up to "
                f"{IMAGE_LIMIT_BYTES // 2**20} MB can be sent."
            )
            return
        self._images.append((mime, data))
        self._update_images()

    def _on_attach_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Attach images", "", "Images (*.png *.jpg *.jpeg *.webp *.gif)"
        )
        for p in paths:
            path = Path(p)
            self.add_image(mimetypes.guess_type(path.name)[0] or "image/png", path.read_bytes())

    def _clear_images(self) -> None:
        self._images.clear()
        self._update_images()

    def _update_images(self) -> None:
        n = len(self._images)
        size = human_bytes(sum(len(d) for _, d in self._images))
        self.attachments.setText(f"{n} image{'s' if n > 1 else ''} attached ({size})" if n else "")
        self.clear_images.setVisible(bool(n))

    # ------------------------------------------------------------------ sending

    def _on_send_clicked(self) -> None:
        if self.session is not None and self.session.busy:
            self.stop()
        else:
            self.send()

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if self.session is None or self.session.busy or not (text or self._images):
            return
        try:
            self.session.send(text, list(self._images))
        except ValueError as exc:
            self.status.emit(str(exc))
            return
        self.input.clear()
        self._clear_images()
        self.lost_bar.hide()

    def stop(self) -> None:
        if self.session is not None and self.session.busy:
            self.session.stop()

    def _set_busy(self, busy: bool) -> None:
        self.send_button.setText("&Stop" if busy else "&Send")
        self.send_button.setToolTip("Stop the answer (Esc)" if busy else "Send (Ctrl+Enter)")

    def _on_session_turn_started(self, turn: TurnRecord) -> None:
        self.view.begin_stream(turn)
        if self.session is not None and self.session.record.title == NEW_TITLE:
            title = " ".join(turn.user_text.split())[:48] or "Image"
            self._spawn(self.rename(title))

    def _on_session_delta(self, turn_id: int, kind: str, text: str) -> None:
        self.view.append_delta(kind, text)

    def _on_session_item_added(self, turn_id: int, item: dict[str, Any]) -> None:
        if item.get("type") == "tool_call":
            self.view.note(f"⚙ tool call {item.get('tool')}")
        else:
            self.view.note(f"⚠ invalid tool call: {item.get('reason')}")

    def _on_session_model_loading(self, turn_id: int, progress: float) -> None:
        self.load_bar.show()
        self.load_bar.setValue(int(progress * 100))
        if progress >= 1.0:
            self.load_bar.hide()

    def _on_session_turn_finished(self, turn: TurnRecord) -> None:
        self.load_bar.hide()
        self._spawn(self._finish(turn))

    async def _finish(self, turn: TurnRecord) -> None:
        turns = await self.session.branch() if self.session else [turn]
        self.view.end_stream(turn, await self._siblings(turns))
        self._update_context(turn)
        await self.refresh_threads()

    def _on_session_continuation_lost(self, turn_id: int, message: str) -> None:
        self.lost_label.setText(message)
        self.lost_bar.show()
        self.status.emit(message)

    async def reseed(self) -> None:
        """A new thread whose system prompt carries the lost branch's transcript."""
        if self.session is None:
            return
        turns = [t for t in await self.session.branch() if t.status == "complete"]
        s = self.session.settings
        seeded = (s.system_prompt + "\n\n" if s.system_prompt else "") + (
            "This conversation continues an earlier one. Its transcript so far:\n\n"
            + transcript(turns)
        )
        settings = ThreadSettings(seeded, s.temperature, s.max_output_tokens, s.reasoning, s.store)
        await self.new_thread(
            self.session.record.model, settings, f"{self.session.record.title} (continued)"
        )
        self.lost_bar.hide()

    # ------------------------------------------------------------------ per-turn actions

    def _on_view_action(self, what: str, turn_id: int) -> None:
        turn = self.view.turn(turn_id)
        if what == "reasoning":
            self.view.expanded ^= {turn_id}
            self._spawn(self.render_branch())
        elif what == "copy" and turn is not None:
            QGuiApplication.clipboard().setText(turn.text)
            self.status.emit("Copied the answer.")
        elif what == "copy-id" and turn is not None and turn.response_id:
            QGuiApplication.clipboard().setText(turn.response_id)
            self.status.emit(f"Copied {turn.response_id}.")
        elif what == "continue":
            self._spawn(self.continue_from(turn_id))
        elif what in ("sibling-prev", "sibling-next"):
            self._spawn(self._sibling(turn_id, what == "sibling-next"))

    async def continue_from(self, turn_id: int) -> None:
        if self.session is not None:
            await self.session.continue_from(turn_id)
            await self.render_branch()
            self.status.emit("The next message starts a branch from that answer.")
            self.input.setFocus()

    async def _sibling(self, turn_id: int, forward: bool) -> None:
        turns = await self.session.branch() if self.session else []
        info = (await self._siblings(turns)).get(turn_id)
        target = info.next if (info and forward) else info.previous if info else None
        if target is not None:
            await self._switch_to_sibling(target)

    # ------------------------------------------------------------------ context and export

    def _update_context(self, turn: TurnRecord | None) -> None:
        used = turn.stats.get("input_tokens") if turn else None
        m = self._model_of(turn.instance_id or turn.model) if turn else None
        ctx = None
        if turn and m:
            inst = next((i for i in m.instances if i.id == turn.instance_id), None)
            ctx = inst.context_length if inst else None
        if used is None or not ctx:
            self.context_meter.setRange(0, 1)
            self.context_meter.setValue(0)
            self.context_meter.setFormat(
                "context: -" if used is None else f"context: {used} tokens"
            )
            return
        self.context_meter.setRange(0, ctx)
        self.context_meter.setValue(min(used, ctx))
        near = used >= 0.85 * ctx
        self.context_meter.setFormat(
            f"context: {used} of {human_count(ctx)} tokens" + (" — nearly full" if near else "")
        )
        self.context_meter.setStyleSheet(
            "QProgressBar::chunk { background: #d64545; }" if near else ""
        )
        if near:
            self.status.emit("The context is nearly full: older turns will soon be cut off.")

    def _on_export_chosen(self, fmt: str, reasoning: bool) -> None:
        self._spawn(self._export_dialog(fmt, reasoning))

    async def export_text(self, fmt: str, reasoning: bool) -> str:
        if self.session is None:
            return ""
        turns = await self.session.branch()
        record = self.session.record
        return (branch_markdown if fmt == "md" else branch_json)(record, turns, reasoning=reasoning)

    async def _export_dialog(self, fmt: str, reasoning: bool) -> None:
        if self.session is None:
            return
        suffix = ".md" if fmt == "md" else ".json"
        name = "".join(c if c.isalnum() or c in " -_" else "_" for c in self.session.record.title)
        path, _ = QFileDialog.getSaveFileName(self, "Export branch", name + suffix)
        if path:
            text = await self.export_text(fmt, reasoning)
            await asyncio.to_thread(Path(path).write_text, text, encoding="utf-8")
            self.status.emit(f"Exported to {path}.")
