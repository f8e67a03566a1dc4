"""The timeline as the app records it: follows one server connection's poller (and lmgui's own
actions, told by the app), turns what it sees into events with ``EventRecorder``, and keeps them,
with a chart sample per poll, in the ``AsyncEventStore`` off the GUI thread. QtCore only.

Recorded whenever lmgui runs, window or tray. ``recorded`` carries each batch as kept (with row
ids), for the timeline view and the notifications that open it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, Signal

from lmgui.core.connection import ServerConnection
from lmgui.core.event_store import AsyncEventStore
from lmgui.core.events import Event, EventRecorder, Sample
from lmgui.core.poller import PollStatus
from lmgui.core.snapshot import Snapshot, SnapshotDiff
from lmgui.core.tasks import TaskSet

__all__ = ["EventLog"]

log = logging.getLogger(__name__)


class EventLog(QObject):
    recorded = Signal(list)
    """list[Event], as kept (with their ids)."""

    def __init__(
        self,
        store: AsyncEventStore,
        *,
        expected: Callable[[str, str, str], bool],
        vram: Callable[[], tuple[int, int | None]],
        parent: QObject | None = None,
    ) -> None:
        """``expected(kind, id, key)``: what lmgui itself caused (``Actions.expected``);
        ``vram()``: (estimated bytes in use, the total they are counted against or None)."""
        super().__init__(parent)
        self.store = store
        self._expected = expected
        self._vram = vram
        self.tasks = TaskSet("timeline", lambda sentence: log.warning("%s", sentence))
        self._conn: ServerConnection | None = None
        self.recorder: EventRecorder | None = None
        self._seen = Snapshot()
        self._filled = False

    # ------------------------------------------------------------------ following a server

    def follow(self, conn: ServerConnection) -> None:
        """Record ``conn``'s server from now on (the app switched servers, or started)."""
        if self._conn is not None:
            poller = self._conn.poller
            poller.snapshot_changed.disconnect(self._on_poller_snapshot_changed)
            poller.status_changed.disconnect(self._on_poller_status_changed)
            poller.poll_finished.disconnect(self._on_poller_poll_finished)
        self._conn = conn
        self.recorder = EventRecorder(conn.url)
        self._seen = Snapshot()
        self._filled = False
        conn.poller.snapshot_changed.connect(self._on_poller_snapshot_changed)
        conn.poller.status_changed.connect(self._on_poller_status_changed)
        conn.poller.poll_finished.connect(self._on_poller_poll_finished)

    def _on_poller_snapshot_changed(self, diff: SnapshotDiff, snapshot: Snapshot) -> None:
        before, self._seen = self._seen, snapshot
        if not self._filled:
            self._filled = True  # what was loaded before lmgui looked is no event of the day
            return
        if self.recorder is not None and self._conn is not None:
            infos = self._conn.ledger.infos()
            self.record(self.recorder.changed(diff, before, self._expected, infos))

    def _on_poller_status_changed(self, status: PollStatus) -> None:
        if self.recorder is not None:
            self.record(self.recorder.status(status))

    def _on_poller_poll_finished(self) -> None:
        conn = self._conn
        if conn is None or not conn.poller.status.state.online:
            return
        estimated, total = self._vram()
        gpus = conn.gpus
        sample = Sample(
            at=time.time(),
            server=conn.url,
            vram_bytes=estimated,
            instances=len(conn.poller.snapshot.instances),
            measured_bytes=sum(g.used_bytes for g in gpus) if gpus else None,
            budget_bytes=total,
        )
        self.tasks.spawn(self.store.sample(sample), "Keeping a chart point")

    # ------------------------------------------------------------------ what lmgui did

    def load_failed(self, model_key: str, message: str) -> None:
        if self.recorder is not None:
            self.record([self.recorder.load_failed(model_key, message)])

    def action(self, sentence: str) -> None:
        """Something lmgui did on the user's behalf (freed the GPU, restored, made way)."""
        if self.recorder is not None:
            self.record([self.recorder.action(sentence)])

    # ------------------------------------------------------------------ keeping

    def record(self, events: Sequence[Event]) -> asyncio.Task[None] | None:
        if not events:
            return None
        return self.tasks.spawn(self._keep(list(events)), "Keeping the timeline")

    async def _keep(self, events: list[Event]) -> None:
        kept = await self.store.add(events)
        self.recorded.emit(kept)

    async def aclose(self) -> None:
        await self.tasks.aclose()
        await self.store.aclose()
