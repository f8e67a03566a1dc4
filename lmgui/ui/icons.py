"""Icons: the SVGs shipped in the package (resources/icons, installed as lmgui.resources).

A missing or undrawable icon raises: it is a packaging bug for the tests to catch, never hidden
behind a stand-in.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon

from lmgui.core.package_data import resource_path

__all__ = ["ICON_NAMES", "app_icon", "icon_path", "state_icon"]

ICON_NAMES = (
    "app",
    "state-offline",
    "state-idle",
    "state-loaded",
    "state-loading",
    "refresh",
    "load",
    "unload",
)
"""Every icon lmgui shows: the app, the tray's four states, the toolbar's actions."""


def icon_path(name: str) -> Path:
    return resource_path("icons", f"{name}.svg")


@cache
def state_icon(name: str) -> QIcon:
    path = icon_path(name)
    icon = QIcon(str(path))
    if icon.pixmap(16, 16).isNull():
        raise RuntimeError(f"Qt cannot draw lmgui's icon {path}: is PySide6's SVG support missing?")
    return icon


def app_icon() -> QIcon:
    return state_icon("app")
