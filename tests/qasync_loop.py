"""The qasync loop the GUI tests run on (pytest-asyncio's loop-factory hook)."""

from __future__ import annotations

import asyncio
from typing import Any

import PySide6.QtWidgets  # noqa: F401  (the binding before qasync)
import qasync
from PySide6.QtWidgets import QApplication


def qasync_loop_factories() -> dict[str, Any]:
    def factory() -> asyncio.AbstractEventLoop:
        app = QApplication.instance() or QApplication([])
        assert isinstance(app, QApplication)
        loop: asyncio.AbstractEventLoop = qasync.QEventLoop(app)
        return loop

    return {"qasync": factory}
