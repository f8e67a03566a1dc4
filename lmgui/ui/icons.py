"""Icons: the SVGs in the repository's resources/icons, or a drawn stand-in when absent."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

__all__ = ["ICON_DIR", "app_icon", "state_icon"]

ICON_DIR = Path(__file__).resolve().parents[2] / "resources" / "icons"

_FALLBACK_COLOURS = {
    "app": "#2b3a67",
    "state-offline": "#d64545",
    "state-idle": "#9aa3b5",
    "state-loaded": "#3fb950",
    "state-loading": "#e3a21a",
    "refresh": "#2f7fc1",
    "load": "#3fb950",
    "unload": "#d64545",
}


@cache
def state_icon(name: str) -> QIcon:
    path = ICON_DIR / f"{name}.svg"
    if path.exists():
        return QIcon(str(path))
    # An installed wheel has no resources/ folder: draw a plain disc in the icon's colour.
    pix = QPixmap(64, 64)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(_FALLBACK_COLOURS.get(name, "#888888")))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(6, 6, 52, 52)
    painter.end()
    return QIcon(pix)


def app_icon() -> QIcon:
    return state_icon("app")
