"""Render the screenshots in docs/ from the real app against the demo simulator.

    QT_QPA_PLATFORM=offscreen python docs/make_screenshots.py      # or under Xvfb

Writes docs/main-window.png, load-dialog.png, unload-dialog.png, settings-memory.png,
snapshots-menu.png and chat-pane.png.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_API", "pyside6")
import qasync
from PySide6.QtWidgets import QApplication, QTabWidget, QWidget

from lmgui.app import LmguiApp
from lmgui.core.actions import LoadRequest
from lmgui.core.paths import AppPaths
from lmgui.sim.demo import set_demo_traffic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shots import DOCS, until


def save(widget: QWidget, name: str) -> None:
    widget.grab().save(str(DOCS / name))
    print("wrote", DOCS / name)


async def main() -> int:
    with tempfile.TemporaryDirectory() as home:
        app = LmguiApp(AppPaths.under(Path(home)), demo=True, poll_ms=300)
        assert app.sim is not None
        set_demo_traffic(app.sim, 0)  # the pictures show what this script does, nothing random
        # No VRAM budget of the user's: the bar counts against the server's own survey.
        w = app.window
        w.resize(1400, 640)
        w.show()
        app.poller.start()
        try:
            await until(lambda: app.tree.rowCount() > 0)
            # Loads lmgui asked for over LM Studio's SDK channel: GPU offload, the server's TTL
            # and an identifier, all applied by the server.
            await app.actions.load(
                LoadRequest("qwen/qwen3-4b", context_length=8192, ttl_seconds=1800)
            )
            await app.actions.load(
                LoadRequest(
                    "qwen/qwen3.5-9b",
                    context_length=16384,
                    gpu=0.5,
                    ttl_seconds=300,
                    identifier="my-qwen",
                )
            )
            await until(lambda: app.tree.instance_index("my-qwen").isValid())
            # Another client chats with it: "generating" in the table.
            other = asyncio.ensure_future(
                app.client.chat("my-qwen", "Tell me about lighthouses.", store=False)
            )
            await until(
                lambda: any(
                    i.id == "my-qwen" and i.status == "generating"
                    for _, i in app.poller.snapshot.instances
                )
            )
            w.select_instance("my-qwen")
            await asyncio.sleep(0.3)
            save(w, "main-window.png")
            other.cancel()
            await asyncio.gather(other, return_exceptions=True)

            load = w.open_load_dialog("openai/gpt-oss-20b")
            assert load is not None
            load.context.setValue(32768)
            load.ttl_on.setChecked(True)
            await until(lambda: bool(load.server_estimate.text()))  # LM Studio's own estimate
            await asyncio.sleep(0.2)
            save(load, "load-dialog.png")
            load.close()

            w.view.clearSelection()
            w.select_instance("google/gemma-3-270m:2")
            unload = w.open_unload_dialog()
            assert unload is not None
            await asyncio.sleep(0.2)
            save(unload, "unload-dialog.png")
            unload.close()

            # Settings, Memory: the VRAM budget and making way for other GPU programs.
            settings = app.open_settings()
            tabs = settings.findChild(QTabWidget)
            assert tabs is not None
            tabs.setCurrentIndex(
                next(i for i in range(tabs.count()) if tabs.tabText(i) == "Memory")
            )
            await asyncio.sleep(0.2)
            save(settings, "settings-memory.png")
            settings.close()

            # The Snapshots menu after freeing the GPU: Restore is offered.
            app.snapshots.save("evening")
            await app.snapshots.free_gpu()
            await until(lambda: not app.tray_state().servers[0].instances)
            menu = app.snapshot_menu
            menu.rebuild()
            menu.popup(w.mapToGlobal(w.rect().center()))
            await asyncio.sleep(0.2)
            save(menu, "snapshots-menu.png")
            menu.hide()
            await app.snapshots.restore()
            await until(lambda: bool(app.tray_state().servers[0].instances))

            # A branched thread with reasoning, stats and a tool call, in the chat pane.
            w.resize(1500, 900)
            w.view.clearSelection()
            w.select_instance("qwen/qwen3-4b")
            w.open_chat()
            pane = app.chat
            await pane.settle()
            pane.set_system_prompt("Answer in two sentences.")
            await pane.settle()
            session = pane.session
            assert session is not None
            first = await session.send("What does the KV cache hold?")
            await pane.settle()
            await session.send("And why does it grow with context?")
            await pane.settle()
            assert first is not None
            await pane.continue_from(first.id)
            await session.send("How do I make it smaller?")
            await pane.settle()
            branch = await session.branch()
            pane.view.expanded.add(branch[-1].id)
            await pane.render_branch()
            await asyncio.sleep(0.3)
            save(w, "chat-pane.png")
        finally:
            await app.shutdown()
    return 0


if __name__ == "__main__":
    QApplication.instance() or QApplication(sys.argv[:1])
    sys.exit(qasync.run(main()))
