"""GUI tests: async tests here run on a qasync loop over the test's QApplication.

Only this folder gets the qasync loop (pytest-asyncio resolves the hook per test through
``item.ihook``); the API and simulator tests keep plain asyncio. Inside an async test never call
``qtbot.wait*`` (it would re-enter the running loop, toolchain.md §2.2 trap 3): await
``wait_for`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import PySide6.QtWidgets  # noqa: F401  (the binding before qasync)
import pytest
from pytestqt.qtbot import QtBot

from lmgui.app import LmguiApp
from lmgui.core.paths import AppPaths
from tests.qasync_loop import qasync_loop_factories


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return qasync_loop_factories()


@pytest.fixture(autouse=True)
def _gc_on_gui_thread() -> Iterator[None]:
    yield
    # A closed qasync loop freed later from another thread can crash Qt (toolchain.md §2.2).
    gc.collect()


async def wait_for(condition: Callable[[], bool], within: float = 10.0, step: float = 0.01) -> None:
    """Await a condition on GUI state while the qasync loop keeps running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return AppPaths.under(tmp_path)


@contextlib.asynccontextmanager
async def running(
    qtbot: QtBot, paths: AppPaths, server: str, *, token: str | None = None, interval_ms: int = 100
) -> AsyncIterator[LmguiApp]:
    app = LmguiApp(paths, server=server, token=token, poll_ms=interval_ms)
    app.poller.max_backoff_ms = 400
    async with shown(qtbot, app):
        yield app


@contextlib.asynccontextmanager
async def shown(qtbot: QtBot, app: LmguiApp) -> AsyncIterator[LmguiApp]:
    """``app`` with its window shown and every server polled; shut down at the end."""
    qtbot.addWidget(app.window)
    app.window.show()
    app.fleet.start()
    try:
        yield app
    finally:
        await app.shutdown()
