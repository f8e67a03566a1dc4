"""A real X11 session for the tray test: Xvfb plus trayer (an XEmbed tray host), started before
pytest-qt creates the QApplication. Run in its own process (tests/test_x11.py does): the Qt
platform is fixed per process."""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.qasync_loop import qasync_loop_factories
from tests_x11 import xsession

_procs: list[subprocess.Popen[bytes]] = []


def pytest_configure(config: pytest.Config) -> None:
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    os.environ["LMGUI_LMS"] = "off"  # never a real lms (tests/conftest.py)
    if xsession.available():  # otherwise the test skips itself, saying what is missing
        _procs.extend(xsession.start())
    else:
        # Without a display Qt's default xcb platform aborts the process before any test can
        # skip; offscreen lets the x11 fixture say what is missing.
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def pytest_unconfigure(config: pytest.Config) -> None:
    xsession.stop(_procs)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return qasync_loop_factories()


@pytest.fixture
def x11() -> str:
    if os.environ.get("QT_QPA_PLATFORM") != "xcb":
        pytest.skip("needs Xvfb, trayer and xdotool (apt-get install xvfb trayer xdotool)")
    return os.environ["DISPLAY"]


@pytest.fixture(autouse=True)
def _gc_on_gui_thread() -> Iterator[None]:
    yield
    gc.collect()
