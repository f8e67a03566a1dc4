"""Render docs/tray-menu.png: the tray icon and its menu in a real X11 session (Xvfb + trayer).

python docs/make_tray_screenshot.py      # needs: apt-get install xvfb trayer xdotool
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shots import grab_tray_menu, run_in_x11, until


async def main() -> int:

    from lmgui.app import LmguiApp
    from lmgui.core.actions import LoadRequest
    from lmgui.core.paths import AppPaths
    from lmgui.sim.demo import set_demo_traffic

    with tempfile.TemporaryDirectory() as home:
        app = LmguiApp(AppPaths.under(Path(home)), demo=True, poll_ms=300)
        assert app.sim is not None
        set_demo_traffic(app.sim, 0)  # the pictures show what this script does, nothing random
        # No balloons ("Loaded ..."): over the icon one would take the click that opens the menu.
        app.notifier.paused = True
        app.settings.remember_load(LoadRequest("qwen/qwen3-4b", context_length=8192))
        app.settings.favourites = ["openai/gpt-oss-20b"]
        runner = asyncio.ensure_future(app.run(minimized=True))
        await until(lambda: app.tray.icon.geometry().x() > 0 and bool(app.tree.models()))
        await app.actions.load(LoadRequest("qwen/qwen3-4b", context_length=8192, ttl_seconds=3600))
        await app.actions.load(
            LoadRequest("qwen/qwen3.5-9b", gpu=0.5, ttl_seconds=300, identifier="my-qwen")
        )
        # Another client chats with it: the menu shows it generating.
        other = asyncio.ensure_future(app.client.chat("my-qwen", "Tell me a story.", store=False))
        await until(
            lambda: any(
                i.id == "my-qwen" and i.status == "generating"
                for _, i in app.poller.snapshot.instances
            )
        )
        await asyncio.sleep(0.5)
        await grab_tray_menu(app, "tray-menu.png")
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
        app.quit()
        await runner
    return 0


if __name__ == "__main__":
    sys.exit(run_in_x11(main))
