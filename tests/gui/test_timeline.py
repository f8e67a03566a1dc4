"""The timeline dock over a store filled with a scripted day: the list newest first, its filters,
live events without a reset, paging, finding an old event, copying, and the chart's markers
selecting their event. No server: the events are written as the app's recorder would."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from lmgui.core.event_store import AsyncEventStore, EventStore
from lmgui.core.events import Event, Sample
from lmgui.qtmodels.event_table import EventTableModel
from lmgui.ui.timeline import TimelineDock
from tests.gui.conftest import wait_for

HERE = "http://gpu-box:1234"
THERE = "http://laptop:1234"
GB = 1_000_000_000
START = time.time() - 6 * 3600


def day() -> list[Event]:
    """Oldest first; ids 1..9 once kept."""
    at = iter(START + n * 600 for n in range(100))
    return [
        Event(next(at), HERE, "loaded", "lmgui", "qwen/qwen3-4b", "qwen/qwen3-4b", 8192, 1.0),
        Event(next(at), HERE, "loaded", "other", "google/gemma-3-12b", "gemma-chat", 4096, 1.0),
        Event(
            next(at),
            HERE,
            "unloaded",
            "server",
            "google/gemma-3-12b",
            "gemma-chat",
            detail="its idle TTL ran out",
        ),
        Event(next(at), HERE, "offline", "server", detail="connection refused"),
        Event(next(at), HERE, "online", "server"),
        Event(next(at), THERE, "loaded", "other", "qwen/qwen3-4b", "<b>coder</b>"),
        Event(
            next(at), HERE, "load_failed", "lmgui", "meta/llama-3.3-70b", detail="not enough VRAM"
        ),
        Event(next(at), HERE, "action", "lmgui", detail="Freed the GPU (1 instance)"),
        Event(next(at), HERE, "loaded", "other", "qwen/qwen3-4b", "<b>coder</b>", vram_bytes=GB),
    ]


def samples() -> list[Sample]:
    return [
        Sample(START + n * 60, HERE, (n % 5) * GB, n % 5, budget_bytes=8 * GB) for n in range(300)
    ]


def fill(path: Path, events: Sequence[Event], points: Sequence[Sample] = ()) -> list[Event]:
    store = EventStore(path)
    try:
        kept = store.add(events)
        for p in points:
            store.sample(p)
        return kept
    finally:
        store.close()


def many(n: int) -> list[Event]:
    return [
        Event(START + i, HERE, "loaded", ("lmgui", "other", "server")[i % 3], f"m/{i}", f"m{i}")
        for i in range(n)
    ]


@contextlib.asynccontextmanager
async def dock_on(
    qtbot: QtBot, path: Path, *, show: bool = True
) -> AsyncIterator[tuple[TimelineDock, AsyncEventStore]]:
    store = AsyncEventStore(path)
    dock = TimelineDock(store, lambda: HERE)
    qtbot.addWidget(dock)
    dock.resize(900, 600)
    try:
        if show:
            dock.show()
            await dock.settle()
        yield dock, store
    finally:
        await dock.aclose()
        await store.aclose()


def shown(dock: TimelineDock, column: int = 2) -> list[str]:
    m = dock.model
    return [m.index(r, column).data() for r in range(m.rowCount())]


def ids(dock: TimelineDock) -> list[int | None]:
    return [e.id for e in dock.model.events()]


def selected(dock: TimelineDock) -> list[int]:
    return sorted(i.row() for i in dock.view.selectionModel().selectedRows())


async def test_the_list_is_this_servers_events_newest_first(
    qtbot: QtBot, tmp_path: Path, qtmodeltester: Any
) -> None:
    kept = fill(tmp_path / "e.sqlite3", day())
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, _):
        assert ids(dock) == [9, 8, 7, 5, 4, 3, 2, 1]  # 6 is the other server's
        assert (
            shown(dock)[0]
            == kept[8].what()
            == ("loaded qwen/qwen3-4b as <b>coder</b> (about 1.0 GB), by another client")
        )
        assert shown(dock, 1)[:3] == ["another client", "lmgui", "lmgui"]
        assert dock.view.isColumnHidden(3)  # the server column, for one server
        assert dock.count_label.text() == "8 events"
        assert dock.model.exhausted and not dock.model.canFetchMore(dock.model.index(-1, -1))
        qtmodeltester.check(dock.model)


async def test_filters_by_model_kind_source_and_server_change_the_rows(
    qtbot: QtBot, tmp_path: Path
) -> None:
    fill(tmp_path / "e.sqlite3", day())
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, _):
        resets: list[bool] = []
        dock.model.modelReset.connect(lambda: resets.append(True))

        qtbot.keyClicks(dock.filter_box, "GEMMA")
        await wait_for(lambda: ids(dock) == [3, 2])  # the key or the identifier, any case
        dock.filter_box.clear()
        dock.apply_filter()  # what the typing timer does
        await dock.settle()
        assert len(ids(dock)) == 8

        dock.kind_box.setCurrentText("Unloaded")
        await dock.settle()
        assert ids(dock) == [3]
        dock.kind_box.setCurrentText("All events")
        dock.source_box.setCurrentText("Another client")
        await dock.settle()
        assert ids(dock) == [9, 2]
        dock.source_box.setCurrentText("The server")
        await dock.settle()
        assert ids(dock) == [5, 4, 3]
        assert dock.count_label.text() == "3 events"

        dock.source_box.setCurrentText("All sources")
        dock.scope_box.setCurrentText("All servers")
        await dock.settle()
        assert ids(dock) == [9, 8, 7, 6, 5, 4, 3, 2, 1]
        assert not dock.view.isColumnHidden(3)
        assert dock.model.index(3, 3).data() == THERE
        assert len(resets) == 8  # one per change of filter (typing is one), none besides


async def test_live_events_go_in_at_the_top_without_a_reset_and_keep_the_selection(
    qtbot: QtBot, tmp_path: Path
) -> None:
    kept = fill(tmp_path / "e.sqlite3", day())
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, store):
        dock.source_box.setCurrentText("Another client")
        await dock.settle()
        dock.view.selectRow(1)  # gemma-chat, loaded by another client
        resets: list[bool] = []
        inserted: list[tuple[int, int]] = []
        dock.model.modelReset.connect(lambda: resets.append(True))
        dock.model.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))

        now = time.time()
        live = await store.add(
            [
                Event(now, HERE, "loaded", "other", "qwen/qwen3-8b", "agent"),
                Event(now, HERE, "loaded", "lmgui", "qwen/qwen3-8b", "mine"),  # not this source
                Event(now, THERE, "loaded", "other", "qwen/qwen3-8b", "elsewhere"),  # nor server
                Event(now + 1, HERE, "unloaded", "other", "qwen/qwen3-8b", "agent"),
            ]
        )
        dock.add_events(live)
        assert ids(dock) == [13, 10, 9, 2]
        assert inserted == [(0, 1)] and resets == []
        assert selected(dock) == [3] and dock.model.event_at(3).identifier == "gemma-chat"
        assert dock.count_label.text() == "4 events"
        dock.add_events(live)  # the same again: nothing twice
        assert ids(dock) == [13, 10, 9, 2] and inserted == [(0, 1)]
        assert kept[1].id == 2


async def test_a_live_event_keeps_the_rows_in_sight_when_scrolled_down(
    qtbot: QtBot, tmp_path: Path
) -> None:
    fill(tmp_path / "e.sqlite3", many(300))
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, store):
        dock.view.scrollTo(dock.model.index(100, 0), dock.view.ScrollHint.PositionAtTop)
        top = dock.model.event_at(dock.view.rowAt(0)).id
        live = await store.add([Event(time.time(), HERE, "loaded", "other", "x/y", "new")])
        dock.add_events(live)
        assert dock.model.rowCount() == 301
        assert dock.model.event_at(dock.view.rowAt(0)).id == top


async def test_the_list_reads_pages_of_500_as_the_view_asks(qtbot: QtBot, tmp_path: Path) -> None:
    fill(tmp_path / "e.sqlite3", many(1200))
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, _):
        m = dock.model
        assert (m.rowCount(), m.fetches) == (500, 1)
        assert m.canFetchMore(m.index(-1, -1))
        m.fetchMore(m.index(-1, -1))
        m.fetchMore(m.index(-1, -1))  # in flight: not asked twice
        await dock.settle()
        assert (m.rowCount(), m.fetches) == (1000, 2)
        dock.view.scrollToBottom()  # the view asks for the rest itself
        await wait_for(lambda: m.rowCount() == 1200)
        await dock.settle()
        assert m.fetches == 3 and m.exhausted and not m.canFetchMore(m.index(-1, -1))
        assert ids(dock) == list(range(1200, 0, -1))
        assert dock.count_label.text() == "1,200 events"


async def test_show_event_reads_pages_down_to_an_old_event_and_selects_it(
    qtbot: QtBot, tmp_path: Path
) -> None:
    fill(tmp_path / "e.sqlite3", many(2000))
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, _):
        assert await dock.show_event(150)  # the 1851st newest
        assert dock.model.rowCount() == 2000  # whole pages
        row = dock.model.row_of(150)
        assert row == 1850
        assert selected(dock) == [row] and dock.view.currentIndex().row() == row
        assert dock.model.fetches == 4  # a page at a time
        assert not dock.view.visualRect(dock.model.index(row, 0)).isEmpty()  # scrolled to


async def test_show_event_clears_the_filters_that_hide_it(qtbot: QtBot, tmp_path: Path) -> None:
    fill(tmp_path / "e.sqlite3", day())
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, _):
        dock.kind_box.setCurrentText("Unloaded")
        await dock.settle()
        assert await dock.show_event(6)  # another server's load
        assert dock.kind_box.currentText() == "All events"
        assert dock.scope_box.currentText() == "All servers"
        assert dock.model.event_at(selected(dock)[0]).id == 6
        said: list[str] = []
        dock.status.connect(said.append)
        assert not await dock.show_event(999)
        assert said == ["That event is no longer in the timeline."]


async def test_show_event_opens_a_dock_never_shown(qtbot: QtBot, tmp_path: Path) -> None:
    fill(tmp_path / "e.sqlite3", day())
    async with dock_on(qtbot, tmp_path / "e.sqlite3", show=False) as (dock, _):
        assert dock.model.rowCount() == 0
        dock.add_events(day())  # before the first look: the store has them anyway
        assert dock.model.rowCount() == 0
        assert await dock.show_event(3)
        assert dock.isVisible() and dock.model.event_at(selected(dock)[0]).id == 3


async def test_copy_puts_the_selected_rows_on_the_clipboard_as_lines(
    qtbot: QtBot, tmp_path: Path
) -> None:
    kept = fill(tmp_path / "e.sqlite3", day())
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, _):
        clipboard = QGuiApplication.clipboard()
        by_id = {e.id: e for e in kept}
        assert dock.copy_selected() == "\n".join(by_id[i].line() for i in ids(dock))  # none: all
        dock.view.selectRow(0)
        dock.view.selectionModel().select(
            dock.model.index(2, 0),
            QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
        )
        dock.view.setFocus()
        qtbot.keyClick(dock.view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
        assert clipboard.text() == by_id[9].line() + "\n" + by_id[7].line() + "\n"
        assert by_id[9].line().endswith("loaded qwen/qwen3-4b as <b>coder</b> (about 1.0 GB), "
                                        "by another client")  # fmt: skip
        qtbot.keyClick(dock.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
        assert dock.filter_box.hasFocus() or QGuiApplication.focusObject() is dock.filter_box


async def test_the_chart_draws_this_servers_day_and_a_marker_click_selects_its_event(
    qtbot: QtBot, tmp_path: Path
) -> None:
    fill(tmp_path / "e.sqlite3", day(), samples())
    async with dock_on(qtbot, tmp_path / "e.sqlite3") as (dock, _):
        await wait_for(lambda: dock.chart is not None and dock.chart.series is not None)
        await dock.settle()
        chart = dock.chart
        assert chart is not None and chart.series is not None
        assert [m.event_id for m in chart.markers()] == [1, 2, 3, 4, 5, 7, 8, 9]
        assert chart.series.top_gb() == 8.0 and chart.series.peak_instances() == 4
        assert chart.title.text() == f"{HERE}: the last 24 hours"

        spot = next(p for p in chart.spots("other") if p.data().event_id == 9)
        chart._on_markers_hovered(chart.scatters["other"], [spot], None)
        text = chart.hover_text()
        assert text is not None and text.endswith(
            "as <b>coder</b> (about 1.0 GB), by another client"
        )
        assert chart.hover.textItem.toPlainText() == text  # shown as plain text, tags and all
        chart._on_markers_hovered(chart.scatters["other"], [], None)
        assert chart.hover_text() is None

        chart._on_markers_clicked(chart.scatters["other"], [spot], None)
        await dock.settle()
        assert dock.model.event_at(selected(dock)[0]).id == 9

        chart.event_clicked.emit(3)  # the server's TTL unload
        await dock.settle()
        assert dock.model.event_at(selected(dock)[0]).id == 3

        dock.source_box.setCurrentText("lmgui")  # the markers follow the filters
        await dock.settle()
        assert [m.event_id for m in chart.markers()] == [1, 7, 8]


async def test_the_model_reads_nothing_before_it_is_given_a_filter(qtbot: QtBot) -> None:
    asked: list[object] = []

    async def fetch(*args: object) -> list[Event]:
        asked.append(args)
        return []

    model = EventTableModel(fetch)
    assert not model.canFetchMore(model.index(-1, -1))
    assert model.prepend(day()) == 0 and asked == []
    model.refresh()
    await model.tasks.settle()
    assert len(asked) == 1 and model.exhausted
    await model.aclose()


def test_importing_the_app_does_not_import_pyqtgraph() -> None:
    # A fresh interpreter: this one has the chart loaded by the tests above.
    code = "import lmgui.app, lmgui.cli, sys; assert 'pyqtgraph' not in sys.modules, 'pyqtgraph'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
