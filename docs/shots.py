"""What the screenshot scripts share: waiting for the app to reach a state, and running a
coroutine on a qasync loop inside a real X11 session (Xvfb + trayer, for the tray's pictures)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests_x11 import xsession

DOCS = Path(__file__).resolve().parent


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Wait, with the loop running, until ``condition()`` holds (``TimeoutError`` after
    ``within`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("the app did not reach the expected state")
        await asyncio.sleep(0.05)


def run_in_x11(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """``main()`` on a qasync loop in a fresh X11 session with a tray; its exit status."""
    if not xsession.available():
        sys.exit("needs Xvfb, trayer and xdotool: apt-get install xvfb trayer xdotool")
    procs = xsession.start()
    try:
        os.environ.setdefault("QT_API", "pyside6")
        import qasync
        from PySide6.QtWidgets import QApplication

        QApplication.instance() or QApplication(sys.argv[:1])
        code: int = qasync.run(main())
        return code
    finally:
        xsession.stop(procs)


async def grab_tray_menu(app: Any, name: str) -> None:
    """Right-click ``app``'s tray icon (xdotool), wait for its menu, save the screen's top-right
    corner around it as docs/``name``, close the menu. Notifications are switched back on first,
    as a user has them (none may come meanwhile: a balloon over the icon takes the click)."""
    from PySide6.QtGui import QGuiApplication

    app.notifier.paused = False
    icon = app.tray.icon.geometry()
    click = await asyncio.create_subprocess_exec(
        "xdotool", "mousemove", str(icon.center().x()), str(icon.center().y()), "click", "3"
    )
    await click.wait()
    await until(app.tray.menu.isVisible)
    await asyncio.sleep(0.5)  # drawn
    menu = app.tray.menu.geometry()
    left = menu.left() - 10
    shot = QGuiApplication.primaryScreen().grabWindow(0, left, 0, 1280 - left, menu.bottom() + 10)
    shot.save(str(DOCS / name))
    print("wrote", DOCS / name)
    app.tray.menu.hide()
