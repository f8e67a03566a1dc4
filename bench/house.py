"""Figures for the house keeping (never asserted in the suite): start to the first populated
table, and the tray menu opened a thousand times.

    python bench/house.py                    # both
    python bench/house.py start              # one of them

- start: ``lmgui --server URL --screenshot PNG`` against a 2000-model simulator in its own
  process; the screenshot is taken once the first refresh is shown, so the wall time from the
  process start to its exit is start to first populated table (plus writing one PNG). Median of 3.
- traymenu: the app in this process against a 10-model simulator with two instances loaded;
  the tray menu is opened (``aboutToShow``) 1000 times, Qt's deferred deletes processed as the
  event loop would; live QMenu objects under the tray menu and RSS before and after.

Run it from another checkout (with ``PYTHONPATH`` pointing at it) for a before figure.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_API", "pyside6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("LMGUI_LMS", "off")

import psutil
import qasync
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication, QMenu

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import sim_process

from lmgui.api import LMStudioClient
from lmgui.app import LmguiApp
from lmgui.core.paths import AppPaths


def bench_start(runs: int = 3) -> dict[str, Any]:
    times = []
    with sim_process("--synthetic-models", "2000") as url, tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": f"{home}/c",
            "XDG_STATE_HOME": f"{home}/s",
            "XDG_DATA_HOME": f"{home}/d",
        }
        for n in range(runs):
            shot = Path(home) / f"shot{n}.png"
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "lmgui", "--server", url, "--screenshot", str(shot)],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            times.append(time.perf_counter() - started)
    return {
        "models": 2000,
        "runs_s": [round(t, 2) for t in times],
        "median_s": round(statistics.median(times), 2),
    }


def bench_traymenu(openings: int = 1000) -> dict[str, Any]:
    qt = QApplication.instance() or QApplication([])
    result: dict[str, Any] = {}

    async def main() -> None:
        with sim_process() as url, tempfile.TemporaryDirectory() as home:
            async with LMStudioClient(url, lms=None) as side:
                await side.load("google/gemma-3-270m")
                await side.load("qwen/qwen3-4b")
            app = LmguiApp(AppPaths.under(Path(home)), server=url, poll_ms=60_000)
            app.poller.start()
            await app.first_poll.wait()
            menu = app.tray.menu
            proc = psutil.Process()

            def live() -> int:
                QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
                return len(menu.findChildren(QMenu))

            menu.aboutToShow.emit()
            await asyncio.sleep(0)
            result["qmenus_after_1"] = live()
            rss0 = proc.memory_info().rss
            for n in range(openings):
                menu.aboutToShow.emit()
                if n % 50 == 0:
                    await asyncio.sleep(0)  # the event loop runs between openings
            result[f"qmenus_after_{openings + 1}"] = live()
            result["rss_mb_before"] = round(rss0 / 2**20, 1)
            result["rss_mb_after"] = round(proc.memory_info().rss / 2**20, 1)
            await app.shutdown()

    qasync.run(main())
    del qt
    return result


def main() -> None:
    which = sys.argv[1:] or ["start", "traymenu"]
    if "start" in which:
        print("start:", bench_start())
    if "traymenu" in which:
        print("traymenu:", bench_traymenu())


if __name__ == "__main__":
    main()
