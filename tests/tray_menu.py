"""The tray menu rebuilt all day must not grow: a helper for the one-server and the fleet tests."""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from lmgui.ui.tray import TrayController


def submenus_after_many_openings(tray: TrayController, openings: int = 200) -> int:
    """Open ``tray``'s menu once, then ``openings`` more times; assert that neither its live
    submenus nor the Python wrappers of actions grew (each held its closure and data alive), and
    return how many submenus one opening leaves, for the caller's own count."""

    def live_submenus() -> int:
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        return len(tray.menu.findChildren(QMenu))

    def python_actions() -> int:
        gc.collect()
        return sum(isinstance(o, QAction) for o in gc.get_objects())

    tray.menu.aboutToShow.emit()
    once = live_submenus()
    actions = python_actions()
    for _ in range(openings):
        tray.menu.aboutToShow.emit()
    assert live_submenus() == once
    assert python_actions() <= actions
    return once
