"""The open thread's settings bar: which server and which model or instance it talks to, and
its system prompt, temperature, maximum output tokens, reasoning and store settings.

It holds no thread: it shows settings it is given and says ``edited`` when the user changes one
(``server_picked`` for the server); the pane saves them through the session. The picker lists
the thread's server's models. The Server combo shows only while lmgui watches more than one
server (or the thread's server is not among them), and can be changed only before the thread's
first turn: after that its answers live on that server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QInputDialog,
    QPushButton,
    QSpinBox,
    QWidget,
)

from lmgui.api.records import Model
from lmgui.api.urls import display_url
from lmgui.core.chat import ThreadSettings
from lmgui.core.chat_context import find_model
from lmgui.qtmodels.model_picker import ModelPickerModel

__all__ = ["ServerEntry", "ThreadSettingsBar", "server_entries"]

NO_TEMPERATURE = -0.1
"""The spin box's value below the range: "default" (the server's own)."""


FIXED_TIP = (
    "This thread's answers live on this server, so it stays here. Start a new thread to talk to "
    "another server."
)
MOVABLE_TIP = "The server this thread talks to; it can change until the first message is sent."


@dataclass(frozen=True)
class ServerEntry:
    label: str
    url: str
    """Normalized: what the thread stores."""


def server_entries(servers: Sequence[tuple[str, str]], thread_server: str) -> list[ServerEntry]:
    """The watched servers in order, and the thread's own server after them when lmgui no
    longer watches it."""
    entries = [ServerEntry(label, url) for url, label in servers]
    if thread_server and all(e.url != thread_server for e in entries):
        entries.append(
            ServerEntry(f"{display_url(thread_server)}  (not watched now)", thread_server)
        )
    return entries


class ThreadSettingsBar(QWidget):
    edited = Signal()
    """The user changed a setting or picked another model: save them."""
    model_changed = Signal(object)
    """The picked model's record (``Model``), or None when the server has no such model."""
    server_picked = Signal(str)
    """The user picked another server (its URL) for a thread that has no turns yet."""

    def __init__(
        self,
        models_for: Callable[[str], list[Model]],
        servers: Callable[[], list[tuple[str, str]]],
        parent: QWidget | None = None,
    ) -> None:
        """``models_for(url)``: that server's models now; ``servers()``: (URL, label) of the
        servers lmgui watches, in order."""
        super().__init__(parent)
        self._models_for = models_for
        self._servers = servers
        self._server = ""
        """The open thread's server (normalized URL); "" before any thread is shown."""
        self._movable = False
        self._thread_open = False
        self.server_box = QComboBox()
        self.server_box.setAccessibleName("Server")
        self.server_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.server_box.hide()
        self.picker = ModelPickerModel(self)
        self.model_box = QComboBox()
        self.model_box.setModel(self.picker)
        self.model_box.setAccessibleName("Model or instance to chat with")
        self.model_box.setMinimumContentsLength(24)
        self.system_button = QPushButton("S&ystem prompt…")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(NO_TEMPERATURE, 2.0)
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
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.server_box)
        row.addWidget(self.model_box, 2)
        row.addWidget(self.system_button)
        row.addWidget(self.temperature)
        row.addWidget(self.max_tokens)
        row.addWidget(self.reasoning)
        row.addWidget(self.store_box)
        self._system_prompt = ""
        self._picker_dirty = True
        self._picker_timer = QTimer(self)
        self._picker_timer.setSingleShot(True)
        self._picker_timer.setInterval(0)
        self._picker_timer.timeout.connect(self._on_picker_timer_timeout)

        self.server_box.activated.connect(self._on_server_box_activated)
        self.model_box.activated.connect(self._on_model_box_activated)
        self.system_button.clicked.connect(self._on_system_clicked)
        self.temperature.editingFinished.connect(self.edited)
        self.max_tokens.editingFinished.connect(self.edited)
        self.reasoning.activated.connect(lambda _i: self.edited.emit())
        self.store_box.toggled.connect(lambda _on: self.edited.emit())

    # ------------------------------------------------------------------ the server

    @property
    def server(self) -> str:
        """The server of the thread shown (its normalized URL)."""
        return self._server

    def servers_changed(self) -> None:
        """lmgui watches other servers now: the Server combo follows, and the picker (the
        thread's server may have gone or come back)."""
        self._refresh_servers()
        self.models_changed()

    def show_server(self, server: str, *, movable: bool) -> None:
        """The thread's server; ``movable`` while it has no turns."""
        self._server = server
        self._movable = movable
        self._refresh_servers()

    def set_movable(self, movable: bool) -> None:
        self._movable = movable
        self._refresh_server_state()

    def _refresh_servers(self) -> None:
        entries = server_entries(self._servers(), self._server)
        box = self.server_box
        box.blockSignals(True)
        box.clear()
        for e in entries:
            box.addItem(e.label, e.url)  # combo items are plain text: labels come from the user
        box.setCurrentIndex(max(0, box.findData(self._server)))
        box.blockSignals(False)
        self._refresh_server_state()

    def _refresh_server_state(self) -> None:
        box = self.server_box
        # One server, the thread's own: nothing to choose and nothing to say (as before fleets).
        box.setVisible(self._thread_open and box.count() > 1)
        box.setEnabled(self._thread_open and self._movable)
        # No server string in the tooltip: Qt would guess whether it is rich text.
        box.setToolTip(MOVABLE_TIP if self._movable or not self._thread_open else FIXED_TIP)

    def _on_server_box_activated(self, _index: int) -> None:
        url = self.server_box.currentData()
        if isinstance(url, str) and url != self._server:
            self.server_picked.emit(url)

    # ------------------------------------------------------------------ the picker

    def models_changed(self) -> None:
        """After a poll: refresh the picker later, in its own slice of the event loop, and only
        while it is visible (a 2000-model picker costs a few milliseconds)."""
        self._picker_dirty = True
        self._picker_timer.start()

    def _on_picker_timer_timeout(self) -> None:
        if self.isVisible():
            self.refresh_models()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._picker_dirty:
            self.refresh_models()

    def _models(self) -> list[Model]:
        return self._models_for(self._server) if self._server else []

    def refresh_models(self, keep: str | None = None) -> None:
        """The thread's server's models now; the picked one (or ``keep``) stays picked, listed
        as not on the server when it is gone."""
        self._picker_dirty = False
        current = keep or self.current_model()
        self.model_box.blockSignals(True)
        changed = self.picker.set_models(self._models(), keep=current)
        if changed or self.model_box.currentIndex() != self.picker.row_of(current):
            self.model_box.setCurrentIndex(max(0, self.picker.row_of(current)))
        self.model_box.blockSignals(False)
        if changed or keep:
            self._refresh_reasoning()

    def current_model(self) -> str | None:
        data = self.model_box.currentData()
        return str(data) if data else None

    def model_record(self) -> Model | None:
        return find_model(self._models(), self.current_model() or "")

    def _on_model_box_activated(self, _index: int) -> None:
        self._refresh_reasoning()
        self.edited.emit()

    def _refresh_reasoning(self) -> None:
        """Reasoning offers only the picked model's options (hidden when it has none)."""
        m = self.model_record()
        keep = self.reasoning.currentData()
        self.reasoning.clear()
        self.reasoning.addItem("reasoning: default", None)
        for option in m.reasoning_options if m else ():
            self.reasoning.addItem(f"reasoning: {option}", option)
        self.reasoning.setVisible(bool(m and m.reasoning_options))
        self.reasoning.setCurrentIndex(max(0, self.reasoning.findData(keep)))
        self.model_changed.emit(m)

    # ------------------------------------------------------------------ settings

    def set_thread_open(self, has: bool) -> None:
        self._thread_open = has
        self.model_box.setEnabled(has)
        self._refresh_server_state()

    def show_settings(
        self, s: ThreadSettings, model: str, server: str, *, movable: bool = False
    ) -> None:
        """A thread's settings, model and server (``movable`` while it has no turns), without
        saying ``edited``."""
        self.show_server(server, movable=movable)
        self.refresh_models(keep=model)
        self._set_system_prompt(s.system_prompt or "")
        self.temperature.setValue(s.temperature if s.temperature is not None else NO_TEMPERATURE)
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

    def _on_system_clicked(self) -> None:
        text, ok = QInputDialog.getMultiLineText(
            self, "System prompt", "System prompt for this thread:", self._system_prompt
        )
        if ok:
            self.set_system_prompt(text)

    def set_system_prompt(self, text: str) -> None:
        """The user's system prompt: shown, and said as ``edited``."""
        self._set_system_prompt(text.strip())
        self.edited.emit()

    def _set_system_prompt(self, text: str) -> None:
        self._system_prompt = text
        self.system_button.setText("S&ystem prompt ✓" if text else "S&ystem prompt…")
