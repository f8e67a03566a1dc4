"""The open thread's settings bar: which model or instance it talks to, and its system prompt,
temperature, maximum output tokens, reasoning and store settings.

It holds no thread: it shows settings it is given and says ``edited`` when the user changes one;
the pane saves them through the session.
"""

from __future__ import annotations

from collections.abc import Callable
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
from lmgui.core.chat import ThreadSettings
from lmgui.core.chat_context import find_model
from lmgui.qtmodels.model_picker import ModelPickerModel

__all__ = ["ThreadSettingsBar"]

NO_TEMPERATURE = -0.1
"""The spin box's value below the range: "default" (the server's own)."""


class ThreadSettingsBar(QWidget):
    edited = Signal()
    """The user changed a setting or picked another model: save them."""
    model_changed = Signal(object)
    """The picked model's record (``Model``), or None when the server has no such model."""

    def __init__(self, models: Callable[[], list[Model]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models = models
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

        self.model_box.activated.connect(self._on_model_box_activated)
        self.system_button.clicked.connect(self._on_system_clicked)
        self.temperature.editingFinished.connect(self.edited)
        self.max_tokens.editingFinished.connect(self.edited)
        self.reasoning.activated.connect(lambda _i: self.edited.emit())
        self.store_box.toggled.connect(lambda _on: self.edited.emit())

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

    def refresh_models(self, keep: str | None = None) -> None:
        """The server's models now; the picked one (or ``keep``) stays picked, listed as not on
        the server when it is gone."""
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
        self.model_box.setEnabled(has)

    def show_settings(self, s: ThreadSettings, model: str) -> None:
        """A thread's settings and model, without saying ``edited``."""
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
