"""The timeline's strip chart (pyqtgraph): one server's last 24 hours of VRAM (lmgui's estimate,
NVML's measured figure where there is one, the budget dashed) over the number of loaded
instances, with the events as markers coloured by who caused them. Hovering a marker names the
event; clicking it emits ``event_clicked(id)``.

Imported only when the timeline is first shown, on a worker thread (``ui/timeline.py``): pyqtgraph
and numpy take about a quarter of a second to import, which neither the command line nor start-up
should pay. The chart only draws a ``Series`` (core/timeline_series.py) made on the store's worker
thread. Every text from a server goes through ``setPlainText`` (pyqtgraph's ``TextItem.setText``);
the scatter's own tool tips (rich text in Qt) are off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from lmgui.core.events import SOURCE_TEXT
from lmgui.core.timeline_series import SOURCE_COLOURS, Marker, Series

__all__ = ["EventChart"]

ESTIMATE = "#3a6fd8"
MEASURED = "#17a2a2"
BUDGET = "#d33c3c"
INSTANCES = "#7b52ab"
SYMBOLS = {"lmgui": "o", "other": "t1", "server": "s"}
"""A shape per source besides its colour (colour-blind readers)."""


def _steps(edges: tuple[float, ...], values: tuple[float | int | None, ...]) -> tuple[Any, Any]:
    """A step line's points: each value flat over its interval; None becomes a break (NaN)."""
    x = np.asarray(edges, dtype=float)
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    return np.repeat(x, 2)[1:-1], np.repeat(y, 2)


def _mix(colour: QColor, base: QColor, share: float) -> QColor:
    """``share`` of ``colour`` over ``base``, opaque."""

    def mix(c: int, b: int) -> int:
        return round(c * share + b * (1 - share))

    return QColor(
        mix(colour.red(), base.red()),
        mix(colour.green(), base.green()),
        mix(colour.blue(), base.blue()),
    )


class _ClockAxis(pg.AxisItem):  # type: ignore[misc]  # pyqtgraph has no type information
    """Local clock times along x ("06:00", a day's name at midnight).

    Instead of pyqtgraph's DateAxisItem, which asks Qt for the time zone for every tick each
    time the range moves (measured: 4 ms of a paint); Python's ``time`` is enough for a day."""

    STEPS = (300, 600, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
    PIXELS_PER_LABEL = 90

    def tickValues(self, low: float, high: float, size: float) -> list[Any]:
        span = high - low
        if span <= 0 or size <= 0:
            return []
        labels = max(2.0, size / self.PIXELS_PER_LABEL)
        step = next((s for s in self.STEPS if span / s <= labels), self.STEPS[-1])
        t = time.localtime(low)
        midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
        first = midnight + math.ceil((low - midnight) / step) * step
        count = int((high - first) // step) + 1
        return [(step, [first + k * step for k in range(max(0, count))])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            t = time.localtime(v)
            midnight = t.tm_hour == 0 and t.tm_min == 0
            out.append(time.strftime("%a %d" if midnight else "%H:%M", t))
        return out


def _curves(s: Series) -> tuple[object, ...]:
    return (s.x, s.vram_gb, s.measured_gb, s.budget_gb, s.instances)


class EventChart(QWidget):
    event_clicked = Signal(int)
    """A marker was clicked: the id of the (newest) event it stands for."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: Series | None = None
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        base = palette.color(QPalette.ColorRole.Base)

        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # the server's URL
        self.title.setAccessibleName("Chart title")
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground(base)
        self.plots.setAccessibleName("VRAM and loaded instances, last 24 hours")
        self.plots.setMinimumHeight(160)
        self.whole_day = QToolButton()
        self.whole_day.setText("24 h")
        self.whole_day.setToolTip("Show the whole 24 hours again (after zooming with the wheel)")
        self.whole_day.setEnabled(False)
        self.whole_day.clicked.connect(self.reset_range)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.whole_day)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.plots, 1)

        self._text = text
        self._base = base
        self._manual_range = False
        self.built = False

    def build(self) -> None:
        """Make the plots at once (``build_steps`` a piece at a time)."""
        for _ in self.build_steps():
            pass

    def build_steps(self) -> Iterator[None]:
        """Make the plots, yielding between pieces: making them all at once takes 35-40 ms of
        the GUI thread (pyqtgraph's items are Python), each piece under 10. The caller lets the
        event loop run between steps."""
        text, base = self._text, self._base
        # The legend in a row of its own above the plots: inside, it would hide the morning.
        legend = pg.LegendItem(colCount=7, labelTextColor=text, horSpacing=14, verSpacing=-6)
        self.plots.addItem(legend, row=0, col=0)
        self.vram = self.plots.addPlot(
            row=1, col=0, axisItems={"bottom": _ClockAxis("bottom")}, enableMenu=False
        )
        yield
        self.count = self.plots.addPlot(
            row=2, col=0, axisItems={"bottom": _ClockAxis("bottom")}, enableMenu=False
        )
        yield
        self.plots.ci.layout.setRowStretchFactor(1, 3)
        self.plots.ci.layout.setRowStretchFactor(2, 1)
        self.plots.ci.setSpacing(0)
        self.count.setXLink(self.vram)
        for plot, label in ((self.vram, "VRAM (GB)"), (self.count, "Loaded")):
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(x=True, y=False)
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setLabel("left", label)
            for name in ("left", "bottom"):
                axis = plot.getAxis(name)
                axis.setPen(pg.mkPen(text))
                axis.setTextPen(pg.mkPen(text))
                # Major ticks only: the minor levels' grid lines cost most of a paint
                # (measured: 12 ms of 13 with them, 4.5 without, on a 1200x320 chart).
                axis.setStyle(tickTextOffset=4, maxTickLevel=0)
            # Both left axes equally wide, so the two plots' x line up.
            plot.getAxis("left").setWidth(48)
        self.vram.getAxis("bottom").setStyle(showValues=False)
        self.vram.getAxis("bottom").setHeight(4)
        self.count.getAxis("left").setTickSpacing(levels=[(1, 0)])

        yield
        # Opaque fills, the colour mixed with the background by hand: an alpha fill costs
        # 4 ms of every paint on a busy day (measured), an opaque one almost nothing.
        fill = _mix(QColor(ESTIMATE), base, 0.2)
        self.estimate = self.vram.plot(
            pen=pg.mkPen(ESTIMATE, width=2),
            fillLevel=0,
            brush=pg.mkBrush(fill),
            connect="finite",
            name="estimate",
        )
        self.measured = self.vram.plot(
            pen=pg.mkPen(MEASURED, width=1), connect="finite", name="measured"
        )
        yield
        self.budget = self.vram.plot(
            pen=pg.mkPen(BUDGET, width=1, style=Qt.PenStyle.DashLine),
            connect="finite",
            name="budget",
        )
        count_fill = _mix(QColor(INSTANCES), base, 0.2)
        self.instances = self.count.plot(
            pen=pg.mkPen(INSTANCES, width=1),
            fillLevel=0,
            brush=pg.mkBrush(count_fill),
            connect="finite",
            name="loaded instances",
        )
        yield
        self.scatters: dict[str, Any] = {}
        for source, colour in SOURCE_COLOURS.items():
            scatter = pg.ScatterPlotItem(
                size=10,
                symbol=SYMBOLS.get(source, "o"),
                pen=pg.mkPen(text, width=0.8),
                brush=pg.mkBrush(colour),
                hoverable=True,
                hoverSize=15,
                tip=None,  # Qt would render a tool tip as rich text: the hover label is plain
                name=SOURCE_TEXT.get(source, source),
            )
            scatter.setZValue(10)
            scatter.sigClicked.connect(self._on_markers_clicked)
            scatter.sigHovered.connect(self._on_markers_hovered)
            self.vram.addItem(scatter)
            self.scatters[source] = scatter
        for item in (self.estimate, self.measured, self.budget, self.instances):
            legend.addItem(item, item.name())
        for item in self.scatters.values():
            legend.addItem(item, item.name())
        self.hover = pg.TextItem(
            color=text,
            fill=pg.mkBrush(QColor(base.red(), base.green(), base.blue(), 235)),
            border=pg.mkPen(text),
            anchor=(0, 1),
        )
        self.hover.setZValue(20)
        self.hover.hide()
        self.vram.addItem(self.hover, ignoreBounds=True)
        self.vram.getViewBox().sigRangeChangedManually.connect(self._on_range_changed_manually)
        self.built = True

    # ------------------------------------------------------------------ data

    def set_series(self, s: Series, title: str = "") -> None:
        """Draw ``s`` (the x range follows the window unless the user zoomed or panned)."""
        for _ in self.set_series_steps(s, title):
            pass

    def set_series_steps(self, s: Series, title: str = "") -> Iterator[None]:
        """``set_series`` in two steps, the curves then the markers, each followed by its own
        paint when the caller lets the event loop run between them (on a crowded day each
        step and its paint take 5-10 ms, both at once more than a frame). What did not change
        is not set again."""
        if not self.built:
            self.build()
        old, self.series = self.series, s
        self.title.setText(title)
        if old is None or _curves(old) != _curves(s):
            self.estimate.setData(*_steps(s.x, s.vram_gb))
            self.measured.setData(*_steps(s.x, s.measured_gb))
            self.budget.setData(*_steps(s.x, s.budget_gb))
            self.instances.setData(*_steps(s.x, s.instances))
            self.vram.setYRange(0, max(s.top_gb(), 1.0) * 1.12, padding=0)
            self.count.setYRange(0, max(s.peak_instances(), 1) + 0.5, padding=0)
            self.vram.setLimits(xMin=s.since, xMax=s.until)
            if not self._manual_range:
                self.vram.setXRange(s.since, s.until, padding=0)
            yield
        if old is None or old.markers != s.markers:
            self.hover.hide()
            by_source: dict[str, list[Marker]] = {k: [] for k in self.scatters}
            for m in s.markers:
                by_source[m.source if m.source in self.scatters else "server"].append(m)
            for source, scatter in self.scatters.items():
                ms = by_source[source]
                scatter.setData(
                    x=np.fromiter((m.x for m in ms), float, len(ms)),
                    y=np.fromiter((m.y for m in ms), float, len(ms)),
                    data=ms,
                )

    def markers(self) -> list[Marker]:
        """The markers drawn, oldest first."""
        return list(self.series.markers) if self.series else []

    def hover_text(self) -> str | None:
        """What the hover label says, None when hidden."""
        return str(self.hover.toPlainText()) if self.hover.isVisible() else None

    def spots(self, source: str) -> list[Any]:
        """The scatter's points of one source (each ``.data()`` is its ``Marker``)."""
        return list(self.scatters[source].points())

    def reset_range(self) -> None:
        """Back to the whole window (after the user zoomed or panned)."""
        self._manual_range = False
        self.whole_day.setEnabled(False)
        if self.series is not None:
            self.vram.setXRange(self.series.since, self.series.until, padding=0)

    # ------------------------------------------------------------------ mouse

    def _on_markers_clicked(self, scatter: Any, points: Any, ev: Any) -> None:
        if len(points):
            marker: Marker = points[0].data()
            self.event_clicked.emit(marker.event_id)

    def _on_markers_hovered(self, scatter: Any, points: Any, ev: Any) -> None:
        if not len(points):
            if not any(
                s is not scatter and s.data["hovered"].any() for s in self.scatters.values()
            ):
                self.hover.hide()
            return
        marker: Marker = points[0].data()
        text = marker.text
        if len(points) > 1:
            text += f"\n(and {len(points) - 1} more markers here)"
        # Visible first: pyqtgraph's TextItem updates its transform only while shown, and the
        # anchor is measured through it.
        self.hover.setVisible(True)
        self.hover.setText(text)  # setPlainText: server strings are never HTML here
        # Wrapped within half the plot, so it fits on the side it opens towards.
        self.hover.setTextWidth(max(180.0, min(460.0, self.plots.width() * 0.45)))
        # Open towards the middle, so the label stays inside the plot at either end.
        (x0, x1), (y0, y1) = self.vram.getViewBox().viewRange()
        # A little off the marker (anchors past 0..1), so the label does not cover it.
        self.hover.setAnchor(
            (1.03 if marker.x > (x0 + x1) / 2 else -0.03, -0.3 if marker.y > (y0 + y1) / 2 else 1.3)
        )
        self.hover.setPos(marker.x, marker.y)

    def _on_range_changed_manually(self, *args: Any) -> None:
        self._manual_range = True
        self.whole_day.setEnabled(True)
