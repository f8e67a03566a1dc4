"""The fleet: one ``ServerConnection`` per enabled server profile, polled side by side.

QtCore only. Each connection keeps its own client, poller (its own timer and backoff), ledger and
GPU reading, so a slow or dead server never delays the others: they are independent pollers on
the one event loop, and a request waiting on one server is just an await. The fleet re-emits its
connections' signals with the server's URL, so a listener connects once, to the fleet, and never
to a connection that may be replaced.

Connections are keyed by normalized URL (the keyring's key for the token); the profile's name is
kept for labels. ``set_profiles`` keeps a connection whose server is still enabled (its poller is
not restarted, its list not refetched), starts one for a newly enabled server and closes one
removed or switched off, as a tracked task. The tray's view of the fleet (the worst state, a line
per server) is Qt-free, in ``core/fleet_state.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from lmgui.api.errors import InvalidServerUrl
from lmgui.api.limits import Deadlines
from lmgui.api.urls import check_base_url, display_url
from lmgui.core.connection import ServerConnection
from lmgui.core.fleet_state import FleetSummary, ServerView, fleet_summary
from lmgui.core.profiles import Profile
from lmgui.core.secrets import TokenStore
from lmgui.core.snapshot import Snapshot, SnapshotDiff
from lmgui.core.status import PollStatus
from lmgui.core.tasks import TaskSet

__all__ = ["Fleet"]

log = logging.getLogger(__name__)


class Fleet(QObject):
    snapshot_changed = Signal(str, object, object)
    """(url, SnapshotDiff, Snapshot) after a poll of that server that changed something."""
    status_changed = Signal(str, object)
    """(url, PollStatus) when that server's connection state or its message changes."""
    poll_finished = Signal(str)
    """(url) after every poll of that server, good or not."""
    problem = Signal(str, str)
    """(url, sentence): a failure of lmgui's own about that server (a file it cannot write)."""

    def __init__(
        self,
        state_dir: Path,
        tokens: TokenStore,
        *,
        interval_ms: int = 2000,
        deadlines: Deadlines | None = None,
        session_tokens: Mapping[str, str] | None = None,
        parent: QObject | None = None,
    ) -> None:
        """``session_tokens``: by normalized URL, tokens from the command line or the
        environment, used for this session and never stored."""
        super().__init__(parent)
        self.session_tokens = dict(session_tokens or {})
        self.state_dir = state_dir
        self.tokens = tokens
        self.interval_ms = interval_ms
        self.reuse_list_for = 0.0
        self.deadlines = deadlines or Deadlines()
        self._profiles: dict[str, Profile] = {}
        """Enabled profiles by normalized URL, in profile order."""
        self._conns: dict[str, ServerConnection] = {}
        self._closing = TaskSet("fleet", report=lambda sentence: log.warning("%s", sentence))
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"Fleet({list(self._conns)!r})"

    # ------------------------------------------------------------------ the servers

    def set_profiles(self, profiles: list[Profile]) -> None:
        """Poll exactly the enabled ``profiles``: keep the connections already there, add the
        new ones (polling at once if the fleet is started), close those removed or disabled.

        A profile whose URL lmgui cannot use is left out (and logged); of two profiles with the
        same server, the first is kept."""
        if self._closed:
            raise RuntimeError("the fleet is closed")
        wanted: dict[str, Profile] = {}
        for p in profiles:
            if not p.enabled:
                continue
            try:
                url = check_base_url(p.url)
            except InvalidServerUrl as exc:
                log.warning("server profile %r left out: %s", p.name, exc)
                continue
            wanted.setdefault(url, p)
        for url in [u for u in self._conns if u not in wanted]:
            conn = self._conns.pop(url)
            self._closing.spawn(self._close(conn), f"Closing the connection to {url}")
        for url in wanted:
            if url not in self._conns:
                self._conns[url] = conn = self._new_connection(url)
                if self._started:
                    conn.poller.start()
        self._profiles = wanted

    def connections(self) -> list[tuple[Profile, ServerConnection]]:
        """Every enabled server's profile and connection, in profile order."""
        return [(p, self._conns[url]) for url, p in self._profiles.items()]

    def connection(self, url: str) -> ServerConnection | None:
        """The connection to ``url`` (normalized first), or None when it is not in the fleet."""
        conn = self._conns.get(url)  # already normalized: the common case, after every poll
        if conn is not None:
            return conn
        try:
            return self._conns.get(check_base_url(url))
        except InvalidServerUrl:
            return None

    def profile(self, url: str) -> Profile | None:
        """The profile of the server at ``url`` (its name, for labels)."""
        try:
            return self._profiles.get(check_base_url(url))
        except InvalidServerUrl:
            return None

    def name(self, url: str) -> str:
        """The server's label: its profile's name, else its URL as shown."""
        p = self.profile(url)
        return p.name if p is not None else display_url(url)

    def set_interval(self, interval_ms: int) -> None:
        """Every server's poll interval from now on (the window shown or hidden, a load)."""
        self.interval_ms = interval_ms
        for conn in self._conns.values():
            conn.poller.set_interval(interval_ms)

    def set_reuse_list_for(self, seconds: float) -> None:
        """How long every server's regular polls may reuse its model list while its SDK channel
        shows the same instances (0: never): the tray's all-day polls, the window hidden."""
        self.reuse_list_for = seconds
        for conn in self._conns.values():
            conn.reuse_list_for = seconds

    def summary(self) -> FleetSummary:
        """The tray's view of the fleet: the worst state, a line per server, the totals."""
        return fleet_summary(
            ServerView(p.name, c.poller.status, c.poller.snapshot, c.ledger.infos())
            for p, c in self.connections()
        )

    def _new_connection(self, url: str) -> ServerConnection:
        conn = ServerConnection(
            url,
            state_dir=self.state_dir,
            tokens=self.tokens,
            session_token=self.session_tokens.get(url),
            deadlines=self.deadlines,
            interval_ms=self.interval_ms,
            parent=self,
        )
        conn.reuse_list_for = self.reuse_list_for
        poller = conn.poller
        # Connected after the connection's own poll_finished handler (its GPU reading), so a
        # listener to the fleet sees this poll's reading.
        poller.snapshot_changed.connect(functools.partial(self._on_snapshot_changed, conn))
        poller.status_changed.connect(functools.partial(self._on_status_changed, conn))
        poller.poll_finished.connect(functools.partial(self._on_poll_finished, conn))
        conn.problem.connect(functools.partial(self._on_problem, conn))
        return conn

    # A connection on its way out (closing) says nothing more: the guard drops what it might
    # still emit before its poller is stopped.
    def _current(self, conn: ServerConnection) -> bool:
        return self._conns.get(conn.url) is conn

    def _on_snapshot_changed(self, conn: ServerConnection, d: SnapshotDiff, s: Snapshot) -> None:
        if self._current(conn):
            self.snapshot_changed.emit(conn.url, d, s)

    def _on_status_changed(self, conn: ServerConnection, status: PollStatus) -> None:
        if self._current(conn):
            self.status_changed.emit(conn.url, status)

    def _on_poll_finished(self, conn: ServerConnection) -> None:
        if self._current(conn):
            self.poll_finished.emit(conn.url)

    def _on_problem(self, conn: ServerConnection, sentence: str) -> None:
        if self._current(conn):
            self.problem.emit(conn.url, sentence)

    # ------------------------------------------------------------------ lifetime

    def start(self) -> None:
        """Start every poller (each with a first poll at once); servers added later start too."""
        self._started = True
        for conn in self._conns.values():
            if not conn.poller.running:
                conn.poller.start()

    @property
    def started(self) -> bool:
        return self._started

    async def settle(self) -> None:
        """Wait until the connections being closed are closed."""
        await self._closing.settle()

    async def _close(self, conn: ServerConnection, *, delete: bool = True) -> None:
        try:
            await conn.aclose()
        finally:
            if delete:  # a server removed; at the end they go with the fleet, their parent
                conn.deleteLater()

    async def aclose(self) -> None:
        """Close every connection (side by side) and wait for those already closing."""
        self._closed = True
        self._started = False
        conns = list(self._conns.values())
        self._conns.clear()
        self._profiles = {}
        results = await asyncio.gather(
            *(self._close(c, delete=False) for c in conns),
            self._closing.settle(),
            return_exceptions=True,
        )
        for conn, result in zip(conns, results, strict=False):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("closing %r failed", conn, exc_info=result)
        await self._closing.aclose()
