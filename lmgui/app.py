"""The composition root: QApplication on a qasync loop, settings, client, poller, window.

Wiring and ordered shutdown only; the logic lives in ``core`` and ``ui``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import logging.handlers
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

# qasync picks the Qt binding named by QT_API, else the first it finds (toolchain.md).
os.environ.setdefault("QT_API", "pyside6")
import qasync
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox

from lmgui.api.client import LMStudioClient, check_base_url, display_url
from lmgui.api.errors import ApiError, InvalidServerUrl
from lmgui.api.limits import Deadlines
from lmgui.api.records import Instance, LoadResult
from lmgui.core.actions import Actions, LoadRequest
from lmgui.core.autostart import Autostart
from lmgui.core.chat_store import AsyncChatStore
from lmgui.core.connection import ServerConnection
from lmgui.core.event_log import EventLog
from lmgui.core.event_store import EVENTS_FILE, AsyncEventStore
from lmgui.core.events import Event
from lmgui.core.fleet import Fleet
from lmgui.core.format import busy_unload_question
from lmgui.core.launcher import APP_ID
from lmgui.core.ledger import InstanceLedger
from lmgui.core.make_way import MakeWay, MakeWayEvent, MakeWaySettings
from lmgui.core.messages import state_text
from lmgui.core.notices import Notice, NotificationPolicy
from lmgui.core.notify import Notifier
from lmgui.core.paths import AppPaths, PrivateRotatingFileHandler
from lmgui.core.poller import ConnectionState, Poller, PollStatus
from lmgui.core.profiles import Profile
from lmgui.core.saved_sets import SavedSetStore
from lmgui.core.secrets import TokenStore
from lmgui.core.settings import Settings, SettingsValues
from lmgui.core.snapshot import Snapshot, SnapshotDiff
from lmgui.core.snapshot import diff as snapshot_diff
from lmgui.core.snapshot_actions import SnapshotActions
from lmgui.core.tasks import TaskSet
from lmgui.core.tray_state import FleetTrayState, build_tray_state
from lmgui.qtmodels.model_tree import ModelTreeModel
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.icons import app_icon
from lmgui.ui.main_window import MainWindow
from lmgui.ui.settings_dialog import SettingsDialog
from lmgui.ui.snapshot_menu import SnapshotMenu
from lmgui.ui.timeline import TimelineDock
from lmgui.ui.tray import TrayController

if TYPE_CHECKING:
    from lmgui.sim.demo import DemoServer

__all__ = ["LmguiApp", "run_gui"]

log = logging.getLogger("lmgui")

LOADING_POLL_MS = 500
REUSE_LIST_HIDDEN_S = 30.0
"""While the window is hidden, how long a model list is reused by polls that find the SDK
channel's instances unchanged (the catalog changes rarely: a download, a model removed)."""
TRAY_COALESCE_MS = 250
TRAY_QUIET_MS = 5000


class LmguiApp(QObject):
    """Owns every long-lived part and the order they start and stop in; wiring only."""

    def __init__(
        self,
        paths: AppPaths,
        *,
        server: str | None = None,
        token: str | None = None,
        demo: bool = False,
        demo_servers: int = 1,
        poll_ms: int | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        """``server``: watch only this server (remembered as the default one); else the
        enabled server profiles. ``demo``: ``demo_servers`` simulators instead, for this session.
        ``poll_ms`` replaces every poll interval (tests and benchmarks poll fast);
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
        self.demo_servers: list[DemoServer] = []
        self.session_servers = demo or bool(server)
        """The servers came from the command line (or the demo): Settings does not store them
        as profiles."""
        if demo:
            from lmgui.sim.demo import DEMO_TRAFFIC_PER_MINUTE, start_demo_fleet

            rate = DEMO_TRAFFIC_PER_MINUTE if self.settings.demo_traffic else 0.0
            self.demo_servers = start_demo_fleet(demo_servers, traffic_per_minute=rate)
            self.sim = self.demo_servers[0].sim
            profiles = [Profile(d.name, check_base_url(d.url)) for d in self.demo_servers]
        elif server:
            url = check_base_url(server)
            self.settings.server_url = url
            profiles = [Profile(display_url(url), url)]
        else:
            profiles = self._profiles_of(self.settings.profiles, self.settings.server_url)
        # An explicit token (flag or environment) is used for this session only, and only with
        # the server it is meant for: the one the command line named, else the default server
        # (never another profile's machine).
        session_token = (token or os.environ.get("LM_API_TOKEN") or "").strip() or None
        token_for = profiles[0].url if server or demo else self._default_url()
        self.fleet = Fleet(
            paths.state_dir,
            self.tokens,
            interval_ms=self.poll_ms or self.settings.poll_interval_ms,
            deadlines=deadlines,
            session_tokens={token_for: session_token} if session_token and token_for else None,
            parent=self,
        )
        self.fleet.set_profiles(profiles)
        if not self.fleet.connections():  # no profile with a usable address: the default one
            log.warning("no watched server has a usable address; using the default server")
            self.fleet.set_profiles(self._profiles_of([], self.settings.server_url))
        self._last_conn = self.fleet.connections()[0][1]
        self.current_url = self._last_conn.url
        """The window's current server: the selected row's (the first server at start)."""
        self.tasks = TaskSet("lmgui", self._say)
        self.actions = Actions(
            self._connection_or_none,
            parent=self,
            connections=lambda: [c for _, c in self.fleet.connections()],
            report=self._say,
        )
        self._make_ways: dict[str, MakeWay] = {}
        self.snapshots = SnapshotActions(
            self._connection,
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
            gpus=lambda url: c.gpus if (c := self._connection_or_none(url)) else None,
            hardware=lambda url: c.hardware if (c := self._connection_or_none(url)) else None,
            instance_infos=lambda url: (
                c.ledger.infos() if (c := self._connection_or_none(url)) else {}
            ),
        )
        # Opened on the store's own thread by the first call: run_gui awaits open() at start.
        self.chat_store = AsyncChatStore(paths.data_dir / "chats.sqlite3")
        self.chat = ChatPane(
            self.chat_store,
            lambda url: c.client if (c := self._connection_or_none(url)) else None,
            lambda: [(c.url, p.name) for p, c in self.fleet.connections()],
            lambda url: (
                list(c.poller.snapshot.models) if (c := self._connection_or_none(url)) else []
            ),
            current_server=lambda: self.server_url,
            on_used=self._on_chat_used,
        )
        # The timeline: recorded whenever lmgui runs, window or tray; its dock reads nothing
        # until first shown, and is added before the chat pane restores the window's layout.
        self.event_log = EventLog(
            AsyncEventStore(paths.data_dir / EVENTS_FILE),
            expected=self.actions.expected,
            vram=lambda url: (
                self.tree.total_vram(url),
                self.window.dialogs.vram_context(url).total_bytes,
            ),
            parent=self,
        )
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
        self._chat_started = False
        self._shutting_down = False
        self._paused = False
        self._followed: set[str] = set()
        """The servers the timeline follows (and whose pins the tree shows)."""
        self.window.set_chat_pane(self.chat)
        self.window.dialogs.pinned = self._pinned
        self.window.pinned = lambda: self.snapshots.pinned(self.window.selected_server())
        self.window.pin_toggled.connect(self.snapshots.set_pinned)
        self.window.server_focused.connect(self._on_window_server_focused)
        self.snapshots.changed.connect(self._on_snapshots_changed)
        self.snapshot_menu = SnapshotMenu(
            self.window,
            self.snapshots,
            free_gpu=self.free_gpu,
            say=self._say,
            server_name=lambda: (
                self.server_name(self.server_url) if len(self.fleet.connections()) > 1 else ""
            ),
        )
        self.window.menuBar().insertMenu(
            self.window.commands.view_menu.menuAction(), self.snapshot_menu
        )
        self.closed = asyncio.Event()
        self.first_poll = asyncio.Event()
        self._polled = asyncio.Event()
        self.notifier = Notifier(self.settings.notify, parent=self)
        self._policies: dict[str, NotificationPolicy] = {}
        self.autostart = Autostart()
        self.tray = TrayController(self.tray_state, parent=self)
        # The tray's icon and tooltip read every server: after a burst of polls (ten servers
        # answer at different moments) they are rebuilt once, not once per poll.
        self._tray_timer = QTimer(self)
        self._tray_timer.setSingleShot(True)
        self._tray_timer.setInterval(TRAY_COALESCE_MS)
        self._tray_timer.timeout.connect(self._on_tray_timer_timeout)
        self.tray_available = TrayController.available()
        self.window.hide_on_close = self.tray_available and self.settings.close_to_tray
        self.fleet.problem.connect(lambda _url, sentence: self._say(sentence))
        self.fleet.snapshot_changed.connect(self._on_fleet_snapshot_changed)
        self.fleet.status_changed.connect(self._on_fleet_status_changed)
        self.fleet.poll_finished.connect(self._on_fleet_poll_finished)
        self._sync_fleet()
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
        self.tray.refresh_requested.connect(self._poke_all)
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
        self.tray.restore_requested.connect(lambda url: self.snapshots.restore(server=url))
        self.tray.pin_toggled.connect(
            lambda url, iid, pinned: self.snapshots.set_pinned(iid, pinned, url)
        )
        self.snapshots.progress.connect(lambda text: self.window.statusBar().showMessage(text))
        self.snapshots.finished.connect(self._on_snapshots_finished)

    # ------------------------------------------------------------------ the servers

    def _default_url(self) -> str:
        """The default server's normalized URL ("" when the setting cannot be used)."""
        try:
            return check_base_url(self.settings.server_url)
        except InvalidServerUrl:
            return ""

    @staticmethod
    def _profiles_of(profiles: Iterable[Profile], fallback_url: str) -> list[Profile]:
        """The enabled profiles; none: the one default server (as before profiles)."""
        enabled = [p for p in profiles if p.enabled]
        if enabled:
            return enabled
        url = check_base_url(fallback_url)
        return [Profile(display_url(url), url)]

    @property
    def conn(self) -> ServerConnection:
        """The window's current server's connection (the selected row's)."""
        conn = self.fleet.connection(self.current_url)
        if conn is None:  # it was removed: the first server is current now
            conns = self.fleet.connections()
            if not conns:  # the fleet is closed (shutting down): the last one, closed too
                return self._last_conn
            conn = conns[0][1]
            self.current_url = conn.url
        self._last_conn = conn
        return conn

    def _connection_or_none(self, url: str) -> ServerConnection | None:
        """``url``'s connection ("": the current server's); None when it is not watched."""
        return self.conn if not url else self.fleet.connection(url)

    def _connection(self, url: str) -> ServerConnection:
        conn = self._connection_or_none(url)
        if conn is None:
            raise ApiError(f"lmgui no longer watches {display_url(url)}")
        return conn

    def _pinned(self, url: str) -> set[str]:
        """``url``'s pinned instances ("": the current server's); none for a server no longer
        watched (a dialog still open on it)."""
        return self.snapshots.pinned(url) if self._connection_or_none(url) else set()

    def server_name(self, url: str) -> str:
        return self.fleet.name(url)

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

    @property
    def make_way(self) -> MakeWay:
        """The current server's making way (an episode is per server)."""
        return self._make_way_for(self.conn)

    def _make_way_for(self, conn: ServerConnection) -> MakeWay:
        make_way = self._make_ways.get(conn.url)
        if make_way is None:
            url = conn.url
            make_way = self._make_ways[url] = MakeWay(
                SavedSetStore(self.paths.snapshots(url)),
                offered=self.settings.make_way_offered,
                expect=lambda kind, ids: self.actions.expect(kind, ids, url),
            )
        return make_way

    def _policy(self, url: str) -> NotificationPolicy:
        policy = self._policies.get(url)
        if policy is None:
            policy = self._policies[url] = NotificationPolicy(display_url(url))
        return policy

    def _sync_fleet(self) -> None:
        """After the servers changed: the tree's server rows (refilled where needed), the
        timeline follows each server, the window's current server."""
        conns = self.fleet.connections()
        for url in self.tree.set_servers([(c.url, p.name) for p, c in conns]):
            conn = self.fleet.connection(url)
            if conn is not None and conn.poller.snapshot.models:
                self._fill_tree(conn)
            if conn is not None:
                self._show_server_state(conn)
        watched = {c.url for _, c in conns}
        for url in list(self._followed):
            if url not in watched:
                self._followed.discard(url)
                self._policies.pop(url, None)
                self._make_ways.pop(url, None)
                self.event_log.unfollow(url)
        for _, conn in conns:
            if conn.url not in self._followed:
                self._followed.add(conn.url)
                self.event_log.follow(conn)
                self.tree.set_pinned(self.snapshots.pinned(conn.url), conn.url)
        current = self.conn  # the first server when the current one went
        if self.window.poller is not current.poller:
            self.window.set_poller(current.poller)
            self.timeline.refresh()
        else:  # one server or several: the table's dimming and the status bar's server
            self.window.refresh_status()
        if self._chat_started:  # at start, start_chat lists the threads
            self.chat.servers_changed()
        self.snapshot_menu.update_actions()
        self._update_fleet_line()

    def _fill_tree(self, conn: ServerConnection) -> None:
        self.tree.apply(snapshot_diff(Snapshot(), conn.poller.snapshot), url=conn.url)
        self.tree.set_instance_info(conn.ledger.infos(), conn.url)
        self.tree.set_pinned(self.snapshots.pinned(conn.url), conn.url)

    def set_profiles(self, profiles: list[Profile]) -> None:
        """Watch exactly the enabled ``profiles`` from now on (Settings applied). What was in
        flight on a server no longer watched ends with a sentence."""
        kept = set()
        for p in profiles:
            with contextlib.suppress(InvalidServerUrl):
                if p.enabled:
                    kept.add(check_base_url(p.url))
        for _, conn in self.fleet.connections():
            if conn.url not in kept:
                self.actions.abandon_server(
                    conn.url, f"lmgui no longer watches {display_url(conn.url)}"
                )
        self.fleet.set_profiles(profiles)
        if not self.fleet.connections():  # the Settings dialog refuses this; a caller may not
            self.fleet.set_profiles(self._profiles_of([], self.settings.server_url))
        if self._paused:  # a server added while polling is paused waits like the others
            for _, conn in self.fleet.connections():
                conn.poller.stop()
        if self.fleet.started:
            self._update_poll_interval()
        self._sync_fleet()
        self._tray_changed()

    def switch_server(self, url: str, token: str | None = None) -> asyncio.Task[None]:
        """Watch only ``url`` from now on (``token``: None leaves the stored one, "" removes
        it)."""
        url = check_base_url(url)
        self.set_profiles([Profile(display_url(url), url)])
        return self.tasks.spawn(self._set_tokens({url: token}), f"Switching to {url}")

    async def _set_tokens(self, tokens: dict[str, str | None]) -> None:
        """Store each server's new token ("" removes it) and use it from now on."""
        for url, token in tokens.items():
            if token is None:
                continue
            conn = self.fleet.connection(url)
            if conn is not None:
                problem = await conn.set_token(token)
            elif token:
                ok = await asyncio.to_thread(self.tokens.set, url, token)
                problem = None if ok else self.tokens.problem
            else:
                await asyncio.to_thread(self.tokens.delete, url)
                problem = None
            if problem:
                self.window.statusBar().showMessage(problem, 20000)
        self._tray_changed()

    def _on_window_server_focused(self, url: str) -> None:
        conn = self.fleet.connection(url)
        if conn is None or conn.url == self.current_url:
            return
        self.current_url = conn.url
        self.window.set_poller(conn.poller)
        self.snapshot_menu.update_actions()  # Free and Restore act on this server now
        self.timeline.refresh()  # "this server" is the selected row's
        self._tray_changed()

    def _on_tray_timer_timeout(self) -> None:
        self.tray.update()
        self._update_fleet_line()

    def _tray_changed(self, *, quiet: bool = False) -> None:
        """Refresh the tray soon: within ``TRAY_COALESCE_MS``, or ``TRAY_QUIET_MS`` for a
        ``quiet`` change (only its times moved)."""
        if self._shutting_down:
            return
        ms = TRAY_QUIET_MS if quiet else TRAY_COALESCE_MS
        if not self._tray_timer.isActive() or self._tray_timer.remainingTime() > ms:
            self._tray_timer.start(ms)

    def _poke_all(self) -> None:
        for _, conn in self.fleet.connections():
            if conn.poller.running:
                conn.poller.poke()

    def _update_fleet_line(self) -> None:
        summary = self.fleet.summary()
        self.window.set_fleet_line(summary.totals_line if len(summary.servers) > 1 else "")

    def _show_server_state(self, conn: ServerConnection) -> None:
        """The server's row: its connection state and the VRAM it is counted against."""
        if not self.tree.fleet:
            return
        status = conn.poller.status
        total = self.window.dialogs.vram_context(conn.url).total_bytes
        self.tree.set_server_state(
            conn.url,
            state_text(status),
            offline=not status.state.online and status.state is not ConnectionState.CONNECTING,
            vram_total=total,
        )

    # ------------------------------------------------------------------ tray and background

    def tray_state(self) -> FleetTrayState:
        servers = []
        for profile, conn in self.fleet.connections():
            url = conn.url
            pinned = self.snapshots.pinned(url)
            saved = self.snapshots.restorable(url)
            make_way = self._make_ways.get(url)
            servers.append(
                build_tray_state(
                    server=display_url(url),
                    url=url,
                    name=profile.name,
                    snapshot=conn.poller.snapshot,
                    status=conn.poller.status,
                    infos=conn.ledger.infos(),
                    favourites=self.settings.favourites,
                    recent=self.settings.recent,
                    loading=bool(self.actions.pending(url)),
                    gpus=conn.gpus,
                    paused=not conn.poller.running,
                    notifications_paused=self.notifier.paused,
                    window_visible=self.window.isVisible(),
                    pinned=pinned,
                    restorable=len(saved.instances) if saved else None,
                    snapshots_busy=self.snapshots.working,
                    make_way=make_way.state_sentence() if make_way else None,
                    make_way_restore=make_way.restore_available if make_way else False,
                )
            )
        return FleetTrayState(
            servers=servers,
            paused=self._paused,
            notifications_paused=self.notifier.paused,
            window_visible=self.window.isVisible(),
            loading=bool(self.actions.loading),
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
        self._paused = paused
        for _, conn in self.fleet.connections():
            if paused:
                conn.poller.stop()
            else:
                conn.poller.start()
        self._tray_changed()

    def _say(self, sentence: str) -> None:
        """A failure of lmgui's own background work, said once in the status bar."""
        self.window.statusBar().showMessage(sentence, 20000)

    def _on_tray_notifications_paused(self, paused: bool) -> None:
        self.notifier.paused = paused

    def _on_tray_menu_opening(self) -> None:
        self._poke_all()

    def _on_tray_unload_requested(self, url: str, instance_ids: list[str]) -> QMessageBox | None:
        """Unload from the tray; an instance answering right now is only unloaded when the user
        says so (the tray has no dialog of its own, so the question comes up by itself)."""
        conn = self._connection_or_none(url)
        if conn is None:
            return None
        wanted = set(instance_ids)
        return self._unless_busy(
            [i for _, i in conn.poller.snapshot.instances if i.id in wanted],
            lambda: self.actions.unload(instance_ids, conn.url),
        )

    def free_gpu(self, url: str = "") -> QMessageBox | None:
        """Save ``url``'s loaded set ("": the current server's) as "before freeing" and unload
        all but the pinned instances, asking first when one of them is answering right now."""
        conn = self._connection_or_none(url)
        if conn is None:
            return None
        pins = self.snapshots.pinned(conn.url)
        return self._unless_busy(
            [i for _, i in conn.poller.snapshot.instances if i.id not in pins],
            lambda: self.snapshots.free_gpu(conn.url),
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

    def _make_way_tick_for(self, conn: ServerConnection) -> None:
        if conn.nvml is None:
            return  # a server on another machine: its GPU cannot be watched from here
        make_way = self._make_way_for(conn)
        if make_way.idle(self.make_way_settings(), conn.gpus, conn.gpu_processes):
            return
        self.tasks.spawn(self._make_way_tick(conn, make_way), "Making way")

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
            self._on_make_way_event(event, conn.url)

    def _on_make_way_event(self, event: MakeWayEvent, url: str = "") -> None:
        """Said once by core (and logged there): here it becomes a notification."""
        url = url or self.server_url
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
            self.notifier.say(
                "make_way",
                f"{url}|{event.kind}:{event.sentence}",
                self._titled(url, title),
                event.sentence,
            )
            self.window.statusBar().showMessage(event.sentence, 20000)
        if event.kind in ("made_way", "restored", "restore_available"):
            self.event_log.action(event.sentence, url)
        conn = self.fleet.connection(url)
        if event.kind in ("made_way", "restored") and conn is not None:
            conn.poller.poke()
        self._tray_changed()

    def _on_tray_make_way_restore_requested(self, url: str = "") -> None:
        conn = self._connection_or_none(url)
        if conn is None:
            return
        make_way, client = self._make_way_for(conn), conn.client

        async def restore() -> None:
            try:
                event = await make_way.restore_now(client)
            except ApiError as exc:
                self._say(str(exc))
                return
            self._on_make_way_event(event, conn.url)

        self.tasks.spawn(restore(), "Restoring what making way unloaded")

    def _on_snapshots_changed(self) -> None:
        for _, conn in self.fleet.connections():
            self.tree.set_pinned(self.snapshots.pinned(conn.url), conn.url)
        self._tray_changed()

    def _on_snapshots_finished(self, sentence: str, ok: bool, url: str) -> None:
        url = url or self.server_url
        self.event_log.action(sentence, url)
        self.window.statusBar().showMessage(sentence, 20000)
        title = self._titled(url, "lmgui" if ok else "lmgui: not all done")
        self.notifier.say("snapshot", f"{url}|{sentence}", title, sentence)
        self._tray_changed()

    def _on_chat_used(self, url: str, instance_id: str) -> None:
        conn = self.fleet.connection(url)
        if conn is not None:
            conn.ledger.touch(instance_id)

    def _on_tray_chat_requested(self, url: str, instance_id: str) -> None:
        self.window.show_chat()
        self.chat.chat_with(instance_id, url or None)

    def quick_load(self, url: str, model_key: str) -> None:
        """Load on ``url`` with the settings last used for this model (the tray's Load menu)."""
        request = self.settings.load_defaults().get(model_key) or LoadRequest(model_key)
        self.settings.remember_load(request)
        self.actions.load(dataclasses.replace(request, server=url))

    def _update_poll_interval(self) -> None:
        """Visible: the normal rate; hidden: slower; a load in flight: every 0.5 s at least."""
        if self.window.isVisible():
            interval = self.poll_ms or self.settings.poll_interval_ms
        else:
            interval = self.poll_ms or self.settings.hidden_poll_interval_ms
        if self.actions.loading:
            interval = min(LOADING_POLL_MS, interval)
        self.fleet.set_interval(interval)
        # Hidden, the tray's polls ask only the SDK channel's instance truth while it shows the
        # instances the last model list did, and the list every 30 s (a download, a load
        # elsewhere: its instance appears in the list first). A load of lmgui's own shows its
        # progress in full.
        hidden = not self.window.isVisible() and not self.actions.loading
        self.fleet.set_reuse_list_for(REUSE_LIST_HIDDEN_S if hidden else 0.0)

    def _on_actions_pending_changed(self) -> None:
        self._update_poll_interval()
        self._tray_changed()

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
                    self._newest_event[f"{e.server}|{e.identifier}"] = e.id

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

    def _titled(self, url: str, title: str) -> str:
        """A notification's title, naming the server when lmgui watches several."""
        if len(self.fleet.connections()) > 1:
            return f"{self.server_name(url)}: {title}"
        return title

    def _notify(self, notices: list[Notice], url: str) -> None:
        if notices:
            self._notice_key = f"{url}|{notices[-1].key}"
        for n in notices:
            self.notifier.say(n.kind, f"{url}|{n.key}", self._titled(url, n.title), n.body)

    def _on_notifier_notify(self, kind: str, title: str, body: str) -> None:
        if self.tray_available:
            self.tray.show_message(title, body)
        elif kind in ("vanished", "server"):  # the window itself reports loads and unloads
            self.window.statusBar().showMessage(f"{title}: {body}", 15000)

    def _on_actions_load_finished(self, request: LoadRequest, result: LoadResult) -> None:
        url = request.server or self.server_url
        self._notify([self._policy(url).loaded(request.model_key, result)], url)

    def _on_actions_load_failed(self, request: LoadRequest, message: str) -> None:
        url = request.server or self.server_url
        self._notify([self._policy(url).load_failed(request.model_key, message)], url)
        self.event_log.load_failed(request.model_key, message, url)

    def _on_actions_unload_finished(self, instance_id: str, url: str) -> None:
        self._notify([self._policy(url).unloaded(instance_id)], url)

    def _on_fleet_status_changed(self, url: str, status: PollStatus) -> None:
        self._notify(self._policy(url).status(status), url)
        conn = self.fleet.connection(url)
        if conn is not None:
            self._show_server_state(conn)
        self._tray_changed()

    def _on_fleet_poll_finished(self, url: str) -> None:
        conn = self.fleet.connection(url)
        if conn is None:
            return
        self._make_way_tick_for(conn)
        self.first_poll.set()
        self._polled.set()
        self._show_server_state(conn)
        # With the fleet's totals: once after a burst of polls. A poll that changed nothing
        # refreshes only the times the tray shows ("Refreshed at", TTLs), every few seconds.
        self._tray_changed(quiet=not (conn.poller.changed or conn.gpus_changed))

    def _on_fleet_snapshot_changed(self, url: str, diff: SnapshotDiff, snapshot: Snapshot) -> None:
        conn = self.fleet.connection(url)
        if conn is None:
            return
        first = not self.tree.filled(url)  # the tree always knows the watched servers

        def expected(kind: str, iid: str, model_key: str) -> bool:
            return self.actions.expected(kind, iid, model_key, url)

        if not first:
            policy = self._policy(url)
            self._notify(policy.vanished(diff, expected, conn.ledger.infos()), url)
            self._notify(policy.appeared(diff, expected), url)
        self.tree.apply(diff, expected, url)
        self.chat.models_changed(url)
        if first:
            # What start-up and each server's first fill built lives as long as the window: keep
            # it out of the cyclic GC's full passes, which otherwise stall the GUI thread now and
            # then (ten servers of 200 models: a full pass took 20-40 ms).
            gc.freeze()
        conn.ledger.sync(snapshot, conn.poller.snapshot_asked_at)
        self.tree.set_instance_info(conn.ledger.infos(), url)

    # ------------------------------------------------------------------ settings

    def open_settings(self) -> SettingsDialog:
        values = self.settings.values(self.server_url, start_on_login=self.autostart.is_enabled())
        if self.session_servers:  # the servers of this session, not the stored profiles
            values = dataclasses.replace(
                values, profiles=tuple(p for p, _ in self.fleet.connections())
            )
        dialog = SettingsDialog(
            values,
            # What the connections already know: the keyring was read off the GUI thread.
            has_token=lambda url: c.client.has_token if (c := self.fleet.connection(url)) else None,
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
        """What the Settings dialog said, applied at once, without a restart: the servers
        watched (each enabled profile), their tokens, and the rest."""
        traffic_changed = values.demo_traffic != self.settings.demo_traffic
        stored = values
        if self.session_servers:  # the command line's servers are not stored as profiles
            stored = dataclasses.replace(values, profiles=())
        if self.demo_servers:  # nor is a simulator's address the default server
            stored = dataclasses.replace(stored, server_url=self.settings.server_url)
        self.settings.store(stored)
        self.window.hide_on_close = self.tray_available and values.close_to_tray
        if self.demo_servers and traffic_changed:
            from lmgui.sim.demo import DEMO_TRAFFIC_PER_MINUTE, set_demo_fleet_traffic

            rate = DEMO_TRAFFIC_PER_MINUTE if values.demo_traffic else 0.0
            set_demo_fleet_traffic(self.demo_servers, rate)
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
        self.set_profiles(self._profiles_of(values.profiles, values.server_url))
        self._update_poll_interval()
        tokens: dict[str, str | None] = {url: token for url, token in values.token_changes}
        if values.token is not None:
            tokens.setdefault(check_base_url(values.server_url), values.token)
        if tokens:
            self.tasks.spawn(self._set_tokens(tokens), "Storing the tokens")
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
        self.fleet.start()
        await self.start_chat()
        try:
            if screenshot is not None:
                await self.first_poll.wait()
                while any(  # every server's first poll, so the picture shows the whole fleet
                    c.poller.status.state is ConnectionState.CONNECTING
                    for _, c in self.fleet.connections()
                ):
                    self._polled.clear()
                    await self._polled.wait()
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
        self._chat_started = True
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
        self._shutting_down = True
        self._tray_timer.stop()
        self.window.save_layout()
        # Polling stops first: its signals feed the task owners closed below.
        await asyncio.gather(*(c.poller.aclose() for _, c in self.fleet.connections()))
        await self.chat.aclose()
        await self.tasks.aclose()
        await self.snapshots.aclose()
        await self.timeline.aclose()
        await self.event_log.aclose()
        await self.actions.aclose()
        await self.fleet.aclose()
        await self.chat_store.aclose()
        for demo in self.demo_servers:
            demo.sim.stop()
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
                demo_servers=int(getattr(args, "servers", 1) or 1),
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
