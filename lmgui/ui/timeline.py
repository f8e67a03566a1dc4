"""The timeline dock: what happened on the server, newest first, under a 24-hour chart of its VRAM
and loaded instances.

The list is an ``EventTableModel`` reading the store a page at a time; the chart
(``ui/event_chart.py``, pyqtgraph) is imported on a worker thread the first time the dock is
shown, so neither start-up nor the command line pays for pyqtgraph and numpy. Everything from the
store is awaited on its worker thread (``AsyncEventStore``), as tasks of one ``TaskSet`` that
``aclose()`` cancels: the GUI thread never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QItemSelectionModel, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from lmgui.core.event_store import AsyncEventStore, EventFilter
from lmgui.core.events import Event
from lmgui.core.tasks import TaskSet
from lmgui.core.timeline_series import read_series
from lmgui.qtmodels.event_table import COLUMNS, EventTableModel, matches

if TYPE_CHECKING:
    from lmgui.ui.event_chart import EventChart

__all__ = ["KIND_CHOICES", "SOURCE_CHOICES", "TimelineDock"]

CHART_MODULE = "lmgui.ui.event_chart"
DAY = 86400.0
CHART_EVERY_MS = 60_000
"""The chart is read again this often while shown (new samples), and soon after live events."""
CHART_SOON_MS = 1500
TYPING_MS = 250
CHART_AFTER_LIST_S = 0.1
"""The chart's import starts this long after the list's first page is in (and painted)."""

KIND_CHOICES: list[tuple[str, frozenset[str] | None]] = [
    ("All events", None),
    ("Loaded", frozenset({"loaded"})),
    ("Unloaded", frozenset({"unloaded"})),
    ("Load failed", frozenset({"load_failed"})),
    ("Offline", frozenset({"offline"})),
    ("Back online", frozenset({"online"})),
    ("Downloaded", frozenset({"download_finished"})),
    ("lmgui's actions", frozenset({"action"})),
]
SOURCE_CHOICES: list[tuple[str, frozenset[str] | None]] = [
    ("All sources", None),
    ("lmgui", frozenset({"lmgui"})),
    ("Another client", frozenset({"other"})),
    ("The server", frozenset({"server"})),
]
THIS_SERVER, ALL_SERVERS = range(2)


class _Keys(QObject):
    """Ctrl+C and Ctrl+F in the list, before the window's own shortcuts for them (copy the model
    key, the window's filter) take the keys: the list claims them in ``ShortcutOverride``."""

    def __init__(self, dock: TimelineDock) -> None:
        super().__init__(dock)
        self.dock = dock

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            assert isinstance(event, QKeyEvent)
            for key, act in (
                (QKeySequence.StandardKey.Copy, self.dock.copy_selected),
                (QKeySequence.StandardKey.Find, self.dock.focus_filter),
            ):
                if event.matches(key):
                    if event.type() == QEvent.Type.KeyPress:
                        act()
                    event.accept()
                    return True
        return False


class TimelineDock(QDockWidget):
    status = Signal(str)
    """A failure to read the timeline, as one sentence (for the status bar)."""

    def __init__(
        self,
        store: AsyncEventStore,
        server: Callable[[], str],
        parent: QWidget | None = None,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__("Timeline", parent)
        self.setObjectName("timeline-dock")
        self.store = store
        self._server = server
        self._wall = wall
        self.tasks = TaskSet("The timeline", self._report)
        self.model = EventTableModel(self._read_page, self, wall=wall)
        self.model.failed.connect(self._report)
        self.chart: EventChart | None = None
        self._started = False
        self._chart_task: asyncio.Task[None] | None = None
        self._chart_again = False
        self._chart_dirty = False
        self._count_asked = 0
        self._count: int | None = None

        self.filter_box = QLineEdit()
        self.filter_box.setPlaceholderText("Model key or identifier")
        self.filter_box.setAccessibleName("Filter the timeline by model")
        self.filter_box.setToolTip(
            "Show only the events of models whose key or identifier has this"
        )
        self.filter_box.setClearButtonEnabled(True)
        self.kind_box = QComboBox()
        self.kind_box.setAccessibleName("Kind of event")
        for text, _ in KIND_CHOICES:
            self.kind_box.addItem(text)
        self.source_box = QComboBox()
        self.source_box.setAccessibleName("Who caused it")
        for text, _ in SOURCE_CHOICES:
            self.source_box.addItem(text)
        self.scope_box = QComboBox()
        self.scope_box.setAccessibleName("Which servers")
        self.scope_box.addItems(["This server", "All servers"])
        self.count_label = QLabel()
        self.count_label.setTextFormat(Qt.TextFormat.PlainText)
        self.count_label.setAccessibleName("Number of events")
        row = QHBoxLayout()
        row.addWidget(self.filter_box, 2)
        row.addWidget(self.kind_box)
        row.addWidget(self.source_box)
        row.addWidget(self.scope_box)
        row.addWidget(self.count_label, 1, Qt.AlignmentFlag.AlignRight)

        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setAccessibleName("Events, newest first")
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setWordWrap(False)
        self.view.setShowGrid(False)
        self.view.setAlternatingRowColors(True)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        # Fixed row heights and no "resize to contents": the view never asks every row.
        rows = self.view.verticalHeader()
        rows.hide()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.view.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COLUMNS.index("Event"), QHeaderView.ResizeMode.Stretch)
        metrics = self.fontMetrics()
        for column, sample in (
            ("Time", "2026-12-31 23:59:59"),
            ("Source", "another client"),
            ("Server", "http://192.168.100.100:1234"),
        ):
            self.view.setColumnWidth(COLUMNS.index(column), metrics.horizontalAdvance(sample) + 36)
        self.view.setColumnHidden(COLUMNS.index("Server"), True)
        self._keys = _Keys(self)
        self.view.installEventFilter(self._keys)

        self.chart_slot = QLabel("Loading the chart...")
        self.chart_slot.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.chart_slot.setMinimumHeight(160)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.chart_slot)
        self.splitter.addWidget(self.view)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row)
        layout.addWidget(self.splitter, 1)
        self.setWidget(body)

        self._typing = QTimer(self, singleShot=True, interval=TYPING_MS)
        self._typing.timeout.connect(self.apply_filter)
        self._chart_timer = QTimer(self, interval=CHART_EVERY_MS)
        self._chart_timer.timeout.connect(self._on_chart_timer_timeout)
        self._chart_soon = QTimer(self, singleShot=True, interval=CHART_SOON_MS)
        self._chart_soon.timeout.connect(self._on_chart_timer_timeout)
        self.filter_box.textChanged.connect(self._typing.start)
        for box in (self.kind_box, self.source_box, self.scope_box):
            box.currentIndexChanged.connect(self._on_box_current_index_changed)
        self.visibilityChanged.connect(self._on_visibility_changed)

    # ------------------------------------------------------------------ the app's calls

    def add_events(self, events: Sequence[Event]) -> None:
        """Live events (as kept, with their ids): those matching the filters go in at the top;
        the selection stays, and so do the rows in sight when the list is scrolled down."""
        if not self._started or not events:
            return
        bar = self.view.verticalScrollBar()
        top = self.view.rowAt(0)
        anchor = self.model.event_at(top).id if top >= 0 and bar.value() > 0 else None
        added = self.model.prepend(events)
        if added and anchor is not None:
            self.view.doItemsLayout()  # the scroll bar's range, now rather than later
            self.view.scrollTo(
                self.model.index(self.model.row_of(anchor), 0),
                QAbstractItemView.ScrollHint.PositionAtTop,
            )
        if added and self._count is not None:
            self._count += added
            self._show_count()
        server = self._server()
        if any(e.server == server for e in events):
            self._chart_changed(soon=True)

    def show_event(self, event_id: int) -> asyncio.Task[bool]:
        """Show the dock at one event: select it and scroll to it, reading pages as needed (the
        filters are cleared when they hide it). The task says whether it was found."""
        self.show()
        self.raise_()
        return self.tasks.spawn(self._reveal(event_id), "Finding the event")

    def copy_selected(self) -> str:
        """The selected rows (all rows read so far when none is) as text on the clipboard, one
        ``Event.line()`` a row, newest first. Returns the text."""
        rows = sorted(i.row() for i in self.view.selectionModel().selectedRows())
        events = [self.model.event_at(r) for r in rows] if rows else self.model.events()
        text = "\n".join(e.line() for e in events)
        if events:
            QGuiApplication.clipboard().setText(text + "\n")
        return text

    def refresh(self) -> None:
        """Read the list and the chart again (after a change of server, say)."""
        if not self._started:
            return
        self.apply_filter(force=True)

    def focus_filter(self) -> None:
        self.filter_box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_box.selectAll()

    async def settle(self) -> None:
        """Wait until nothing is being read (tests, screenshots, the benchmark)."""
        while self.tasks or self.model.tasks:
            await self.tasks.settle()
            await self.model.tasks.settle()

    async def aclose(self) -> None:
        """Cancel what is being read; call before the store is closed."""
        self._typing.stop()
        self._chart_timer.stop()
        self._chart_soon.stop()
        await self.tasks.aclose()
        await self.model.aclose()

    # ------------------------------------------------------------------ filters

    def current_filter(self) -> EventFilter:
        kinds = KIND_CHOICES[max(0, self.kind_box.currentIndex())][1]
        sources = SOURCE_CHOICES[max(0, self.source_box.currentIndex())][1]
        return EventFilter(
            server=self._server() if self.scope_box.currentIndex() == THIS_SERVER else None,
            kinds=kinds,
            sources=sources,
            model=self.filter_box.text().strip() or None,
        )

    def apply_filter(self, *, force: bool = False) -> None:
        """Read the list (a reset) for the filters as they stand, when they changed."""
        self._typing.stop()
        f = self.current_filter()
        if f == self.model.filter and self._started and not force:
            return
        self._started = True
        self.view.setColumnHidden(COLUMNS.index("Server"), f.server is not None)
        self.model.set_filter(f)
        self._count = None
        self._count_asked += 1
        self.count_label.setText("")
        self.tasks.spawn(self._read_count(f, self._count_asked), "Counting the events")
        self._chart_changed()

    def _on_box_current_index_changed(self, _index: int) -> None:
        self.apply_filter()

    def _clear_filters(self, server: str) -> None:
        for box in (self.filter_box, self.kind_box, self.source_box, self.scope_box):
            box.blockSignals(True)
        self.filter_box.clear()
        self.kind_box.setCurrentIndex(0)
        self.source_box.setCurrentIndex(0)
        if server != self._server():
            self.scope_box.setCurrentIndex(ALL_SERVERS)
        for box in (self.filter_box, self.kind_box, self.source_box, self.scope_box):
            box.blockSignals(False)
        self.apply_filter(force=True)

    # ------------------------------------------------------------------ reading

    async def _read_page(self, f: EventFilter, before_id: int | None, limit: int) -> list[Event]:
        return await self.store.events(f, limit=limit, before_id=before_id)

    async def _read_count(self, f: EventFilter, asked: int) -> None:
        n = await self.store.count(f)
        if asked == self._count_asked:
            self._count = n
            self._show_count()

    def _show_count(self) -> None:
        n = self._count or 0
        self.count_label.setText(f"{n:,} event" + ("" if n == 1 else "s"))

    async def _reveal(self, event_id: int) -> bool:
        if not self._started:
            self.apply_filter()
        if self.model.row_of(event_id) < 0:
            found = await self.store.run(lambda s: s.event(event_id))
            if found is None:
                self.status.emit("That event is no longer in the timeline.")
                return False
            if not matches(self.model.filter, found):
                self._clear_filters(found.server)
            f = self.model.filter
            newer = await self.store.run(lambda s: s.position(event_id, f))
            if f != self.model.filter:
                return False  # the user changed the filters meanwhile
            await self.model.fetch_until(newer + 1)
        row = self.model.row_of(event_id)
        if row < 0:
            return False
        index = self.model.index(row, 0)
        self.view.selectionModel().setCurrentIndex(
            index,
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows,
        )
        self.view.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        return True

    def _report(self, sentence: str) -> None:
        self.status.emit(sentence)

    # ------------------------------------------------------------------ the chart

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._started:
            self.apply_filter()

    def _on_visibility_changed(self, visible: bool) -> None:
        if visible:
            self._chart_timer.start()
            if self._chart_dirty:
                self._chart_changed()
        else:
            self._chart_timer.stop()

    def _on_chart_timer_timeout(self) -> None:
        self._chart_changed()

    def _chart_changed(self, *, soon: bool = False) -> None:
        """Read the chart again: now, or a little later for live events (they come in bursts);
        only while the dock is shown."""
        if not self.isVisible():
            self._chart_dirty = True
            return
        if soon:
            if not self._chart_soon.isActive():
                self._chart_soon.start()
            return
        self._chart_dirty = False
        if self._chart_task is not None and not self._chart_task.done():
            self._chart_again = True
            return
        self._chart_task = self.tasks.spawn(self._load_chart(), "Drawing the chart")

    async def _load_chart(self) -> None:
        while True:
            self._chart_again = False
            if self.chart is None:
                # The list first: its first page and paint make many calls into Python, each
                # of which would wait for the GIL while the import runs on its thread.
                await self.model.settled()
                await asyncio.sleep(CHART_AFTER_LIST_S)
                module = await _import_off_thread(CHART_MODULE)
                chart: EventChart = module.EventChart(self)
                for _ in chart.build_steps():
                    await asyncio.sleep(0)  # the event loop runs between the pieces
                await asyncio.sleep(0)
                self._install_chart(chart)
                await asyncio.sleep(0)  # its first, empty paint before the data's
            assert self.chart is not None
            server = self._server()
            until = self._wall()
            f = self.model.filter
            marks = EventFilter(server, until - DAY, until, f.kinds, f.sources, f.model)

            drawn = await self.store.run(functools.partial(read_series, marks=marks))
            for _ in self.chart.set_series_steps(drawn, f"{server}: the last 24 hours"):
                await asyncio.sleep(0)  # a paint between the curves and the markers
            if not self._chart_again:
                return

    def _install_chart(self, chart: EventChart) -> None:
        self.chart = chart
        chart.event_clicked.connect(self._on_chart_event_clicked)
        self.splitter.replaceWidget(0, chart)
        self.chart_slot.deleteLater()

    def _on_chart_event_clicked(self, event_id: int) -> None:
        self.show_event(event_id)


async def _import_off_thread(name: str) -> ModuleType:
    """Import a module on a worker thread (measured: importing pyqtgraph and numpy on the GUI
    thread stalls it for about 250 ms; on a thread the longest gap is under 8 ms)."""
    if name in sys.modules:
        return sys.modules[name]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[ModuleType] = loop.create_future()

    def settle(result: Any, failed: bool) -> None:
        if done.done():
            return
        if failed:
            done.set_exception(result)
        else:
            done.set_result(result)

    def work() -> None:
        try:
            result: Any = importlib.import_module(name)
            failed = False
        except BaseException as exc:  # handed to the awaiting task
            result, failed = exc, True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, failed)

    # WORKAROUND: the GIL. While the import runs, every call from Qt into Python on the GUI
    # thread (the list's data(), a timer) waits up to the switch interval (5 ms) for the
    # importing thread to let go; a paint makes dozens of such calls. A shorter interval for
    # the import's duration keeps each wait short; it is put back afterwards.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.0005))
    try:
        threading.Thread(target=work, name="lmgui-import-chart", daemon=True).start()
        return await done
    finally:
        sys.setswitchinterval(interval)
