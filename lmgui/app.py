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
import time
import traceback
from pathlib import Path
from types import TracebackType

# qasync picks the Qt binding named by QT_API, else the first it finds (toolchain.md).
os.environ.setdefault("QT_API", "pyside6")
import qasync
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from lmgui.api.client import LMStudioClient, check_base_url, is_local_url, normalize_base_url
from lmgui.api.limits import Deadlines
from lmgui.api.records import LoadResult
from lmgui.core.actions import Actions, LoadRequest
from lmgui.core.autostart import Autostart
from lmgui.core.chat_store import AsyncChatStore, ChatStore
from lmgui.core.gpu import GpuMemory, NvmlReader
from lmgui.core.ledger import InstanceLedger
from lmgui.core.notify import KINDS, Notifier
from lmgui.core.paths import AppPaths, PrivateRotatingFileHandler
from lmgui.core.poller import ConnectionState, Poller, PollStatus
from lmgui.core.secrets import TokenStore
from lmgui.core.settings import Settings
from lmgui.core.snapshot import Snapshot, SnapshotDiff
from lmgui.core.vram import estimate_instance
from lmgui.qtmodels.model_tree import ModelTreeModel
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.icons import app_icon
from lmgui.ui.main_window import MainWindow
from lmgui.ui.settings_dialog import SettingsDialog, SettingsValues
from lmgui.ui.tray import TrayController, TrayInstance, TrayState

__all__ = ["LmguiApp", "run_gui"]

log = logging.getLogger("lmgui")

LOADING_POLL_MS = 500


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
        poll_ms: int | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        """``poll_ms`` replaces every poll interval (tests and benchmarks poll fast);
        ``deadlines`` the client's (tests meet a stuck server in a second, not in twenty)."""
        super().__init__()
        qt_app = QApplication.instance()
        assert isinstance(qt_app, QApplication), "create the QApplication first"
        # The app's coroutine ending stops the loop, never the last window closing: closing
        # first would stop qasync under a running coroutine (toolchain.md §2.1).
        qt_app.setQuitOnLastWindowClosed(False)
        self.paths = paths
        self.poll_ms = poll_ms
        self.settings = Settings(paths.config_dir / "lmgui.ini")
        self.tokens = TokenStore()
        self.sim = None
        if demo:
            from lmgui.sim.demo import start_demo_simulator

            self.sim = start_demo_simulator()
            server = self.sim.url
        self.deadlines = deadlines or Deadlines()
        self.server_url = check_base_url(server or self.settings.server_url)
        if server and not demo:
            self.settings.server_url = self.server_url
        # An explicit token (flag or environment) is used for this session only.
        self.session_token = (token or os.environ.get("LM_API_TOKEN") or "").strip() or None
        self.client = self._make_client()
        self.poller = Poller(
            self.client.poll_models,
            interval_ms=poll_ms or self.settings.poll_interval_ms,
            slow_after_ms=int(min(5.0, self.deadlines.models / 4) * 1000),
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
        self.notifier = Notifier(self.settings.notify, parent=self)
        self.autostart = Autostart()
        self.tray = TrayController(self._tray_state, parent=self)
        self.tray_available = TrayController.available()
        self.window.hide_on_close = self.tray_available and self.settings.close_to_tray
        self._last_state = self.poller.status.state
        self.poller.snapshot_changed.connect(self._on_poller_snapshot_changed)
        self.poller.poll_finished.connect(self.first_poll.set)
        self.poller.poll_finished.connect(self.tray.update)
        self.poller.status_changed.connect(self._on_poller_status_changed)
        self.window.closing.connect(self.closed.set)
        self.window.quit_requested.connect(self.quit)
        self.window.settings_requested.connect(self.open_settings)
        self.window.hidden_to_tray.connect(self._on_window_hidden_to_tray)
        self.window.visibility_changed.connect(lambda _v: self._update_poll_interval())
        self.runner.pending_changed.connect(self._on_runner_pending_changed)
        self.runner.load_finished.connect(self._on_runner_load_finished)
        self.runner.load_failed.connect(self._on_runner_load_failed)
        self.runner.unload_finished.connect(self._on_runner_unload_finished)
        self.notifier.notify.connect(self._on_notifier_notify)
        self.tray.toggle_window.connect(self.toggle_window)
        self.tray.refresh_requested.connect(self.poller.poke)
        self.tray.menu_opening.connect(self._on_tray_menu_opening)
        self.tray.unload_requested.connect(self.runner.unload)
        self.tray.chat_requested.connect(self._on_tray_chat_requested)
        self.tray.load_requested.connect(self.quick_load)
        self.tray.pause_toggled.connect(self.set_paused)
        self.tray.notifications_paused_toggled.connect(self._on_tray_notifications_paused)
        self.tray.quit_requested.connect(self.quit)

    # ------------------------------------------------------------------ parts

    def _token(self) -> str | None:
        return self.session_token or self.tokens.get(self.server_url)

    def _make_client(self) -> LMStudioClient:
        return LMStudioClient(self.server_url, self._token(), deadlines=self.deadlines)

    def _ledger_path(self) -> Path:
        return self.paths.state_dir / f"instances-{_slug(self.server_url)}.json"

    def _gpus(self) -> list[GpuMemory] | None:
        return self.nvml.read() if self.nvml is not None else None

    # ------------------------------------------------------------------ tray and background

    def _tray_state(self) -> TrayState:
        infos = self.ledger.infos()
        now = time.time()
        instances = []
        for model, inst in self.poller.snapshot.instances:
            info = infos.get(inst.id)
            deadline = info.idle_deadline if info else None
            instances.append(
                TrayInstance(
                    inst.id,
                    model.key,
                    inst.context_length,
                    estimate_instance(
                        model,
                        context_length=inst.context_length,
                        gpu_fraction=info.gpu_fraction if info and info.gpu_fraction else 1.0,
                        kv_on_gpu=inst.offload_kv_cache_to_gpu,
                    ).vram_bytes,
                    max(0.0, deadline - now) if deadline else None,
                )
            )
        names = {m.key: m.display_name for m in self.poller.snapshot.models}
        keys = [k for k in self.settings.favourites if k in names]
        keys += [k for k in self.settings.recent if k in names and k not in keys]
        quick = [(k, ("★ " if k in self.settings.favourites else "") + names[k]) for k in keys]
        return TrayState(
            server=self.server_url,
            connection=self.poller.status.state,
            instances=instances,
            loading=bool(self.runner.loading),
            last_refresh=self.poller.status.last_success,
            gpus=self._gpus(),
            paused=not self.poller.running,
            notifications_paused=self.notifier.paused,
            window_visible=self.window.isVisible(),
            quick_loads=quick,
        )

    def toggle_window(self) -> None:
        if self.window.isVisible() and not self.window.isMinimized():
            self.window.hide()
        else:
            self.window.showNormal()
            self.window.raise_()
            self.window.activateWindow()

    def quit(self) -> None:
        self.window.hide_on_close = False
        self.closed.set()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self.poller.stop()
        else:
            self.poller.start()
        self.tray.update()

    def _on_tray_notifications_paused(self, paused: bool) -> None:
        self.notifier.paused = paused

    def _on_tray_menu_opening(self) -> None:
        if self.poller.running:
            self.poller.poke()

    def _on_tray_chat_requested(self, instance_id: str) -> None:
        self.window.showNormal()
        self.window.chat_dock.show()
        self.chat.refresh_models()
        self.chat._spawn(self.chat.new_thread(instance_id))

    def quick_load(self, model_key: str) -> None:
        """Load with the settings last used for this model (the tray's Load menu)."""
        request = self.settings.load_defaults().get(model_key) or LoadRequest(model_key)
        self.settings.remember_load(request)
        self.runner.load(request)

    def _update_poll_interval(self) -> None:
        """Visible: the normal rate; hidden: slower; a load in flight: every 0.5 s at least."""
        if self.window.isVisible():
            interval = self.poll_ms or self.settings.poll_interval_ms
        else:
            interval = self.poll_ms or self.settings.hidden_poll_interval_ms
        if self.runner.loading:
            interval = min(LOADING_POLL_MS, interval)
        self.poller.set_interval(interval)

    def _on_runner_pending_changed(self) -> None:
        self._update_poll_interval()
        self.tray.update()

    def _on_window_hidden_to_tray(self) -> None:
        if not self.settings.close_to_tray_explained:
            self.settings.close_to_tray_explained = True
            self.tray.show_message(
                "lmgui is still running",
                "Closing the window keeps lmgui in the tray, watching LM Studio. Quit from the "
                "tray menu, or turn this off in Settings (Ctrl+,).",
            )

    def _on_notifier_notify(self, kind: str, title: str, body: str) -> None:
        if self.tray_available:
            self.tray.show_message(title, body)
        elif kind in ("vanished", "server"):  # the window itself reports loads and unloads
            self.window.statusBar().showMessage(f"{title}: {body}", 15000)

    def _on_runner_load_finished(self, request: LoadRequest, result: LoadResult) -> None:
        self.notifier.say(
            "loaded",
            result.instance_id,
            f"Loaded {result.instance_id}",
            f"{request.model_key} is ready"
            + (
                f", loaded in {result.load_time_seconds:.1f} s."
                if result.load_time_seconds
                else "."
            ),
        )

    def _on_runner_load_failed(self, request: LoadRequest, message: str) -> None:
        self.notifier.say("load_failed", f"{request.model_key}:{message}", "Load failed", message)

    def _on_runner_unload_finished(self, instance_id: str) -> None:
        self.notifier.say("unloaded", instance_id, f"Unloaded {instance_id}", "Its memory is free.")

    def _on_poller_status_changed(self, status: PollStatus) -> None:
        was, self._last_state = self._last_state, status.state
        if was.online and not status.state.online:
            self.notifier.say("server", "offline", "LM Studio is unreachable", status.message)
        elif status.state.online and not was.online and was is not ConnectionState.CONNECTING:
            self.notifier.say(
                "server", "online", "LM Studio is back", f"{self.server_url} answers again."
            )
        self.tray.update()

    def _vanished(self, diff: SnapshotDiff) -> None:
        """Instances gone without lmgui asking: say so, and why when it is known."""
        infos = self.ledger.infos()
        for iid in diff.instances_removed:
            model_key = next((c.model.key for c in diff.changed if iid in c.instances_removed), "")
            if self.runner.expected("removed", iid, model_key):
                continue
            info = infos.get(iid)
            if info and info.idle_deadline and info.idle_deadline <= time.time() + 2:
                why = "Its idle TTL ran out on the server."
            else:
                why = (
                    "Unloaded without lmgui: an idle TTL, auto-evict of JIT loads, or another "
                    "client."
                )
            self.notifier.say("vanished", iid, f"{iid} was unloaded", why)

    def _on_poller_snapshot_changed(self, diff: SnapshotDiff, snapshot: Snapshot) -> None:
        first = not self.tree.models()
        if not first:
            self._vanished(diff)
        self.tree.apply(diff, self.runner.expected)
        self.chat.models_changed()
        if first:
            # What start-up and the first fill built lives as long as the window: keep it out of
            # the cyclic GC's full passes, which otherwise stall the GUI thread now and then.
            gc.freeze()
        self.ledger.sync(snapshot)
        self.tree.set_instance_info(self.ledger.infos())

    # ------------------------------------------------------------------ settings

    def open_settings(self) -> SettingsDialog:
        s = self.settings
        profiles = s.profiles
        if not any(url == self.server_url for _, url in profiles):
            profiles = [*profiles, ("Current", self.server_url)]
        dialog = SettingsDialog(
            SettingsValues(
                self.server_url,
                None,
                s.poll_interval_ms,
                s.vram_budget_gb,
                s.confirm_unload,
                hidden_poll_interval_ms=s.hidden_poll_interval_ms,
                profiles=tuple(profiles),
                close_to_tray=s.close_to_tray,
                start_minimized=s.start_minimized,
                start_on_login=self.autostart.is_enabled(),
                notify={k: s.notify(k) for k in KINDS},
                favourites=tuple(s.favourites),
            ),
            has_token=self._token() is not None,
            keyring_note=self.tokens.problem,
            tray_available=self.tray_available,
            autostart_supported=self.autostart.supported,
            load_defaults=s.load_defaults(),
            parent=self.window,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.applied.connect(self.apply_settings)
        dialog.open()
        return dialog

    def apply_settings(self, values: SettingsValues) -> None:
        s = self.settings
        s.poll_interval_ms = values.poll_interval_ms
        s.hidden_poll_interval_ms = values.hidden_poll_interval_ms
        s.vram_budget_gb = values.vram_budget_gb
        s.confirm_unload = values.confirm_unload
        if values.profiles:
            s.profiles = list(values.profiles)
        s.close_to_tray = values.close_to_tray
        self.window.hide_on_close = self.tray_available and values.close_to_tray
        s.start_minimized = values.start_minimized
        for kind, on in values.notify.items():
            s.set_notify(kind, on)
        s.favourites = list(values.favourites)
        for key in values.forget_defaults:
            s.forget_load_defaults(key)
        if values.start_on_login != self.autostart.is_enabled():
            try:
                if values.start_on_login:
                    self.autostart.enable()
                else:
                    self.autostart.disable()
            except OSError as exc:
                self.window.statusBar().showMessage(
                    f"Could not change starting on login: {exc}", 20000
                )
        self._update_poll_interval()
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
        if self.tray_available:
            self.tray.show()
        minimized = minimized or self.settings.start_minimized
        if minimized and not screenshot:
            if self.tray_available:
                self._update_poll_interval()  # start in the tray, polling at the hidden rate
            else:
                self.window.showMinimized()  # no tray to start in: never hide to nowhere
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
        handler: logging.Handler = PrivateRotatingFileHandler(
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
    paths.tighten()
    log_path = _setup_logging(paths)
    qt_app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt_app, QApplication)
    qt_app.setApplicationName("lmgui")
    qt_app.setApplicationDisplayName("lmgui")
    qt_app.setDesktopFileName("lmgui")
    qt_app.setWindowIcon(app_icon())
    install_excepthook(log_path)

    async def main() -> int:
        try:
            app = LmguiApp(
                paths,
                server=getattr(args, "server", None),
                token=getattr(args, "token", None),
                demo=bool(getattr(args, "demo", False)),
            )
        except Exception as exc:  # start-up failed: one sentence, the details in the log
            log.exception("start-up failed")
            message = f"lmgui could not start: {str(exc).rstrip('.')} (details in {log_path})."
            sys.stderr.write(message + "\n")
            if qt_app.platformName() not in ("offscreen", "minimal"):
                box = QMessageBox(QMessageBox.Icon.Critical, "lmgui", message)
                box.setTextFormat(Qt.TextFormat.PlainText)
                box.exec()
            return 1
        shot = getattr(args, "screenshot", None)
        return await app.run(
            minimized=bool(getattr(args, "minimized", False)),
            screenshot=Path(shot) if shot else None,
        )

    result: int = qasync.run(main())
    return result
