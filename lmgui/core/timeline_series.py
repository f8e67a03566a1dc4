"""The timeline chart's data: step series of VRAM and loaded instances from the store's samples,
and the events as markers on them. Qt-free and numpy-free, so it runs on the event store's worker
thread (the GUI thread only draws) and is tested as values, not pixels.

Step semantics: a sample holds until the next one. Where none came for ``MAX_HOLD_SECONDS``
(lmgui was not running, or not polling), the series has a hole (None) rather than a guess: a
flat line across the night would say the GPU was full while nobody looked.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from lmgui.core.event_store import EventFilter, EventStore
from lmgui.core.events import Event, Sample

__all__ = [
    "MAX_HOLD_SECONDS",
    "MAX_MARKERS",
    "MAX_STEPS",
    "SOURCE_COLOURS",
    "Marker",
    "Series",
    "marker_text",
    "read_series",
    "series",
]

GB = 1e9
MAX_HOLD_SECONDS = 600.0
"""How long a sample holds when no newer one came; the store keeps one a minute while lmgui runs."""
MAX_STEPS = 720
"""More changes than this in the window (2 minutes apart over a day) are drawn as that many
steps, each the most held within it: narrower steps would be under a pixel, and each costs paint."""
MAX_MARKERS = 1500
"""More events than this in the window are thinned to one marker per source and time bucket."""

SOURCE_COLOURS: dict[str, str] = {"lmgui": "#2e9e44", "other": "#e8760a", "server": "#6f6f78"}
"""One colour per source, shared by the chart's markers and the list's Source column."""


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    """On the estimate curve at ``x`` (0 where the chart has a hole)."""
    event_id: int
    """The newest event this marker stands for: what a click selects."""
    source: str
    event: Event = field(repr=False, compare=False)
    count: int = 1
    """How many events the marker stands for (more than one only on a thinned, crowded day)."""

    @property
    def text(self) -> str:
        """What hovering says: plain text (server strings inside), never rendered as HTML.
        Made when asked, not for every marker of a crowded day."""
        text = marker_text(self.event)
        if self.count > 1:
            text += f"\n... and {self.count - 1} more events around then"
        return text


@dataclass(frozen=True)
class Series:
    since: float
    until: float
    x: tuple[float, ...]
    """Step edges, oldest first, from ``since`` to ``until``: one more than each value series
    (value ``i`` holds over ``[x[i], x[i+1])``)."""
    vram_gb: tuple[float | None, ...]
    """lmgui's estimate of what the loaded instances hold; None where nothing is known."""
    measured_gb: tuple[float | None, ...]
    """NVML's used memory where the server is on this machine, else None."""
    budget_gb: tuple[float | None, ...]
    instances: tuple[int | None, ...]
    markers: tuple[Marker, ...]

    def at(self, t: float) -> int | None:
        """The index of the step holding at ``t``, or None outside the window."""
        if not self.x or t < self.x[0] or t >= self.x[-1]:
            return None
        return bisect.bisect_right(self.x, t) - 1

    def top_gb(self) -> float:
        """The highest figure on the VRAM axis (0 when there is none)."""
        values = [v for s in (self.vram_gb, self.measured_gb, self.budget_gb) for v in s if v]
        return max(values, default=0.0)

    def peak_instances(self) -> int:
        return max((n for n in self.instances if n is not None), default=0)


_Values = tuple[float | None, float | None, float | None, int | None]
_HOLE: _Values = (None, None, None, None)


def _values(s: Sample) -> _Values:
    return (
        s.vram_bytes / GB,
        s.measured_bytes / GB if s.measured_bytes is not None else None,
        s.budget_bytes / GB if s.budget_bytes is not None else None,
        s.instances,
    )


def _peaks(
    edges: list[float], values: list[_Values], since: float, until: float, buckets: int
) -> tuple[list[float], list[_Values]]:
    """``buckets`` equal steps, each holding the highest of each figure within it (None only
    where all of it was a hole); equal neighbours merged."""
    width = (until - since) / buckets
    peak: list[list[float | int | None]] = [[None] * 4 for _ in range(buckets)]
    ends = [*edges[1:], until]
    for start, end, v in zip(edges, ends, values, strict=True):
        if v == _HOLE:
            continue
        first = int((start - since) / width)
        last = min(buckets - 1, max(first, int((end - since) / width - 1e-9)))
        for b in range(first, last + 1):
            cell = peak[b]
            for n, figure in enumerate(v):
                held = cell[n]
                if figure is not None and (held is None or figure > held):
                    cell[n] = figure
    out_edges: list[float] = []
    out_values: list[_Values] = []
    for b, cell in enumerate(peak):
        v = (cell[0], cell[1], cell[2], None if cell[3] is None else int(cell[3]))
        if not out_values or out_values[-1] != v:
            out_edges.append(since + b * width)
            out_values.append(v)
    return out_edges, out_values


def marker_text(e: Event) -> str:
    """What hovering a marker says: the time of day and the event, as the list writes it."""
    return time.strftime("%H:%M:%S", time.localtime(e.at)) + "  " + e.what()


def series(
    samples: Iterable[Sample],
    events: Iterable[Event],
    since: float,
    until: float,
    *,
    max_hold: float = MAX_HOLD_SECONDS,
    max_markers: int = MAX_MARKERS,
    max_steps: int = MAX_STEPS,
    counts: Mapping[int, int] | None = None,
) -> Series:
    """The chart of ``[since, until)`` from one server's samples (those from ``since -
    max_hold`` on, so the one holding at ``since`` is known) and its events (any order; those
    without a store id or outside the window are left out). More than ``max_markers`` events
    are thinned here, unless ``counts`` says they already were (``read_series``): how many
    events each one stands for, by id."""
    edges: list[float] = []
    values: list[_Values] = []

    def step(start: float, v: _Values) -> None:
        if values and values[-1] == v:
            return  # the same figures go on: one step, not one a minute
        edges.append(start)
        values.append(v)

    ordered = sorted(samples, key=lambda s: s.at)
    held = [s for s in ordered if s.at < since][-1:]  # the one holding at ``since``, if any
    used = held + [s for s in ordered if since <= s.at < until]
    pos = since
    for n, s in enumerate(used):
        nxt = used[n + 1].at if n + 1 < len(used) else until
        start, end = max(s.at, since), min(nxt, s.at + max_hold, until)
        if end <= start:
            continue
        if start > pos:
            step(pos, _HOLE)
        step(start, _values(s))
        pos = end
    if pos < until or not edges:
        step(pos, _HOLE)
    if len(values) > max_steps:
        edges, values = _peaks(edges, values, since, until, max_steps)
    edges.append(until)

    chart = Series(
        since,
        until,
        tuple(edges),
        tuple(v[0] for v in values),
        tuple(v[1] for v in values),
        tuple(v[2] for v in values),
        tuple(v[3] for v in values),
        (),
    )
    kept = [e for e in events if e.id is not None and since <= e.at < until]
    return replace(chart, markers=tuple(_markers(chart, kept, max_markers, counts)))


def _markers(
    s: Series, events: list[Event], max_markers: int, counts: Mapping[int, int] | None
) -> list[Marker]:
    def y(t: float) -> float:
        i = s.at(t)
        v = s.vram_gb[i] if i is not None else None
        return v if v is not None else 0.0

    def marker(e: Event, count: int) -> Marker:
        return Marker(e.at, y(e.at), e.id or 0, e.source, e, count)

    if counts is not None or len(events) <= max_markers:
        events.sort(key=lambda e: (e.at, e.id or 0))
        return [marker(e, counts.get(e.id or 0, 1) if counts else 1) for e in events]
    # A crowded window: one marker per source and bucket, the newest event of each, saying how
    # many it stands for (a few thousand items keep hover and paint fast; a click still selects
    # a real event, and the list below has them all).
    width = _bucket_seconds(s.since, s.until, max_markers, len({e.source for e in events}))
    buckets: dict[tuple[str, int], list[Event]] = {}
    for e in events:
        buckets.setdefault((e.source, int((e.at - s.since) / width)), []).append(e)
    out = [
        marker(max(group, key=lambda e: (e.at, e.id or 0)), len(group))
        for group in buckets.values()
    ]
    out.sort(key=lambda m: (m.x, m.event_id))
    return out


def _bucket_seconds(since: float, until: float, max_markers: int, sources: int) -> float:
    return (until - since) / max(1, max_markers // max(1, sources))


def read_series(
    store: EventStore,
    marks: EventFilter,
    *,
    max_hold: float = MAX_HOLD_SECONDS,
    max_markers: int = MAX_MARKERS,
    max_steps: int = MAX_STEPS,
) -> Series:
    """The chart of ``marks``' server over ``[marks.since, marks.until)``, its markers the
    events matching ``marks``: on the store's worker thread.

    A crowded day is thinned by SQLite (grouped by source and time bucket, the newest row of
    each), so only the events that become markers are ever made into Python objects: building
    tens of thousands on the worker thread would hold the GIL and stall the GUI thread."""
    server, since, until = marks.server, marks.since, marks.until
    if server is None or since is None or until is None:
        raise ValueError("the chart needs a server and a window")
    samples = store.samples(server, since - max_hold, until)
    if store.count(marks) <= max_markers:
        events = store.events(marks, limit=max_markers)
        return series(
            samples,
            events,
            since,
            until,
            max_hold=max_hold,
            max_markers=max_markers,
            max_steps=max_steps,
        )
    events, counts = store.thinned(marks, max_markers)
    return series(
        samples,
        events,
        since,
        until,
        max_hold=max_hold,
        max_markers=max_markers,
        max_steps=max_steps,
        counts=counts,
    )
