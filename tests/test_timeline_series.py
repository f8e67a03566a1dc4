"""The timeline chart's data for a scripted day: what the samples and events say, as values."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from lmgui.core.event_store import EventFilter, EventStore
from lmgui.core.events import Event, Sample
from lmgui.core.timeline_series import Marker, Series, marker_text, read_series, series

S = "http://gpu-box:1234"
GB = 1_000_000_000


def sample(at: float, gb: float, n: int, measured: float | None = None) -> Sample:
    return Sample(
        at,
        S,
        int(gb * GB),
        n,
        measured_bytes=int(measured * GB) if measured is not None else None,
        budget_bytes=8 * GB,
    )


def event(at: float, id: int | None, kind: str = "loaded", source: str = "other") -> Event:
    return Event(at, S, kind, source, model_key="qwen/qwen3-4b", identifier="coder", id=id)


# A day of 1000 s, a sample holding for at most 100 s when no newer one comes.
SAMPLES = [
    sample(-50, 1.0, 1),  # before the window: holds into it for its last 50 s
    sample(100, 3.0, 2, measured=3.5),
    sample(150, 3.0, 2, measured=3.5),  # the same figures: no new step
    sample(400, 0.0, 0, measured=0.4),  # 250 s after the last one: lmgui was away meanwhile
    sample(990, 2.5, 1),
    sample(1000, 9.0, 9),  # at ``until``: outside
]


def day() -> Series:
    events = [
        event(120, 1),
        event(450, 2, "unloaded", "server"),
        event(600, 3, "offline", "server"),  # in a hole: on the axis
        event(-10, 4),  # before the window
        event(1000, 5),  # at its end: outside
        event(300, None),  # never kept: no id to select
    ]
    return series(SAMPLES, events, 0, 1000, max_hold=100)


def test_a_sample_holds_until_the_next_one_and_lmgui_away_is_a_hole() -> None:
    s = day()
    assert s.x == (0.0, 50.0, 100.0, 250.0, 400.0, 500.0, 990.0, 1000.0)
    assert s.vram_gb == (1.0, None, 3.0, None, 0.0, None, 2.5)
    assert s.measured_gb == (None, None, 3.5, None, 0.4, None, None)
    assert s.budget_gb == (8.0, None, 8.0, None, 8.0, None, 8.0)
    assert s.instances == (1, None, 2, None, 0, None, 1)
    assert len(s.x) == len(s.vram_gb) + 1
    assert s.top_gb() == 8.0 and s.peak_instances() == 2


def test_the_step_holding_at_a_time() -> None:
    s = day()
    assert [s.at(t) for t in (-1, 0, 49.9, 50, 120, 399, 400, 999, 1000)] == [
        None,
        0,
        0,
        1,
        2,
        3,
        4,
        6,
        None,
    ]


def test_events_are_markers_on_the_estimate_at_their_time() -> None:
    s = day()
    kept = {1: event(120, 1), 2: event(450, 2, "unloaded", "server"), 3: event(600, 3, "offline")}
    assert [(m.x, m.y, m.event_id, m.source, m.count, m.text) for m in s.markers] == [
        (120, 3.0, 1, "other", 1, marker_text(kept[1])),
        (450, 0.0, 2, "server", 1, marker_text(kept[2])),
        (600, 0.0, 3, "server", 1, marker_text(kept[3])),
    ]
    assert kept[1].what() in s.markers[0].text  # the list's words, with the time of day


def test_no_samples_is_one_hole_over_the_window() -> None:
    s = series([], [event(10, 1)], 0, 100)
    assert s.x == (0.0, 100.0)
    assert s.vram_gb == (None,) and s.instances == (None,)
    assert s.markers == (Marker(10, 0.0, 1, "other", event(10, 1)),)
    assert s.markers[0].text == marker_text(event(10, 1))
    assert s.top_gb() == 0.0 and s.peak_instances() == 0


def test_a_sample_long_before_the_window_does_not_hold_into_it() -> None:
    s = series([sample(-500, 4.0, 1), sample(30, 2.0, 1)], [], 0, 100, max_hold=100)
    assert s.x == (0.0, 30.0, 100.0)
    assert s.vram_gb == (None, 2.0)


def test_a_crowded_day_is_thinned_to_markers_that_say_how_many_they_stand_for() -> None:
    sources = ("lmgui", "other", "server")
    events = [event(n * 0.2, n + 1, source=sources[n % 3]) for n in range(5000)]
    s = series([], events, 0, 1000, max_markers=300)
    assert 0 < len(s.markers) <= 300
    assert sum(m.count for m in s.markers) == 5000
    by_id = {e.id: e for e in events}
    for m in s.markers:
        newest = by_id[m.event_id]
        assert (m.x, m.source) == (newest.at, newest.source)
        if m.count > 1:
            assert m.text.endswith(f"and {m.count - 1} more events around then")
    assert [m.x for m in s.markers] == sorted(m.x for m in s.markers)


def test_the_store_thins_a_crowded_day_as_the_series_would(tmp_path: Path) -> None:
    t0 = time.time() - 2000  # the store prunes what is older than its bound
    sources = ("lmgui", "other", "server")
    events = [event(t0 + n * 0.2, None, source=sources[n % 3]) for n in range(5000)]
    store = EventStore(tmp_path / "e.sqlite3")
    try:
        kept = store.add([*events, replace(events[0], server="elsewhere")])
        for p in SAMPLES:
            store.sample(replace(p, at=t0 + p.at))
        marks = EventFilter(S, t0, t0 + 1000)
        read = read_series(store, marks, max_hold=100, max_markers=300)
        kept_samples = store.samples(S, t0 - 100, t0 + 1000)  # less a repeat within a minute
        made = series(kept_samples, kept[:-1], t0, t0 + 1000, max_hold=100, max_markers=300)
        assert read.x == made.x and read.vram_gb == made.vram_gb
        assert len(read.markers) == len(made.markers) <= 300
        assert [(m.x, m.event_id, m.count, m.text) for m in read.markers] == [
            (m.x, m.event_id, m.count, m.text) for m in made.markers
        ]
        few = read_series(store, replace(marks, sources=frozenset({"lmgui"}), until=t0 + 100))
        assert [m.event_id for m in few.markers] == [e.id for e in kept[:500:3]]
        assert all(m.count == 1 for m in few.markers)
    finally:
        store.close()


def test_more_changes_than_steps_are_drawn_as_the_peak_of_each_bucket() -> None:
    wobbly = [sample(t, (t // 10) % 3, int(t // 10) % 2) for t in range(0, 600, 10)]
    wobbly += [sample(900, 5.0, 4)]  # after a hole from 610
    s = series(wobbly, [], 0, 1000, max_hold=10, max_steps=10)
    # 10 buckets of 100 s, each the highest of its 10 samples; equal neighbours merged.
    assert s.x == (0.0, 600.0, 900.0, 1000.0)
    assert s.vram_gb == (2.0, None, 5.0)
    assert s.instances == (1, None, 4)
    assert s.budget_gb == (8.0, None, 8.0)
