"""The chat pane: the thread list on the left; the open thread's settings bar, its branch (the
transcript) and the composer on the right.

``ChatPane`` composes the parts and owns the open thread's ``ChatSession`` (core), which talks to
the server and the store: the pane shows what the session signals and turns clicks into calls on
it. Its parts are ``ThreadList`` (chat_threads), ``ThreadSettingsBar`` (chat_settings),
``TranscriptView`` (chat_view) and ``Composer`` (chat_composer, with the context meter). All
background work runs on the pane's one ``TaskSet``; a failure is said on ``status``.

Each thread belongs to a server (``ThreadRecord.server``, a normalized URL): its session asks
``client_for`` for that server's client at each request, the picker lists that server's models,
and a thread with no turns yet may move to another server (after the first turn its answers live
there). lmgui may watch several servers; ``servers()`` says which, in order, with their labels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.client import LMStudioClient
from lmgui.api.records import Model
from lmgui.core.branches import continued_title
from lmgui.core.chat import ChatSession, ThreadSettings, item_note
from lmgui.core.chat_context import context_use, find_model
from lmgui.core.chat_store import AsyncChatStore, ExportFormat, ThreadRecord, TurnRecord
from lmgui.core.tasks import TaskSet
from lmgui.qtmodels.model_picker import default_pick
from lmgui.ui.chat_composer import Composer
from lmgui.ui.chat_settings import ThreadSettingsBar
from lmgui.ui.chat_threads import ThreadList
from lmgui.ui.chat_view import TranscriptView

__all__ = ["NEW_TITLE", "ChatPane"]

T = TypeVar("T")

NEW_TITLE = "New thread"
"""A new thread's title, until its first message names it."""


class ChatPane(QWidget):
    status = Signal(str)
    """A sentence for the window's status bar."""

    def __init__(
        self,
        store: AsyncChatStore,
        client_for: Callable[[str], LMStudioClient | None],
        servers: Callable[[], list[tuple[str, str]]],
        models_for: Callable[[str], list[Model]],
        *,
        current_server: Callable[[], str],
        on_used: Callable[[str, str], None] = lambda url, instance_id: None,
        parent: QWidget | None = None,
    ) -> None:
        """``client_for(url)``: that server's client now, None when lmgui no longer watches it
        (asked at each request: a new token replaces the client); ``servers()``: (normalized
        URL, label) of the servers lmgui watches now, in order; ``models_for(url)``: that
        server's models now; ``current_server()``: the server of the window's selected row, a
        new thread's server; ``on_used(url, instance_id)``: lmgui's chat used that instance."""
        super().__init__(parent)
        self.store = store
        self._client_for = client_for
        self._servers = servers
        self._models_for = models_for
        self._current_server = current_server
        self._on_used = on_used
        self.session: ChatSession | None = None
        self.tasks = TaskSet("chat", self.status.emit)
        self._closing = False

        self.threads = ThreadList(store, self.spawn, self._current_record, servers)
        self.settings_bar = ThreadSettingsBar(models_for, servers)
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
        self.composer = Composer(self.spawn)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.settings_bar)
        right_layout.addWidget(self.lost_bar)
        right_layout.addWidget(self.view, 1)
        right_layout.addWidget(self.load_bar)
        right_layout.addWidget(self.composer)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.threads)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 4)
        self.threads.setMinimumWidth(150)
        self.splitter.setSizes([180, 720])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.splitter)

        self.threads.thread_chosen.connect(self._on_threads_thread_chosen)
        self.threads.new_requested.connect(self._on_new_requested)
        self.threads.rename_requested.connect(self._on_threads_rename_requested)
        self.threads.delete_requested.connect(self.delete_current)
        self.threads.restore_requested.connect(self._on_threads_thread_chosen)
        self.threads.status.connect(self.status)
        self.settings_bar.edited.connect(
            lambda: self.spawn(self._save_settings(), "Saving the thread's settings")
        )
        self.settings_bar.model_changed.connect(self._on_settings_bar_model_changed)
        self.settings_bar.server_picked.connect(self._on_settings_bar_server_picked)
        self.view.action.connect(self._on_view_action)
        self.composer.send_requested.connect(self.send)
        self.composer.send_clicked.connect(self._on_composer_send_clicked)
        self.composer.problem.connect(self.status)
        self.reseed_button.clicked.connect(
            lambda: self.spawn(self.reseed(), "Starting a new thread with the transcript")
        )
        shortcut = Qt.ShortcutContext.WidgetWithChildrenShortcut
        QShortcut(QKeySequence("Escape"), self, self.stop, context=shortcut)
        QShortcut(QKeySequence.StandardKey.New, self, self._on_new_requested, context=shortcut)
        self._enable_thread_controls()

    # ------------------------------------------------------------------ tasks

    def spawn(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T] | None:
        """Run ``coro`` on the pane's task set (``what`` names it in a failure). Once the pane
        is closing nothing starts: a late signal during shutdown is dropped, not an error."""
        if self._closing:
            coro.close()
            return None
        return self.tasks.spawn(coro, what)

    def chat_with(
        self, target: str | None = None, server: str | None = None
    ) -> asyncio.Task[ThreadRecord] | None:
        """A new thread on ``server`` (None: ``current_server()``) with ``target`` (an instance
        id or a model key there; None: the model picked now, else the server's first), from the
        window's Chat command or the tray."""
        self.refresh_models()
        what = f"Opening a chat with {target}" if target else "Starting a new thread"
        return self.spawn(self.new_thread(target, server=server), what)

    async def settle(self) -> None:
        """Wait for the pane's own tasks (tests and shutdown)."""
        await self.tasks.settle()

    async def aclose(self) -> None:
        """Stop the answer (it is kept), delete a thread still held for undo, end every task."""
        self._closing = True
        if self.session is not None:
            await self.session.aclose()
        await self.threads.commit_delete()
        await self.tasks.aclose()

    # ------------------------------------------------------------------ servers and models

    def servers_changed(self) -> None:
        """lmgui watches other servers now (added, removed, renamed, switched on or off): the
        Server combo, the picker and the thread list's server labels follow."""
        self.settings_bar.servers_changed()
        self.spawn(self.refresh_threads(), "Listing the threads")

    def models_changed(self, server: str | None = None) -> None:
        """After a poll of ``server`` (None: any): the picker is refreshed later, and only while
        it is visible, when it lists that server's models."""
        if server is None or server == self.settings_bar.server:
            self.settings_bar.models_changed()

    def refresh_models(self) -> None:
        self.settings_bar.refresh_models()

    def _on_settings_bar_model_changed(self, model: Model | None) -> None:
        self.composer.set_vision(bool(model and model.vision))

    # ------------------------------------------------------------------ threads

    def _current_record(self) -> ThreadRecord | None:
        return self.session.record if self.session is not None else None

    async def refresh_threads(self) -> None:
        await self.threads.refresh()

    def _on_threads_thread_chosen(self, thread_id: int) -> None:
        self.spawn(self.open_thread(thread_id), "Opening the thread")

    def _on_new_requested(self) -> None:
        self.spawn(self.new_thread(), "Starting a new thread")

    async def new_thread(
        self,
        model: str | None = None,
        settings: ThreadSettings | None = None,
        title: str = NEW_TITLE,
        *,
        server: str | None = None,
    ) -> ThreadRecord:
        """A thread on ``server`` (else ``current_server()``) with ``model`` (else the one
        picked for the open thread when it is on that server, else the server's first loaded
        LLM or LLM), with ``settings`` (else the open thread's), opened."""
        server = server or self._current_server() or next((u for u, _ in self._servers()), "")
        if not server:
            raise ValueError("lmgui watches no server: turn one on in Settings first.")
        if not model and self.session is not None and self.session.record.server == server:
            model = self.settings_bar.current_model()
        model = model or default_pick(self._models_for(server)) or ""
        base = settings or (self.session.settings if self.session else ThreadSettings())
        record = await self.store.create_thread(title, server, model, base.to_dict())
        await self.open_thread(record.id)
        await self.refresh_threads()
        self.composer.focus()
        return record

    async def open_thread(self, thread_id: int) -> None:
        if self.session is not None and self.session.busy:
            self.status.emit("An answer is still streaming; stop it first (Esc).")
            return
        record = await self.store.thread(thread_id)

        # Both read the session's record when called: the thread's server, even after a move.
        def client() -> LMStudioClient | None:
            return self._client_for(session.record.server)

        def used(instance_id: str) -> None:
            self._on_used(session.record.server, instance_id)

        def busy_changed(_busy: bool) -> None:
            # Sending fixes the thread's server: its answers will live there.
            if self.session is session:
                self.settings_bar.set_movable(session.movable)

        session = ChatSession(
            self.store, client, record, on_used=used, report=self.status.emit, parent=self
        )
        session.turn_started.connect(self._on_session_turn_started)
        session.delta.connect(self._on_session_delta)
        session.item_added.connect(self._on_session_item_added)
        session.model_loading.connect(self._on_session_model_loading)
        session.turn_finished.connect(self._on_session_turn_finished)
        session.continuation_lost.connect(self._on_session_continuation_lost)
        session.busy_changed.connect(self.composer.set_busy)
        session.busy_changed.connect(busy_changed)
        old, self.session = self.session, session
        if old is not None:
            old.deleteLater()
        self.lost_bar.hide()
        self.settings_bar.show_settings(
            session.settings, record.model, record.server, movable=session.movable
        )
        await self.render_branch()
        self._enable_thread_controls()

    async def render_branch(self) -> None:
        if self.session is None:
            return
        turns = await self.session.branch()
        self.view.show_branch(turns, await self.session.siblings(turns))
        self._update_context(turns[-1] if turns else None)

    def _on_threads_rename_requested(self) -> None:
        if self.session is None:
            return
        title, ok = QInputDialog.getText(
            self, "Rename thread", "Title:", QLineEdit.EchoMode.Normal, self.session.record.title
        )
        if ok and title.strip():
            self.spawn(self.rename(title.strip()), "Renaming the thread")

    async def rename(self, title: str) -> None:
        if self.session is not None:
            await self.session.rename(title)
            await self.refresh_threads()

    def delete_current(self) -> None:
        """Hide the open thread at once; it is deleted for good unless undone within a few
        seconds (the thread list's Undo)."""
        if self.session is None or self.session.busy:
            return
        self.threads.hold_for_undo(self.session.record)
        self.session = None
        self.view.show_branch([], {})
        self._enable_thread_controls()

    def undo_delete(self) -> None:
        self.threads.undo_delete()

    def _enable_thread_controls(self) -> None:
        has = self.session is not None
        self.threads.set_thread_open(has)
        self.settings_bar.set_thread_open(has)
        self.composer.set_thread_open(has)

    # ------------------------------------------------------------------ settings

    def _on_settings_bar_server_picked(self, server: str) -> None:
        self.spawn(self.move_thread(server), "Moving the thread to another server")

    async def move_thread(self, server: str) -> None:
        """The open thread talks to ``server`` from now on: only before its first turn. Its
        model stays when that server has it, else the server's first is picked."""
        session = self.session
        if session is None or server == session.record.server:
            return
        model = session.record.model
        models = self._models_for(server)
        if find_model(models, model) is None:
            model = default_pick(models) or model
        try:
            await session.move_to(server, model)
        except ValueError as exc:
            self.status.emit(str(exc))
        finally:
            if self.session is session:
                record = session.record
                self.settings_bar.show_settings(
                    session.settings, record.model, record.server, movable=session.movable
                )
        await self.refresh_threads()

    async def _save_settings(self) -> None:
        if self.session is not None:
            bar = self.settings_bar
            await self.session.set_settings(bar.current_settings(), model=bar.current_model())
            if not bar.store_box.isChecked():
                self.status.emit(
                    "Store is off: answers get no response id and cannot be continued."
                )

    def set_system_prompt(self, text: str) -> None:
        self.settings_bar.set_system_prompt(text)

    # ------------------------------------------------------------------ sending

    def _on_composer_send_clicked(self) -> None:
        if self.session is not None and self.session.busy:
            self.stop()
        else:
            self.send()

    def send(self) -> None:
        text, images = self.composer.text(), self.composer.images()
        if self.session is None or self.session.busy or not (text or images):
            return
        try:
            self.session.send(text, images)
        except ValueError as exc:
            self.status.emit(str(exc))
            return
        self.composer.clear()
        self.lost_bar.hide()

    def stop(self) -> None:
        if self.session is not None and self.session.busy:
            self.session.stop()

    def _on_session_turn_started(self, turn: TurnRecord) -> None:
        self.view.begin_stream(turn)
        if self.session is not None and self.session.record.title == NEW_TITLE:
            title = " ".join(turn.user_text.split())[:48] or "Image"
            self.spawn(self.rename(title), "Naming the thread")

    def _on_session_delta(self, turn_id: int, kind: str, text: str) -> None:
        self.view.append_delta(kind, text)

    def _on_session_item_added(self, turn_id: int, item: dict[str, Any]) -> None:
        self.view.note(item_note(item))

    def _on_session_model_loading(self, turn_id: int, progress: float) -> None:
        self.load_bar.show()
        self.load_bar.setValue(int(progress * 100))
        if progress >= 1.0:
            self.load_bar.hide()

    def _on_session_turn_finished(self, turn: TurnRecord) -> None:
        self.load_bar.hide()
        self.spawn(self._finish(turn), "Showing the answer")

    async def _finish(self, turn: TurnRecord) -> None:
        siblings = await self.session.siblings(await self.session.branch()) if self.session else {}
        self.view.end_stream(turn, siblings)
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
        record = self.session.record
        settings = await self.session.reseed_settings()
        await self.new_thread(
            record.model, settings, continued_title(record.title), server=record.server
        )
        self.lost_bar.hide()

    # ------------------------------------------------------------------ per-turn actions

    def _on_view_action(self, what: str, turn_id: int) -> None:
        turn = self.view.turn(turn_id)
        if what == "reasoning":
            self.view.expanded ^= {turn_id}
            self.spawn(self.render_branch(), "Showing the reasoning")
        elif what == "copy" and turn is not None:
            QGuiApplication.clipboard().setText(turn.text)
            self.status.emit("Copied the answer.")
        elif what == "copy-id" and turn is not None and turn.response_id:
            QGuiApplication.clipboard().setText(turn.response_id)
            self.status.emit(f"Copied {turn.response_id}.")
        elif what == "continue":
            self.spawn(self.continue_from(turn_id), "Continuing from that answer")
        elif what in ("sibling-prev", "sibling-next"):
            forward = what == "sibling-next"
            self.spawn(self.switch_sibling(turn_id, forward=forward), "Switching branches")

    async def continue_from(self, turn_id: int) -> None:
        if self.session is not None:
            await self.session.continue_from(turn_id)
            await self.render_branch()
            self.status.emit("The next message starts a branch from that answer.")
            self.composer.focus()

    async def switch_sibling(self, turn_id: int, *, forward: bool) -> None:
        """Show the branch through the next (or previous) answer at ``turn_id``'s fork."""
        if self.session is not None and await self.session.switch_sibling(turn_id, forward=forward):
            await self.render_branch()

    # ------------------------------------------------------------------ context and export

    def _update_context(self, turn: TurnRecord | None) -> None:
        server = self.session.record.server if self.session is not None else ""
        use = context_use(turn, self._models_for(server) if server else [])
        self.composer.context_meter.show_use(use)
        if use.near:
            self.status.emit("The context is nearly full: older turns will soon be cut off.")

    async def export_text(self, fmt: ExportFormat, reasoning: bool) -> str:
        """The open thread's branch as Markdown ("md") or JSON, as Export writes it."""
        if self.session is None:
            return ""
        return await self.store.export_branch(self.session.record.id, fmt=fmt, reasoning=reasoning)
