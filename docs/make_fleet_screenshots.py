"""Render the fleet screenshots: three demo servers in one window and one tray, in a real X11
session (Xvfb + trayer), one of them killed.

python docs/make_fleet_screenshots.py      # needs: apt-get install xvfb trayer xdotool

Writes docs/fleet-window.png (a row per server, the laptop's server killed), fleet-load-dialog.png
(the server picker with each server's free VRAM) and fleet-tray-menu.png (the menu grouped by
server).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shots import DOCS, grab_tray_menu, run_in_x11, until


async def main() -> int:

    from lmgui.app import LmguiApp
    from lmgui.core.actions import LoadRequest
    from lmgui.core.paths import AppPaths
    from lmgui.core.status import ConnectionState
    from lmgui.sim.demo import set_demo_fleet_traffic

    with tempfile.TemporaryDirectory() as home:
        app = LmguiApp(AppPaths.under(Path(home)), demo=True, demo_servers=3, poll_ms=300)
        set_demo_fleet_traffic(app.demo_servers, 0)  # only what this script does
        # No balloons: over the icon one would take the click that opens the menu.
        app.notifier.paused = True
        workstation, box, laptop = (d.url for d in app.demo_servers)
        runner = asyncio.ensure_future(app.run())
        w = app.window
        w.resize(1400, 720)
        await until(lambda: app.tray.icon.geometry().x() > 0)
        await until(
            lambda: all(
                c.hardware is not None and app.tree.filled(c.url)
                for _, c in app.fleet.connections()
            )
        )
        # A load on the GPU box from the load dialog, with the server picked there.
        w.select_instance("openai/gpt-oss-20b", box)
        dialog = w.open_load_dialog("qwen/qwen3-4b")
        assert dialog is not None and dialog.server == box
        dialog.context.setValue(16384)
        await asyncio.sleep(0.5)
        dialog.grab().save(str(DOCS / "fleet-load-dialog.png"))
        print("wrote", DOCS / "fleet-load-dialog.png")
        dialog.load_button.click()
        await until(lambda: app.tree.instance_index("qwen/qwen3-4b", box).isValid())
        dialog.close()
        await app.actions.load(LoadRequest("qwen/qwen3-4b", context_length=4096, server=laptop))
        # The laptop's server dies: its row says so, the others carry on.
        app.demo_servers[2].sim.stop()
        conn = app.fleet.connection(laptop)
        assert conn is not None
        await until(lambda: conn.poller.status.state is ConnectionState.UNREACHABLE)
        w.select_instance("qwen/qwen3-4b", box)
        await asyncio.sleep(1.0)
        w.grab().save(str(DOCS / "fleet-window.png"))
        print("wrote", DOCS / "fleet-window.png")

        w.hide()  # the window would cover the tray area of this small screen
        app.tray.update()
        await grab_tray_menu(app, "fleet-tray-menu.png")
        del workstation
        app.quit()
        await runner
    return 0


if __name__ == "__main__":
    sys.exit(run_in_x11(main))
