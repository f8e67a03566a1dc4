"""Small widget helpers shared by the dialogs."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

__all__ = ["ERROR", "WARNING", "plain_label"]

ERROR = "#b00020"
WARNING = "#8a5a00"


def plain_label(text: str = "", colour: str = "", *, hidden: bool = False) -> QLabel:
    """A wrapping label that shows its text as plain text (it may come from a server)."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    if colour:
        label.setStyleSheet(f"color: {colour};")
    if hidden:
        label.hide()
    return label
