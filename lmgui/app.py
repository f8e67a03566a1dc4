"""The composition root: QApplication on a qasync loop, settings, client, poller, window.

Wiring and ordered shutdown only; the logic lives in ``core`` and ``ui``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import logging.handlers
import os
import re
import sys
import traceback
from pathlib import Path
from types import TracebackType

# qasync picks the Qt binding named by QT_API, else the first it finds (toolchain.md).
os.environ.setdefault("QT_API", "pyside6")
import qasync
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from lmgui.api.client import LMStudioClient, is_local_url, normalize_base_url
from lmgui.core.actions import Actions
from lmgui.core.chat_store import AsyncChatStore, ChatStore
from lmgui.core.gpu import GpuMemory, NvmlReader
from lmgui.core.ledger import InstanceLedger
from lmgui.core.paths import AppPaths
from lmgui.core.poller import Poller
from lmgui.core.secrets import TokenStore
from lmgui.core.settings import Settings
from lmgui.core.snapshot import Snapshot, SnapshotDiff
from lmgui.qtmodels.model_tree import ModelTreeModel
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.icons import app_icon
from lmgui.ui.main_window import MainWindow
from lmgui.ui.settings_dialog import SettingsDialog, SettingsValues

__all__ = ["LmguiApp", "run_gui"]

log = logging.getLogger("lmgui")


def _slug(url: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", normalize_base_url(url).split("://", 1)[-1]).strip("-")


class LmguiApp(QObject):
    """Owns every long-lived part and the order they start and stop in."""

    def __init__(
        self,
        paths: AppPaths,
        *,
        server: str | None = None,
        token: str | None = None,
        demo: bool = False,
    ) -> None:
        super().__init__()
        qt_app = QApplication.instance()
        assert isinstance(qt_app, QApplication), "create the QApplication first"
        # The app's coroutine ending stops the loop, never the last window closing: closing
        # first would stop qasync under a running coroutine (toolchain.md §2.1).
        qt_app.setQuitOnLastWindowClosed(False)
        self.paths = paths
        self.settings = Settings(paths.config_dir / "lmgui.ini")
        self.tokens = TokenStore()
        self.sim = None
        if demo:
            from lmgui.sim.demo import start_demo_simulator

            self.sim = start_demo_simulator()
            server = self.sim.url
        self.server_url = normalize_base_url(server or self.settings.server_url)
        if server and not demo:
            self.settings.server_url = self.server_url
        # An explicit token (flag or environment) is used for this session only.
        self.session_token = token or os.environ.get("LM_API_TOKEN") or None
        self.client = self._make_client()
        self.poller = Poller(
            self.client.poll_models,
            interval_ms=self.settings.poll_interval_ms,
            has_token=lambda: self.client.has_token,
            parent=self,
        )
        self.ledger = InstanceLedger(self._ledger_path())
        self.runner = Actions(lambda: self.client, self.poller, self.ledger, parent=self)
        self.tree = ModelTreeModel(self)
        self.nvml = NvmlReader() if is_local_url(self.server_url) else None
        self.window = MainWindow(
            self.tree,
            self.poller,
            self.runner,
            self.settings,
            server_url=lambda: self.server_url,
            gpus=self._gpus,
        )
        self._switching: asyncio.Future[None] | None = None
        self.chat_store = AsyncChatStore(ChatStore(paths.data_dir / "chats.sqlite3"))
        self.chat = ChatPane(
            self.chat_store,
            lambda: self.client,
            lambda: self.server_url,
            lambda: list(self.poller.snapshot.models),
            on_used=lambda instance_id: self.ledger.touch(instance_id),
        )
        self.window.set_chat_pane(self.chat)
        self.closed = asyncio.Event()
        self.first_poll = asyncio.Event()
        self.poller.snapshot_changed.connect(self._on_poller_snapshot_changed)
        self.poller.poll_finished.connect(self.first_poll.set)
        self.window.closing.connect(self.closed.set)
        self.window.quit_requested.connect(self.window.close)
        self.window.settings_requested.connect(self.open_settings)

    # ------------------------------------------------------------------ parts

    def _token(self) -> str | None:
        return self.session_token or self.tokens.get(self.server_url)

    def _make_client(self) -> LMStudioClient:
        return LMStudioClient(self.server_url, self._token())

    def _ledger_path(self) -> Path:
        return self.paths.state_dir / f"instances-{_slug(self.server_url)}.json"

    def _gpus(self) -> list[GpuMemory] | None:
        return self.nvml.read() if self.nvml is not None else None

    def _on_poller_snapshot_changed(self, diff: SnapshotDiff, snapshot: Snapshot) -> None:
        first = not self.tree.models()
        self.tree.apply(diff, self.runner.expected)
        self.chat.refresh_models()
        if first:
            # What start-up and the first fill built lives as long as the window: keep it out of
            # the cyclic GC's full passes, which otherwise stall the GUI thread now and then.
            gc.freeze()
        self.ledger.sync(snapshot)
        self.tree.set_instance_info(self.ledger.infos())

    # ------------------------------------------------------------------ settings

    def open_settings(self) -> SettingsDialog:
        s = self.settings
        dialog = SettingsDialog(
            SettingsValues(
                self.server_url, None, s.poll_interval_ms, s.vram_budget_gb, s.confirm_unload
            ),
            has_token=self._token() is not None,
            keyring_note=self.tokens.problem,
            parent=self.window,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.applied.connect(self.apply_settings)
        dialog.open()
        return dialog

    def apply_settings(self, values: SettingsValues) -> None:
        s = self.settings
        s.poll_interval_ms = values.poll_interval_ms
        s.vram_budget_gb = values.vram_budget_gb
        s.confirm_unload = values.confirm_unload
        self.poller.set_interval(values.poll_interval_ms)
        server_changed = values.server_url != self.server_url
        if server_changed:
            self.server_url = values.server_url
            s.server_url = values.server_url
            self.session_token = None
        if values.token is not None:
            if values.token == "":
                self.tokens.delete(self.server_url)
                self.session_token = None
            elif not self.tokens.set(self.server_url, values.token):
                self.session_token = values.token  # no keyring: this session only
                self.window.statusBar().showMessage(self.tokens.problem or "", 20000)
        if server_changed or values.token is not None:
            self._switching = asyncio.ensure_future(self._switch_client())
        s.sync()
        self.window._update_vram()

    async def _switch_client(self) -> None:
        old, self.client = self.client, self._make_client()
        self.ledger = InstanceLedger(self._ledger_path())
        self.runner.ledger = self.ledger
        self.nvml = NvmlReader() if is_local_url(self.server_url) else None
        self.poller.set_fetch(self.client.poll_models, lambda: self.client.has_token)
        self.tree.clear()  # the server itself changed: the one place a reset is right
        self.poller.poke()
        await old.aclose()

    # ------------------------------------------------------------------ running

    async def run(self, *, minimized: bool = False, screenshot: Path | None = None) -> int:
        self.window.setWindowIcon(app_icon())
        if minimized and not screenshot:
            self.window.showMinimized()  # the tray (issue 5) will let it start hidden instead
        else:
            self.window.show()
        self.poller.start()
        await self.start_chat()
        try:
            if screenshot is not None:
                await self.first_poll.wait()
                await asyncio.sleep(0)  # let the views lay out the applied rows
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                if not self.window.grab().save(str(screenshot)):
                    log.error("could not write the screenshot to %s", screenshot)
                    return 1
                return 0
            await self.closed.wait()
            return 0
        finally:
            await self.shutdown()

    async def start_chat(self) -> None:
        """The thread list, the last thread, and a word about answers cut off last time."""
        cut = self.chat_store.store.recovered
        if cut:
            self.window.statusBar().showMessage(
                f"{len(cut)} answer{'s were' if len(cut) > 1 else ' was'} cut off last time; "
                "kept in the chat history, marked interrupted.",
                20000,
            )
        await self.chat.refresh_threads()
        threads = await self.chat_store.run(self.chat_store.store.threads)
        if threads:
            await self.chat.open_thread(threads[0].id)

    async def shutdown(self) -> None:
        self.window.save_layout()
        await self.chat.aclose()
        await self.poller.aclose()
        await self.runner.aclose()
        await self.client.aclose()
        await self.chat_store.aclose()
        if self.sim is not None:
            self.sim.stop()
        self.window.close()


def _setup_logging(paths: AppPaths) -> Path:
    path = paths.log_dir / "lmgui.log"
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=1_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return path


def install_excepthook(log_path: Path) -> None:
    """Unexpected exceptions go to the log file and are reported once, never as a traceback."""
    reported = False

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        nonlocal reported
        log.error("unexpected error\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        if reported or QApplication.instance() is None:
            return
        reported = True
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "lmgui",
            f"lmgui hit an unexpected error ({kind.__name__}: {exc}). It keeps running; "
            f"details are in {log_path}.",
        )
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    sys.excepthook = hook


def run_gui(args: argparse.Namespace, paths: AppPaths | None = None) -> int:
    paths = paths or AppPaths.default()
    log_path = _setup_logging(paths)
    qt_app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt_app, QApplication)
    qt_app.setApplicationName("lmgui")
    qt_app.setApplicationDisplayName("lmgui")
    qt_app.setDesktopFileName("lmgui")
    qt_app.setWindowIcon(app_icon())
    install_excepthook(log_path)

    async def main() -> int:
        app = LmguiApp(
            paths,
            server=getattr(args, "server", None),
            token=getattr(args, "token", None),
            demo=bool(getattr(args, "demo", False)),
        )
        shot = getattr(args, "screenshot", None)
        return await app.run(
            minimized=bool(getattr(args, "minimized", False)),
            screenshot=Path(shot) if shot else None,
        )

    result: int = qasync.run(main())
    return result
