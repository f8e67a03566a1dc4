"""The timeline as the app records it: follows each server connection's poller (and lmgui's own
actions, told by the app), turns what it sees into events with ``EventRecorder``, and keeps them,
with a chart sample per poll, in the ``AsyncEventStore`` off the GUI thread. QtCore only.

Recorded whenever lmgui runs, window or tray. ``recorded`` carries each batch as kept (with row
ids), for the timeline view and the notifications that open it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal, SignalInstance

from lmgui.core.connection import ServerConnection
from lmgui.core.event_store import AsyncEventStore, sample_due
from lmgui.core.events import Event, EventRecorder, Sample
from lmgui.core.poller import PollStatus
from lmgui.core.snapshot import Snapshot, SnapshotDiff
from lmgui.core.tasks import TaskSet

__all__ = ["EventLog"]

log = logging.getLogger(__name__)


@dataclass
class _Followed:
    """One server the log follows: its connection, its recorder, its last snapshot seen."""

    conn: ServerConnection
    recorder: EventRecorder
    seen: Snapshot = field(default_factory=Snapshot)
    filled: bool = False
    last_sample: tuple[float, int] | None = None
    """When the last chart point was kept, and its instance count."""
    slots: list[tuple[SignalInstance, Callable[..., None]]] = field(default_factory=list)


class EventLog(QObject):
    recorded = Signal(list)
    """list[Event], as kept (with their ids)."""

    def __init__(
        self,
        store: AsyncEventStore,
        *,
        expected: Callable[[str, str, str, str], bool],
        vram: Callable[[str], tuple[int, int | None]],
        parent: QObject | None = None,
    ) -> None:
        """``expected(kind, id, key, server)``: what lmgui itself caused (``Actions.expected``);
        ``vram(server)``: (estimated bytes in use on that server, the total they are counted
        against or None)."""
        super().__init__(parent)
        self.store = store
        self._expected = expected
        self._vram = vram
        self.tasks = TaskSet("timeline", lambda sentence: log.warning("%s", sentence))
        self._followed: dict[str, _Followed] = {}

    # ------------------------------------------------------------------ following servers

    def follow(self, conn: ServerConnection) -> None:
        """Record ``conn``'s server from now on (beside the others followed)."""
        self.unfollow(conn.url)
        f = self._followed[conn.url] = _Followed(conn, EventRecorder(conn.url))
        poller = conn.poller
        f.slots = [
            (poller.snapshot_changed, functools.partial(self._on_snapshot_changed, f)),
            (poller.status_changed, functools.partial(self._on_status_changed, f)),
            (poller.poll_finished, functools.partial(self._on_poll_finished, f)),
        ]
        for signal, slot in f.slots:
            signal.connect(slot)

    def unfollow(self, url: str) -> None:
        """Stop recording server ``url`` (it was removed or switched off)."""
        f = self._followed.pop(url, None)
        if f is not None:
            for signal, slot in f.slots:
                signal.disconnect(slot)

    @property
    def recorder(self) -> EventRecorder | None:
        """The first followed server's recorder (one server: its only one)."""
        return next((f.recorder for f in self._followed.values()), None)

    def _on_snapshot_changed(self, f: _Followed, diff: SnapshotDiff, snapshot: Snapshot) -> None:
        before, f.seen = f.seen, snapshot
        if not f.filled:
            f.filled = True  # what was loaded before lmgui looked is no event of the day
            return
        url = f.conn.url
        infos = f.conn.ledger.infos()

        def expected(kind: str, iid: str, key: str) -> bool:
            return self._expected(kind, iid, key, url)

        self.record(f.recorder.changed(diff, before, expected, infos))

    def _on_status_changed(self, f: _Followed, status: PollStatus) -> None:
        self.record(f.recorder.status(status))

    def _on_poll_finished(self, f: _Followed) -> None:
        conn = f.conn
        if not conn.poller.status.state.online:
            return
        estimated, total = self._vram(conn.url)
        gpus = conn.gpus
        sample = Sample(
            at=time.time(),
            server=conn.url,
            vram_bytes=estimated,
            instances=len(conn.poller.snapshot.instances),
            measured_bytes=sum(g.used_bytes for g in gpus) if gpus else None,
            budget_bytes=total,
        )
        # The store's rule, asked here first: most polls keep no point, and asking the store's
        # thread costs a hop per poll per server.
        if not sample_due(f.last_sample, sample):
            return
        f.last_sample = (sample.at, sample.instances)
        self.tasks.spawn(self.store.sample(sample), "Keeping a chart point")

    # ------------------------------------------------------------------ what lmgui did

    def _recorder(self, server: str) -> EventRecorder | None:
        """``server``'s recorder ("": the first followed); None for a server not followed (what
        happened there is no event of the servers lmgui watches)."""
        if not server:
            return self.recorder
        f = self._followed.get(server)
        return f.recorder if f is not None else None

    def load_failed(self, model_key: str, message: str, server: str = "") -> None:
        recorder = self._recorder(server)
        if recorder is not None:
            self.record([recorder.load_failed(model_key, message)])

    def action(self, sentence: str, server: str = "") -> None:
        """Something lmgui did on the user's behalf (freed the GPU, restored, made way) on
        ``server`` ("": the first followed)."""
        recorder = self._recorder(server)
        if recorder is not None:
            self.record([recorder.action(sentence)])

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
