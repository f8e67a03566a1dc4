"""The tray icon in a real X11 session with a real tray host (trayer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QSystemTrayIcon
from pytestqt.qtbot import QtBot

from lmgui.app import LmguiApp
from lmgui.core.actions import LoadRequest
from lmgui.core.paths import AppPaths
from lmgui.sim import SimConfig, Simulator


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


def grab(area: QRect) -> QImage:
    screen = QGuiApplication.primaryScreen()
    return screen.grabWindow(0, area.x(), area.y(), area.width(), area.height()).toImage()


def greenish(image: QImage) -> int:
    """Pixels of the "instances loaded" disc (#3fb950) in a grab of the icon."""
    count = 0
    for x in range(image.width()):
        for y in range(image.height()):
            c = image.pixelColor(x, y)
            count += c.green() > 140 and c.green() > c.red() + 60 and c.green() > c.blue() + 40
    return count


async def test_the_tray_icon_is_embedded_shows_state_and_opens_the_window(
    qtbot: QtBot, x11: str, tmp_path: Path
) -> None:
    assert QSystemTrayIcon.isSystemTrayAvailable()
    sim = Simulator(SimConfig(port=0, tokens_per_second=0, load_seconds_per_gb=0.002)).start()
    app = LmguiApp(AppPaths.under(tmp_path), server=sim.url, poll_ms=100)
    qtbot.addWidget(app.window)
    try:
        assert app.tray_available and app.window.hide_on_close
        runner = asyncio.ensure_future(app.run(minimized=True))  # starts in the tray
        icon = app.tray.icon
        await wait_for(lambda: icon.geometry().x() > 0)  # embedded by the tray host
        await wait_for(lambda: app.tray.current_icon == "state-idle")
        assert not app.window.isVisible()
        area = icon.geometry()
        await asyncio.sleep(0.3)  # WORKAROUND: the tray host repaints the icon after embedding
        idle = grab(area)
        assert greenish(idle) == 0

        await app.actions.load(LoadRequest("google/gemma-3-270m"))
        await wait_for(lambda: app.tray.current_icon == "state-loaded")
        await wait_for(lambda: greenish(grab(area)) > 4)  # the icon on screen changed
        assert "1 instance loaded" in icon.toolTip()

        center = area.center()
        click = await asyncio.create_subprocess_exec(
            "xdotool", "mousemove", str(center.x()), str(center.y()), "click", "1"
        )
        assert await click.wait() == 0
        await wait_for(app.window.isVisible)  # a real click on the icon shows the window

        app.quit()
        assert await runner == 0
    finally:
        sim.stop()
