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
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

# qasync picks the Qt binding named by QT_API, else the first it finds (toolchain.md).
os.environ.setdefault("QT_API", "pyside6")
import qasync
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox

from lmgui.api.client import LMStudioClient, check_base_url, display_url
from lmgui.api.errors import ApiError
from lmgui.api.limits import Deadlines
from lmgui.api.records import Instance, LoadResult
from lmgui.core.actions import Actions, LoadRequest
from lmgui.core.autostart import Autostart
from lmgui.core.chat_store import AsyncChatStore
from lmgui.core.connection import ServerConnection
from lmgui.core.event_log import EventLog
from lmgui.core.event_store import EVENTS_FILE, AsyncEventStore
from lmgui.core.events import Event
from lmgui.core.format import busy_unload_question
from lmgui.core.launcher import APP_ID
from lmgui.core.ledger import InstanceLedger
from lmgui.core.make_way import MakeWay, MakeWayEvent, MakeWaySettings
from lmgui.core.notices import Notice, NotificationPolicy
from lmgui.core.notify import Notifier
from lmgui.core.paths import AppPaths, PrivateRotatingFileHandler
from lmgui.core.poller import Poller, PollStatus
from lmgui.core.saved_sets import SavedSetStore
from lmgui.core.secrets import TokenStore
from lmgui.core.settings import Settings, SettingsValues
from lmgui.core.snapshot import Snapshot, SnapshotDiff
from lmgui.core.snapshot_actions import SnapshotActions
from lmgui.core.tasks import TaskSet
from lmgui.core.tray_state import TrayState, build_tray_state
from lmgui.qtmodels.model_tree import ModelTreeModel
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.icons import app_icon
from lmgui.ui.main_window import MainWindow
from lmgui.ui.settings_dialog import SettingsDialog
from lmgui.ui.snapshot_menu import SnapshotMenu
from lmgui.ui.timeline import TimelineDock
from lmgui.ui.tray import TrayController

__all__ = ["LmguiApp", "run_gui"]

log = logging.getLogger("lmgui")

LOADING_POLL_MS = 500


class LmguiApp(QObject):
    """Owns every long-lived part and the order they start and stop in; wiring only."""

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
        self.deadlines = deadlines
        self.settings = Settings(paths.config_dir / "lmgui.ini")
        self.tokens = TokenStore()
        self.sim = None
        if demo:
            from lmgui.sim.demo import DEMO_TRAFFIC_PER_MINUTE, start_demo_simulator

            rate = DEMO_TRAFFIC_PER_MINUTE if self.settings.demo_traffic else 0.0
            self.sim = start_demo_simulator(traffic_per_minute=rate)
            server = self.sim.url
        url = check_base_url(server or self.settings.server_url)
        if server and not demo:
            self.settings.server_url = url
        # An explicit token (flag or environment) is used for this session only.
        session_token = (token or os.environ.get("LM_API_TOKEN") or "").strip() or None
        self.conn = self._new_connection(url, session_token)
        self.tasks = TaskSet("lmgui", self._say)
        self._switch_lock = asyncio.Lock()
        self.actions = Actions(lambda: self.conn, parent=self, report=self._say)
        self.make_way = self._new_make_way(self.conn)
        self.snapshots = SnapshotActions(
            lambda: self.conn,
            lambda conn: SavedSetStore(self.paths.snapshots(conn.url)),
            self.actions,
            parent=self,
        )
        self.tree = ModelTreeModel(self)
        self.window = MainWindow(
            self.tree,
            self.conn.poller,
            self.actions,
            self.settings,
            server_url=lambda: self.server_url,
            gpus=lambda: self.conn.gpus,
            hardware=lambda: self.conn.hardware,
            instance_infos=lambda: self.ledger.infos(),
        )
        # Opened on the store's own thread by the first call: run_gui awaits open() at start.
        self.chat_store = AsyncChatStore(paths.data_dir / "chats.sqlite3")
        self.chat = ChatPane(
            self.chat_store,
            lambda: self.client,
            lambda: self.server_url,
            lambda: list(self.poller.snapshot.models),
            on_used=lambda instance_id: self.ledger.touch(instance_id),
        )
        # The timeline: recorded whenever lmgui runs, window or tray; its dock reads nothing
        # until first shown, and is added before the chat pane restores the window's layout.
        self.event_log = EventLog(
            AsyncEventStore(paths.data_dir / EVENTS_FILE),
            expected=self.actions.expected,
            vram=lambda: (self.tree.total_vram(), self.window.dialogs.vram_context().total_bytes),
            parent=self,
        )
        self.event_log.follow(self.conn)
        self.timeline = TimelineDock(
            self.event_log.store, lambda: self.conn.url, parent=self.window
        )
        self.window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.timeline)
        self.timeline.setAllowedAreas(
            Qt.DockWidgetArea.BottomDockWidgetArea | Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.timeline.hide()
        self.timeline.status.connect(lambda text: self.window.statusBar().showMessage(text, 15000))
        self.event_log.recorded.connect(self._on_event_log_recorded)
        timeline_action = self.timeline.toggleViewAction()
        timeline_action.setText("&Timeline")
        timeline_action.setShortcut(QKeySequence("Ctrl+Shift+T"))
        timeline_action.setStatusTip(
            "What happened on the server: who loaded what, and why it went"
        )
        self.window.addAction(timeline_action)
        self.window.commands.view_menu.addSeparator()
        self.window.commands.view_menu.addAction(timeline_action)
        self._newest_event: dict[str, int] = {}
        """The newest recorded event's id per identifier ("" for any): a notification opens
        the timeline there."""
        self._notice_key: str | None = None
        self.window.set_chat_pane(self.chat)
        self.window.dialogs.pinned = self.snapshots.pinned
        self.window.pinned = self.snapshots.pinned
        self.window.pin_toggled.connect(self.snapshots.set_pinned)
        self.snapshots.changed.connect(self._on_snapshots_changed)
        self.tree.set_pinned(self.snapshots.pinned())
        self.snapshot_menu = SnapshotMenu(
            self.window, self.snapshots, free_gpu=self.free_gpu, say=self._say
        )
        self.window.menuBar().insertMenu(
            self.window.commands.view_menu.menuAction(), self.snapshot_menu
        )
        self.closed = asyncio.Event()
        self.first_poll = asyncio.Event()
        self.notifier = Notifier(self.settings.notify, parent=self)
        self.policy = NotificationPolicy(url)
        self.autostart = Autostart()
        self.tray = TrayController(self.tray_state, parent=self)
        self.tray_available = TrayController.available()
        self.window.hide_on_close = self.tray_available and self.settings.close_to_tray
        self._wire_connection(self.conn)
        self.window.closing.connect(self.closed.set)
        self.window.quit_requested.connect(self.quit)
        self.window.settings_requested.connect(self.open_settings)
        self.window.hidden_to_tray.connect(self._on_window_hidden_to_tray)
        self.window.visibility_changed.connect(lambda _v: self._update_poll_interval())
        self.actions.pending_changed.connect(self._on_actions_pending_changed)
        self.actions.load_finished.connect(self._on_actions_load_finished)
        self.actions.load_failed.connect(self._on_actions_load_failed)
        self.actions.unload_finished.connect(self._on_actions_unload_finished)
        self.notifier.notify.connect(self._on_notifier_notify)
        self.tray.toggle_window.connect(self.toggle_window)
        self.tray.refresh_requested.connect(lambda: self.poller.poke())
        self.tray.menu_opening.connect(self._on_tray_menu_opening)
        self.tray.unload_requested.connect(self._on_tray_unload_requested)
        self.tray.chat_requested.connect(self._on_tray_chat_requested)
        self.tray.load_requested.connect(self.quick_load)
        self.tray.pause_toggled.connect(self.set_paused)
        self.tray.notifications_paused_toggled.connect(self._on_tray_notifications_paused)
        self.tray.quit_requested.connect(self.quit)
        self.tray.free_requested.connect(self.free_gpu)
        self.tray.timeline_requested.connect(lambda: self.open_timeline())
        self.tray.icon.messageClicked.connect(self._on_tray_message_clicked)
        self.tray.make_way_restore_requested.connect(self._on_tray_make_way_restore_requested)
        self.tray.restore_requested.connect(lambda: self.snapshots.restore())
        self.tray.pin_toggled.connect(self.snapshots.set_pinned)
        self.snapshots.progress.connect(lambda text: self.window.statusBar().showMessage(text))
        self.snapshots.finished.connect(self._on_snapshots_finished)

    # ------------------------------------------------------------------ the server

    @property
    def client(self) -> LMStudioClient:
        return self.conn.client

    @property
    def poller(self) -> Poller:
        return self.conn.poller

    @property
    def ledger(self) -> InstanceLedger:
        return self.conn.ledger

    @property
    def server_url(self) -> str:
        return self.conn.url

    def _new_connection(self, url: str, session_token: str | None) -> ServerConnection:
        return ServerConnection(
            url,
            state_dir=self.paths.state_dir,
            tokens=self.tokens,
            session_token=session_token,
            deadlines=self.deadlines,
            interval_ms=self.poll_ms or self.settings.poll_interval_ms,
            parent=self,
        )

    def _new_make_way(self, conn: ServerConnection) -> MakeWay:
        return MakeWay(
            SavedSetStore(self.paths.snapshots(conn.url)),
            offered=self.settings.make_way_offered,
            expect=lambda kind, ids: self.actions.expect(kind, ids),
        )

    def _wire_connection(self, conn: ServerConnection) -> None:
        conn.problem.connect(self._say)
        poller = conn.poller
        # After the connection's own handler, which read the GPU for this poll.
        poller.poll_finished.connect(self._on_poller_poll_finished_make_way)
        poller.snapshot_changed.connect(self._on_poller_snapshot_changed)
        poller.poll_finished.connect(self.first_poll.set)
        poller.poll_finished.connect(self.tray.update)
        poller.status_changed.connect(self._on_poller_status_changed)

    def switch_server(self, url: str, token: str | None = None) -> asyncio.Task[None]:
        """Talk to ``url`` from now on (``token``: None leaves the stored one, "" removes it).
        In-flight loads and unloads on the old server end with a sentence."""
        return self.tasks.spawn(self._switch_server(url, token), f"Switching to {url}")

    async def _switch_server(self, url: str, token: str | None) -> None:
        async with self._switch_lock:  # a second switch waits for the first, never overlaps
            if url != self.conn.url:
                old = self.conn
                await self.actions.abandon(f"lmgui switched to {display_url(url)}")
                self.conn = self._new_connection(url, None)
                self.make_way = self._new_make_way(self.conn)  # an episode is per server
                self.event_log.follow(self.conn)
                self.timeline.refresh()  # "this server" is the new one
                self.policy = NotificationPolicy(url)
                self._wire_connection(self.conn)
                self.window.set_poller(self.conn.poller)
                self.tree.clear()  # the server itself changed: the one place a reset is right
                self.tree.set_pinned(self.snapshots.pinned())  # pins are per server
                self.chat.models_changed()
                if old.poller.running:
                    self.conn.poller.start()
                self._update_poll_interval()
                await old.aclose()
                old.deleteLater()
            if token is not None:
                problem = await self.conn.set_token(token)
                if problem:
                    self.window.statusBar().showMessage(problem, 20000)
            self.tray.update()

    # ------------------------------------------------------------------ tray and background

    def tray_state(self) -> TrayState:
        return build_tray_state(
            server=self.server_url,
            snapshot=self.poller.snapshot,
            status=self.poller.status,
            infos=self.ledger.infos(),
            favourites=self.settings.favourites,
            recent=self.settings.recent,
            loading=bool(self.actions.loading),
            gpus=self.conn.gpus,
            paused=not self.poller.running,
            notifications_paused=self.notifier.paused,
            window_visible=self.window.isVisible(),
            pinned=self.snapshots.pinned(),
            restorable=len(saved.instances) if (saved := self.snapshots.restorable()) else None,
            snapshots_busy=self.snapshots.working,
            make_way=self.make_way.state_sentence(),
            make_way_restore=self.make_way.restore_available,
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

    def _say(self, sentence: str) -> None:
        """A failure of lmgui's own background work, said once in the status bar."""
        self.window.statusBar().showMessage(sentence, 20000)

    def _on_tray_notifications_paused(self, paused: bool) -> None:
        self.notifier.paused = paused

    def _on_tray_menu_opening(self) -> None:
        if self.poller.running:
            self.poller.poke()

    def _on_tray_unload_requested(self, instance_ids: list[str]) -> QMessageBox | None:
        """Unload from the tray; an instance answering right now is only unloaded when the user
        says so (the tray has no dialog of its own, so the question comes up by itself)."""
        wanted = set(instance_ids)
        return self._unless_busy(
            [i for _, i in self.poller.snapshot.instances if i.id in wanted],
            lambda: self.actions.unload(instance_ids),
        )

    def free_gpu(self) -> QMessageBox | None:
        """Save the loaded set as "before freeing" and unload all but the pinned instances,
        asking first when one of them is answering right now."""
        pins = self.snapshots.pinned()
        return self._unless_busy(
            [i for _, i in self.poller.snapshot.instances if i.id not in pins],
            self.snapshots.free_gpu,
            title="Free the GPU while answering?",
        )

    def _unless_busy(
        self,
        instances: list[Instance],
        then: Callable[[], object],
        *,
        title: str = "Unload while answering?",
    ) -> QMessageBox | None:
        """``then()`` at once, or after a Yes when one of ``instances`` is busy."""
        question = busy_unload_question(instances)
        if question is None:
            then()
            return None
        box = QMessageBox(
            QMessageBox.Icon.Question,
            title,
            question,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        box.setTextFormat(Qt.TextFormat.PlainText)  # instance ids come from the server
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        yes = QMessageBox.StandardButton.Yes
        box.finished.connect(lambda result: then() if result == yes else None)
        box.open()
        return box

    # ------------------------------------------------------------------ making way

    def make_way_settings(self) -> MakeWaySettings:
        s = self.settings
        return MakeWaySettings(
            enabled=s.make_way,
            margin_bytes=int(s.make_way_margin_gb * 1e9),
            auto_restore=s.make_way_auto_restore,
        )

    def _on_poller_poll_finished_make_way(self) -> None:
        conn = self.conn
        if conn.nvml is None:
            return  # a server on another machine: its GPU cannot be watched from here
        self.tasks.spawn(self._make_way_tick(conn, self.make_way), "Making way")

    async def _make_way_tick(self, conn: ServerConnection, make_way: MakeWay) -> None:
        events = await make_way.tick(
            conn.client,
            self.make_way_settings(),
            conn.gpus,
            conn.gpu_processes,
            conn.poller.snapshot.models,
            conn.ledger.infos(),
        )
        for event in events:
            self._on_make_way_event(event)

    def _on_make_way_event(self, event: MakeWayEvent) -> None:
        """Said once by core (and logged there): here it becomes a notification."""
        if event.kind == "offer":
            self.settings.make_way_offered = True
            self.notifier.say(
                "make_way",
                "offer",
                "Make way for other GPU programs?",
                f"{event.sentence} Settings, Memory, can turn on making way for them.",
            )
        else:
            who = ", ".join(event.programs)
            title = {
                "made_way": f"Made way for {who}" if who else "Made way",
                "restored": "Models back",
                "restore_available": "Restore available",
            }.get(event.kind, "Making way")
            self.notifier.say("make_way", f"{event.kind}:{event.sentence}", title, event.sentence)
            self.window.statusBar().showMessage(event.sentence, 20000)
        if event.kind in ("made_way", "restored", "restore_available"):
            self.event_log.action(event.sentence)
        if event.kind in ("made_way", "restored"):
            self.poller.poke()
        self.tray.update()

    def _on_tray_make_way_restore_requested(self) -> None:
        make_way, client = self.make_way, self.client

        async def restore() -> None:
            try:
                event = await make_way.restore_now(client)
            except ApiError as exc:
                self._say(str(exc))
                return
            self._on_make_way_event(event)

        self.tasks.spawn(restore(), "Restoring what making way unloaded")

    def _on_snapshots_changed(self) -> None:
        self.tree.set_pinned(self.snapshots.pinned())
        self.tray.update()

    def _on_snapshots_finished(self, sentence: str, ok: bool) -> None:
        self.event_log.action(sentence)
        self.window.statusBar().showMessage(sentence, 20000)
        self.notifier.say("snapshot", sentence, "lmgui" if ok else "lmgui: not all done", sentence)
        self.tray.update()

    def _on_tray_chat_requested(self, instance_id: str) -> None:
        self.window.show_chat()
        self.chat.chat_with(instance_id)

    def quick_load(self, model_key: str) -> None:
        """Load with the settings last used for this model (the tray's Load menu)."""
        request = self.settings.load_defaults().get(model_key) or LoadRequest(model_key)
        self.settings.remember_load(request)
        self.actions.load(request)

    def _update_poll_interval(self) -> None:
        """Visible: the normal rate; hidden: slower; a load in flight: every 0.5 s at least."""
        if self.window.isVisible():
            interval = self.poll_ms or self.settings.poll_interval_ms
        else:
            interval = self.poll_ms or self.settings.hidden_poll_interval_ms
        if self.actions.loading:
            interval = min(LOADING_POLL_MS, interval)
        self.poller.set_interval(interval)

    def _on_actions_pending_changed(self) -> None:
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

    def _on_event_log_recorded(self, events: list[Event]) -> None:
        self.timeline.add_events(events)
        for e in events:
            if e.id is not None:
                self._newest_event[""] = e.id
                if e.identifier:
                    self._newest_event[e.identifier] = e.id

    def open_timeline(self, event_id: int | None = None) -> None:
        """Show the window and the timeline, at ``event_id`` when given."""
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()
        if event_id is None:
            self.timeline.show()
            self.timeline.raise_()
        else:
            self.timeline.show_event(event_id)

    def _on_tray_message_clicked(self) -> None:
        """A notification was clicked: the timeline at the event it was about.

        After this click's other signals: where the balloon sits on the icon, the same click
        also toggles the window, which must not hide what this opens."""
        key = self._notice_key or ""
        event_id = self._newest_event.get(key, self._newest_event.get(""))
        QTimer.singleShot(0, lambda: self.open_timeline(event_id))

    def _notify(self, notices: list[Notice]) -> None:
        if notices:
            self._notice_key = notices[-1].key
        for n in notices:
            self.notifier.say(n.kind, n.key, n.title, n.body)

    def _on_notifier_notify(self, kind: str, title: str, body: str) -> None:
        if self.tray_available:
            self.tray.show_message(title, body)
        elif kind in ("vanished", "server"):  # the window itself reports loads and unloads
            self.window.statusBar().showMessage(f"{title}: {body}", 15000)

    def _on_actions_load_finished(self, request: LoadRequest, result: LoadResult) -> None:
        self._notify([self.policy.loaded(request.model_key, result)])

    def _on_actions_load_failed(self, request: LoadRequest, message: str) -> None:
        self._notify([self.policy.load_failed(request.model_key, message)])
        self.event_log.load_failed(request.model_key, message)

    def _on_actions_unload_finished(self, instance_id: str) -> None:
        self._notify([self.policy.unloaded(instance_id)])

    def _on_poller_status_changed(self, status: PollStatus) -> None:
        self._notify(self.policy.status(status))
        self.tray.update()

    def _on_poller_snapshot_changed(self, diff: SnapshotDiff, snapshot: Snapshot) -> None:
        first = not self.tree.models()
        if not first:
            self._notify(self.policy.vanished(diff, self.actions.expected, self.ledger.infos()))
            self._notify(self.policy.appeared(diff, self.actions.expected))
        self.tree.apply(diff, self.actions.expected)
        self.chat.models_changed()
        if first:
            # What start-up and the first fill built lives as long as the window: keep it out of
            # the cyclic GC's full passes, which otherwise stall the GUI thread now and then.
            gc.freeze()
        self.ledger.sync(snapshot, self.poller.snapshot_asked_at)
        self.tree.set_instance_info(self.ledger.infos())

    # ------------------------------------------------------------------ settings

    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(
            self.settings.values(self.server_url, start_on_login=self.autostart.is_enabled()),
            # What the connection already knows: the keyring was read off the GUI thread.
            has_token=self.client.has_token,
            keyring_note=self.tokens.problem,
            tray_available=self.tray_available,
            autostart_supported=self.autostart.supported,
            load_defaults=self.settings.load_defaults(),
            parent=self.window,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.applied.connect(self.apply_settings)
        dialog.open()
        return dialog

    def apply_settings(self, values: SettingsValues) -> None:
        """What the Settings dialog said, applied at once, without a restart."""
        server_changed = values.server_url != self.server_url
        traffic_changed = values.demo_traffic != self.settings.demo_traffic
        self.settings.store(values)
        self.window.hide_on_close = self.tray_available and values.close_to_tray
        if self.sim is not None and traffic_changed:
            from lmgui.sim.demo import DEMO_TRAFFIC_PER_MINUTE, set_demo_traffic

            set_demo_traffic(self.sim, DEMO_TRAFFIC_PER_MINUTE if values.demo_traffic else 0.0)
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
        if server_changed or values.token is not None:
            self.switch_server(values.server_url, values.token)
        self.window.refresh_vram()

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
        cut = await self.chat_store.recovered()
        if cut:
            self.window.statusBar().showMessage(
                f"{len(cut)} answer{'s were' if len(cut) > 1 else ' was'} cut off last time; "
                "kept in the chat history, marked interrupted.",
                20000,
            )
        await self.chat.refresh_threads()
        threads = await self.chat_store.threads()
        if threads:
            await self.chat.open_thread(threads[0].id)

    async def shutdown(self) -> None:
        self.window.save_layout()
        # Polling stops first: its signals feed the task owners closed below.
        await self.conn.poller.aclose()
        await self.chat.aclose()
        await self.tasks.aclose()
        await self.snapshots.aclose()
        await self.timeline.aclose()
        await self.event_log.aclose()
        await self.actions.aclose()
        await self.conn.aclose()
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
    qt_app.setDesktopFileName(APP_ID)  # the launcher's lmgui.desktop: its icon on Wayland
    install_excepthook(log_path)

    async def main() -> int:
        try:
            qt_app.setWindowIcon(app_icon())  # an installation without its icons stops here
            app = LmguiApp(
                paths,
                server=getattr(args, "server", None),
                token=getattr(args, "token", None),
                demo=bool(getattr(args, "demo", False)),
            )
            # The chat history is opened on its own thread; a file it cannot read (one from a
            # newer lmgui) refuses the start here, in the same sentence.
            await app.chat_store.open()
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
