"""The timeline's list: events newest first, read from the store a page at a time.

A Python ``QAbstractTableModel`` (unlike the model tree's ``QStandardItemModel``): the view asks
only for the rows it paints, and a page of 500 is appended without building an item per cell.
The view's ``fetchMore`` asks the store for the next page of events older than the last one read;
a fetch in flight is not repeated. A live event is inserted at the top (``beginInsertRows``);
only a change of filter resets the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor

from lmgui.core.event_store import EventFilter
from lmgui.core.events import SOURCE_TEXT, Event
from lmgui.core.tasks import TaskSet
from lmgui.core.timeline_series import SOURCE_COLOURS

__all__ = ["COLUMNS", "EVENT_ROLE", "PAGE_SIZE", "EventTableModel", "Fetch", "matches"]

PAGE_SIZE = 500
COLUMNS = ("Time", "Source", "Event", "Server")
TIME, SOURCE, WHAT, SERVER = range(4)
EVENT_ROLE = Qt.ItemDataRole.UserRole
"""The row's ``Event``, in every cell."""

Fetch = Callable[[EventFilter, int | None, int], Awaitable[list[Event]]]
"""``fetch(filter, before_id, limit)``: at most ``limit`` events matching the filter, older than
``before_id`` (None: the newest), newest first (``EventStore.events`` on the worker thread)."""

_Index = QModelIndex | QPersistentModelIndex


def matches(f: EventFilter, e: Event) -> bool:
    """``EventFilter``'s SQL condition in Python, for live events that never went through it."""
    if f.server is not None and e.server != f.server:
        return False
    if f.since is not None and e.at < f.since:
        return False
    if f.until is not None and e.at >= f.until:
        return False
    if f.kinds is not None and e.kind not in f.kinds:
        return False
    if f.sources is not None and e.source not in f.sources:
        return False
    if f.model:
        needle = f.model.casefold()  # SQLite's LIKE folds ASCII only; close enough for keys
        return any(needle in (v or "").casefold() for v in (e.model_key, e.identifier))
    return True


def time_text(at: float, today: time.struct_time | None = None) -> str:
    """Today's events by the clock; older ones with their date."""
    local = time.localtime(at)
    today = today or time.localtime()
    if local[:3] == today[:3]:
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%Y-%m-%d %H:%M:%S", local)


class EventTableModel(QAbstractTableModel):
    page_loaded = Signal(int)
    """A page came from the store (how many rows it added)."""
    failed = Signal(str)
    """Reading the store failed: one sentence."""

    def __init__(
        self,
        fetch: Fetch,
        parent: QObject | None = None,
        *,
        page_size: int = PAGE_SIZE,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(parent)
        self._fetch = fetch
        self._wall = wall
        self.page_size = page_size
        self._filter = EventFilter()
        self._rows: list[Event] = []
        self._ids: set[int] = set()
        self._cursor: int | None = None
        """The oldest id a page brought (live events do not move it); None: start at the newest."""
        self._exhausted = False
        self._loading: asyncio.Task[None] | None = None
        self._started = False
        self.tasks = TaskSet("The timeline's list", self.failed.emit)
        self.fetches = 0
        """Pages asked of the store since the model was made (tests, the benchmark)."""
        self._colours = {k: QColor(v) for k, v in SOURCE_COLOURS.items()}

    # ----------------------------------------------------------------------- Qt's interface

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            role == Qt.ItemDataRole.DisplayRole
            and orientation == Qt.Orientation.Horizontal
            and 0 <= section < len(COLUMNS)
        ):
            return COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        e = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            # Plain item text: the view never renders it as HTML (server strings inside).
            if column == TIME:
                return time_text(e.at, time.localtime(self._wall()))
            if column == SOURCE:
                return SOURCE_TEXT.get(e.source, e.source)
            if column == WHAT:
                return e.what()
            if column == SERVER:
                return e.server
            return None
        if role == EVENT_ROLE:
            return e
        if role == Qt.ItemDataRole.DecorationRole and column == SOURCE:
            return self._colours.get(e.source)
        return None

    def canFetchMore(self, parent: _Index) -> bool:
        return not parent.isValid() and self._started and not self._exhausted

    def fetchMore(self, parent: _Index) -> None:
        if parent.isValid() or not self._started or self._exhausted:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to read on (a model tester poking it): the view asks again
        self.load_page()

    # ----------------------------------------------------------------------- ours

    @property
    def filter(self) -> EventFilter:
        return self._filter

    @property
    def exhausted(self) -> bool:
        """Every event matching the filter is in the model."""
        return self._exhausted

    @property
    def loading(self) -> bool:
        return self._loading is not None and not self._loading.done()

    def event_at(self, row: int) -> Event:
        return self._rows[row]

    def events(self) -> list[Event]:
        return list(self._rows)

    def row_of(self, event_id: int) -> int:
        """The row of the event with that id, -1 when it is not loaded."""
        if event_id not in self._ids:
            return -1
        return next(n for n, e in enumerate(self._rows) if e.id == event_id)

    def set_filter(self, f: EventFilter) -> None:
        """Show the events matching ``f`` (a reset), and read their first page."""
        if self._loading is not None:
            self._loading.cancel()
            self._loading = None
        self.beginResetModel()
        self._filter = f
        self._rows = []
        self._ids = set()
        self._cursor = None
        self._exhausted = False
        self._started = True
        self.endResetModel()
        self.load_page()

    def refresh(self) -> None:
        """Read everything again with the same filter."""
        self.set_filter(self._filter)

    def prepend(self, events: Iterable[Event]) -> int:
        """Live events: those matching the filter go in at their place (the top, for new ones)
        without a reset. Returns how many went in."""
        if not self._started:
            return 0  # the first page will read them from the store
        return self._merge(e for e in events if matches(self._filter, e))

    def load_page(self, limit: int | None = None) -> asyncio.Task[None]:
        """Read the next page (``limit`` events, a page by default) unless one is in flight:
        then that one is returned."""
        if self._loading is None or self._loading.done():
            self._loading = self.tasks.spawn(
                self._read(self._filter, self._cursor, limit or self.page_size),
                "Reading the timeline",
            )
        return self._loading

    async def settled(self) -> None:
        """Wait for the page being read, if any (a failure is the task set's to report)."""
        if self._loading is not None and not self._loading.done():
            await asyncio.wait([self._loading])

    async def fetch_until(self, rows: int) -> bool:
        """Read pages until at least ``rows`` rows are in (fewer when the store has fewer),
        after the one in flight. Returns whether there are.

        Page by page, not in one big read: reading and inserting 40,000 rows at once stalled
        the GUI thread for 50 ms (measured, bench/timeline.py); a page at a time, 10 ms."""
        while len(self._rows) < rows and not self._exhausted:
            # Shielded: this caller going away does not cancel a page others wait for.
            await asyncio.shield(self.load_page())
        return len(self._rows) >= rows

    async def _read(self, f: EventFilter, before_id: int | None, limit: int) -> None:
        self.fetches += 1
        page = await self._fetch(f, before_id, limit)
        if f != self._filter or before_id != self._cursor:
            return  # the filter changed meanwhile (set_filter cancels, this is the rest)
        if len(page) < limit:
            self._exhausted = True
        if page:
            self._cursor = min(e.id for e in page if e.id is not None)
        added = self._merge(page)
        self.page_loaded.emit(added)

    def _merge(self, events: Iterable[Event]) -> int:
        """Insert events not yet shown, keeping newest first: each run of them that lands at one
        place is one ``beginInsertRows`` (a page at the bottom, live events at the top)."""
        new = sorted(
            {e.id: e for e in events if e.id is not None and e.id not in self._ids}.values(),
            key=lambda e: -(e.id or 0),
        )
        if not new:
            return 0
        runs: list[tuple[int, list[Event]]] = []
        for e in new:
            pos = _insert_position(self._rows, e.id or 0)
            if runs and runs[-1][0] == pos:
                runs[-1][1].append(e)
            else:
                runs.append((pos, [e]))
        shift = 0
        for pos, run in runs:
            at = pos + shift
            self.beginInsertRows(QModelIndex(), at, at + len(run) - 1)
            self._rows[at:at] = run
            self._ids.update(e.id for e in run if e.id is not None)
            self.endInsertRows()
            shift += len(run)
        return len(new)

    async def aclose(self) -> None:
        await self.tasks.aclose()


def _insert_position(rows: Sequence[Event], event_id: int) -> int:
    """Where an event goes in ``rows`` (ids descending), before counting earlier inserts."""
    lo, hi = 0, len(rows)
    while lo < hi:
        mid = (lo + hi) // 2
        if (rows[mid].id or 0) > event_id:
            lo = mid + 1
        else:
            hi = mid
    return lo
