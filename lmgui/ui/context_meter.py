"""The context meter: how much of the instance's context the last turn used (``core.chat_context``
computes it), red when nearly full."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar, QWidget

from lmgui.core.chat_context import ContextUse

__all__ = ["ContextMeter"]

NEAR_STYLE = "QProgressBar::chunk { background: #d64545; }"


class ContextMeter(QProgressBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Context used")
        self.setTextVisible(True)
        self.show_use(ContextUse(None, None))

    def show_use(self, use: ContextUse) -> None:
        if use.used is None or not use.size:
            self.setRange(0, 1)
            self.setValue(0)
        else:
            self.setRange(0, use.size)
            self.setValue(min(use.used, use.size))
        self.setFormat(use.text)
        self.setStyleSheet(NEAR_STYLE if use.near else "")
