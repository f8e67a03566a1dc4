"""The timeline's store: events and chart samples in SQLite, private like the chat history.

Bounded: events older than ``EVENT_DAYS`` days, and beyond the newest ``MAX_EVENTS``, are
deleted; samples are kept ``SAMPLE_DAYS`` days, at most one a minute per server unless the
number of instances changed (so a day is at most a few thousand points). Pruning runs when the
store opens and then every ``PRUNE_EVERY`` writes.

``EventStore``'s methods are synchronous and quick; the app and the views use
``AsyncEventStore``, which opens the file and runs every call on one worker thread, so the GUI
thread never waits on the disk. The CLI reads with ``EventStore`` directly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from lmgui.core.events import Event, Sample
from lmgui.core.paths import private_file
from lmgui.core.worker import OnWorker

__all__ = [
    "EVENTS_FILE",
    "EVENT_DAYS",
    "MAX_EVENTS",
    "SAMPLE_DAYS",
    "AsyncEventStore",
    "EventFilter",
    "EventStore",
    "sample_due",
]

T = TypeVar("T")

EVENTS_FILE = "events.sqlite3"
"""In lmgui's data folder."""
EVENT_DAYS = 90
MAX_EVENTS = 200_000
SAMPLE_DAYS = 7
SAMPLE_EVERY_SECONDS = 60.0
PRUNE_EVERY = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    server TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    model_key TEXT,
    identifier TEXT,
    context_length INTEGER,
    gpu_offload REAL,
    vram_bytes INTEGER,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE INDEX IF NOT EXISTS events_server_at ON events(server, at);
CREATE TABLE IF NOT EXISTS samples (
    at REAL NOT NULL,
    server TEXT NOT NULL,
    vram_bytes INTEGER NOT NULL,
    instances INTEGER NOT NULL,
    measured_bytes INTEGER,
    budget_bytes INTEGER
);
CREATE INDEX IF NOT EXISTS samples_server_at ON samples(server, at);
"""

_EVENT_COLUMNS = (
    "id, at, server, kind, source, model_key, identifier, context_length, gpu_offload, "
    "vram_bytes, detail"
)


@dataclass(frozen=True)
class EventFilter:
    """Which events a query wants; every field None means any."""

    server: str | None = None
    since: float | None = None
    until: float | None = None
    kinds: frozenset[str] | None = None
    sources: frozenset[str] | None = None
    model: str | None = None
    """A model key or an identifier, matched as a substring (case-insensitive)."""

    def where(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        args: list[Any] = []
        if self.server is not None:
            parts.append("server = ?")
            args.append(self.server)
        if self.since is not None:
            parts.append("at >= ?")
            args.append(self.since)
        if self.until is not None:
            parts.append("at < ?")
            args.append(self.until)
        for column, values in (("kind", self.kinds), ("source", self.sources)):
            if values is not None:
                parts.append(f"{column} IN ({','.join('?' * len(values))})" if values else "0")
                args.extend(sorted(values))
        if self.model:
            parts.append("(model_key LIKE ? ESCAPE '\\' OR identifier LIKE ? ESCAPE '\\')")
            pattern = "%" + _escape_like(self.model) + "%"
            args += [pattern, pattern]
        return (" WHERE " + " AND ".join(parts)) if parts else "", args


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _event(row: Sequence[Any]) -> Event:
    return Event(
        id=row[0],
        at=row[1],
        server=row[2],
        kind=row[3],
        source=row[4],
        model_key=row[5],
        identifier=row[6],
        context_length=row[7],
        gpu_offload=row[8],
        vram_bytes=row[9],
        detail=row[10],
    )


def sample_due(last: tuple[float, int] | None, s: Sample) -> bool:
    """Whether chart point ``s`` is kept after ``last`` (its server's last kept point: when,
    how many instances): not within a minute of it with the same number of instances."""
    return last is None or s.at - last[0] >= SAMPLE_EVERY_SECONDS or last[1] != s.instances


class EventStore:
    def __init__(self, path: Path | str, *, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall = wall
        if str(path) != ":memory:":
            private_file(Path(path))
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._writes = 0
        self._last_sample: dict[str, tuple[float, int]] = {}
        self.prune()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writing

    def add(self, events: Iterable[Event]) -> list[Event]:
        """Keep ``events``; returns them with their row ids."""
        out = []
        with self.db:
            for e in events:
                cur = self.db.execute(
                    "INSERT INTO events (at, server, kind, source, model_key, identifier, "
                    "context_length, gpu_offload, vram_bytes, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        e.at,
                        e.server,
                        e.kind,
                        e.source,
                        e.model_key,
                        e.identifier,
                        e.context_length,
                        e.gpu_offload,
                        e.vram_bytes,
                        e.detail,
                    ),
                )
                out.append(replace(e, id=cur.lastrowid))
        self._wrote(len(out))
        return out

    def sample(self, s: Sample) -> bool:
        """Keep a chart point, unless one for that server came less than a minute ago with the
        same number of instances. Returns whether it was kept."""
        if not sample_due(self._last_sample.get(s.server), s):
            return False
        self._last_sample[s.server] = (s.at, s.instances)
        self.db.execute(
            "INSERT INTO samples (at, server, vram_bytes, instances, measured_bytes, budget_bytes)"
            " VALUES (?,?,?,?,?,?)",
            (s.at, s.server, s.vram_bytes, s.instances, s.measured_bytes, s.budget_bytes),
        )
        self._wrote(1)
        return True

    def _wrote(self, n: int) -> None:
        self._writes += n
        if self._writes >= PRUNE_EVERY:
            self._writes = 0
            self.prune()

    def prune(self) -> None:
        """Drop what is past the bounds (age, then count)."""
        now = self._wall()
        with self.db:
            self.db.execute("DELETE FROM events WHERE at < ?", (now - EVENT_DAYS * 86400,))
            self.db.execute(
                "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC "
                "LIMIT 1 OFFSET ?)",
                (MAX_EVENTS,),
            )
            self.db.execute("DELETE FROM samples WHERE at < ?", (now - SAMPLE_DAYS * 86400,))

    # ------------------------------------------------------------------ reading

    def events(
        self, f: EventFilter = EventFilter(), *, limit: int = 500, before_id: int | None = None
    ) -> list[Event]:
        """Newest first: at most ``limit`` events matching ``f``, older than ``before_id``."""
        where, args = f.where()
        if before_id is not None:
            where += (" AND " if where else " WHERE ") + "id < ?"
            args.append(before_id)
        rows = self.db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events{where} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [_event(r) for r in rows]

    def after(self, event_id: int, f: EventFilter = EventFilter()) -> list[Event]:
        """Events newer than ``event_id``, oldest first (``lmgui events --follow``)."""
        where, args = f.where()
        where += (" AND " if where else " WHERE ") + "id > ?"
        rows = self.db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events{where} ORDER BY id LIMIT 10000",
            (*args, event_id),
        )
        return [_event(r) for r in rows]

    def event(self, event_id: int) -> Event | None:
        row = self.db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
        ).fetchone()
        return _event(row) if row is not None else None

    def thinned(self, f: EventFilter, markers: int) -> tuple[list[Event], dict[int, int]]:
        """At most about ``markers`` events of ``f`` (which needs ``since`` and ``until``):
        grouped by source and an equal slice of the window, the newest of each group, with how
        many it stands for (by id). SQLite does the grouping, so a crowded day never becomes
        tens of thousands of Python objects."""
        if f.since is None or f.until is None:
            raise ValueError("thinning needs a window (since and until)")
        where, args = f.where()
        sources = int(
            self.db.execute(f"SELECT COUNT(DISTINCT source) FROM events{where}", args).fetchone()[0]
        )
        width = (f.until - f.since) / max(1, markers // max(1, sources))
        # SQLite takes the bare column ``id`` from the row holding MAX(at) in each group.
        groups = self.db.execute(
            f"SELECT MAX(at), id, COUNT(*) FROM events{where} "
            "GROUP BY source, CAST((at - ?) / ? AS INTEGER)",
            (*args, f.since, width),
        ).fetchall()
        counts = {int(row[1]): int(row[2]) for row in groups}
        events: list[Event] = []
        ids = sorted(counts)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self.db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            events += [_event(r) for r in rows]
        return events, counts

    def count(self, f: EventFilter = EventFilter()) -> int:
        where, args = f.where()
        return int(self.db.execute(f"SELECT COUNT(*) FROM events{where}", args).fetchone()[0])

    def position(self, event_id: int, f: EventFilter = EventFilter()) -> int:
        """How many events matching ``f`` are newer than ``event_id`` (its row, newest first)."""
        where, args = f.where()
        where += (" AND " if where else " WHERE ") + "id > ?"
        return int(
            self.db.execute(f"SELECT COUNT(*) FROM events{where}", (*args, event_id)).fetchone()[0]
        )

    def samples(self, server: str, since: float, until: float | None = None) -> list[Sample]:
        """The chart's points for ``server`` from ``since``, oldest first."""
        rows = self.db.execute(
            "SELECT at, server, vram_bytes, instances, measured_bytes, budget_bytes FROM samples "
            "WHERE server = ? AND at >= ? AND at < ? ORDER BY at",
            (server, since, until if until is not None else float("inf")),
        )
        return [Sample(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def servers(self) -> list[str]:
        rows = self.db.execute("SELECT DISTINCT server FROM events ORDER BY server")
        return [r[0] for r in rows]


class AsyncEventStore:
    """The store on one worker thread: the GUI awaits it and never waits on the disk."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._worker = OnWorker(
            lambda: EventStore(path), thread="lmgui-events-db", closed="The event store is closed."
        )

    async def run(self, job: Callable[[EventStore], T]) -> T:
        """``job(store)`` on the worker thread (any of ``EventStore``'s methods)."""
        return await self._worker.run(job)

    async def add(self, events: Sequence[Event]) -> list[Event]:
        return await self.run(lambda s: s.add(events))

    async def sample(self, s: Sample) -> bool:
        return await self.run(lambda store: store.sample(s))

    async def events(
        self, f: EventFilter = EventFilter(), *, limit: int = 500, before_id: int | None = None
    ) -> list[Event]:
        return await self.run(lambda s: s.events(f, limit=limit, before_id=before_id))

    async def count(self, f: EventFilter = EventFilter()) -> int:
        return await self.run(lambda s: s.count(f))

    async def samples(self, server: str, since: float, until: float | None = None) -> list[Sample]:
        return await self.run(lambda s: s.samples(server, since, until))

    async def aclose(self) -> None:
        await self._worker.aclose()
