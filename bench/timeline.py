"""How long the timeline dock stalls the GUI thread over a big store (never asserted in tests).

    .venv/bin/python bench/timeline.py                 # 100,000 events, a readable report
    .venv/bin/python bench/timeline.py --events 20000 --json

A temporary store gets ``--events`` events spread over the last 24 hours across 3 servers, and
chart samples at one a minute per server with random figures (what the store keeps while lmgui
runs; every minute a new step is the chart's worst case). The GC is then frozen, as the app does
after its first poll. The dock (offscreen, 1200x800) then goes through these steps, each
measured as the longest gap of a 1 ms timer on the GUI thread (how long the event loop stalled)
until it is idle again (300 ms of quiet):

- open_first: shown the first time (the first page, the count, pyqtgraph imported on a thread,
  the chart built and drawn); open_again: hidden and shown;
- type_filter: "qwen3" typed into the filter box at 80 ms a key; filter_combos: the kind, source
  and server choices changed and put back;
- scroll_10_pages: the view scrolled to its end ten times (a page read each time), then paged up;
- show_event_deep: ``show_event`` on the 40,000th newest event;
- live_events_and_chart_reload: 20 live events 100 ms apart, and the chart read again after;
- hover_markers: the hover label over 30 markers.

Goal: no stall over 16 ms. The store's size on disk is reported too. A stall is a maximum:
anything else busy on the machine inflates it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_API", "pyside6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import GapMeter

from lmgui.core.event_store import AsyncEventStore, EventStore
from lmgui.core.events import BY_LMGUI, BY_OTHER, EVICTED, RESTART, TTL, Event, Sample

SERVERS = ("http://gpu-box:1234", "http://laptop:1234", "http://10.0.0.7:1234")
MODELS = [
    ("qwen/qwen3-4b", 3.1),
    ("qwen/qwen3-8b", 5.6),
    ("qwen/qwen2.5-coder-7b", 5.2),
    ("google/gemma-3-12b", 8.1),
    ("google/gemma-3-4b", 3.4),
    ("openai/gpt-oss-20b", 12.8),
    ("mistralai/devstral-small-2507", 9.4),
    ("meta/llama-3.2-3b", 2.4),
    ("microsoft/phi-4-mini", 2.9),
    ("deepseek/deepseek-r1-qwen3-8b", 5.6),
]
QUIET_S = 0.3
GB = 1_000_000_000


def scripted(n: int, now: float, seed: int = 1) -> tuple[list[Event], list[Sample]]:
    """``n`` events over the last 24 hours, round-robin over the servers, and a sample a minute
    per server."""
    rnd = random.Random(seed)
    start = now - 24 * 3600
    events = []
    for i in range(n):
        at = start + (i + rnd.random()) * (24 * 3600 - 60) / n
        server = SERVERS[i % len(SERVERS)]
        key, gb = rnd.choice(MODELS)
        ident = rnd.choice([key, key.split("/")[1], f"agent-{rnd.randrange(20)}"])
        roll = rnd.random()
        if roll < 0.45:
            e = Event(at, server, "loaded", rnd.choice(["lmgui", "other"]), key, ident,
                      rnd.choice([4096, 8192, 32768]), 1.0, int(gb * GB))  # fmt: skip
        elif roll < 0.9:
            source, why = rnd.choice(
                [("lmgui", BY_LMGUI), ("other", BY_OTHER), ("server", TTL), ("server", EVICTED)]
            )
            e = Event(at, server, "unloaded", source, key, ident, vram_bytes=int(gb * GB),
                      detail=why)  # fmt: skip
        elif roll < 0.93:
            e = Event(at, server, "load_failed", "lmgui", key, detail="not enough VRAM")
        elif roll < 0.95:
            e = Event(at, server, "offline", "server", detail="connection refused")
        elif roll < 0.97:
            e = Event(at, server, "online", "server")
        elif roll < 0.98:
            e = Event(at, server, "unloaded", "server", key, ident, detail=RESTART)
        elif roll < 0.99:
            e = Event(at, server, "download_finished", "lmgui", key)
        else:
            e = Event(at, server, "action", "lmgui", detail="Freed the GPU (2 instances)")
        events.append(e)
    samples = []
    for server in SERVERS:
        for minute in range(24 * 60):
            loaded = rnd.randrange(0, 5)
            vram = loaded * 4 * GB
            samples.append(Sample(start + minute * 60, server, vram, loaded, vram + GB, 24 * GB))
    return events, samples


def store_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def quiet(seconds: float = QUIET_S) -> None:
    await asyncio.sleep(seconds)


async def measure(out: dict[str, Any], name: str, step: Callable[[], Awaitable[Any]]) -> None:
    with GapMeter() as meter:
        t = time.perf_counter()
        await step()
        seconds = time.perf_counter() - t
        await quiet()
    out[name] = {**meter.summary(), "seconds": round(seconds, 3)}


async def until(condition: Callable[[], bool], within: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("the dock did not get there")
        await asyncio.sleep(0.005)


async def bench(n: int) -> dict[str, Any]:
    from lmgui.ui.timeline import TimelineDock

    out: dict[str, Any] = {"events": n, "servers": len(SERVERS)}
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "events.sqlite3"
        now = time.time()
        events, samples = scripted(n, now)
        t = time.perf_counter()
        sync = EventStore(path)
        ids = sorted((e.id or 0 for e in sync.add(events)), reverse=True)
        for s in samples:
            sync.sample(s)
        sync.close()
        out["fill_seconds"] = round(time.perf_counter() - t, 2)
        out["samples"] = len(samples)
        out["store_mb"] = round(store_size(path) / 1e6, 1)
        # The app freezes what start-up built (LmguiApp, after the first poll); here the
        # scripted events would otherwise be walked by every full collection, a pause the app
        # does not have.
        del events, samples
        gc.collect()
        gc.freeze()

        store = AsyncEventStore(path)
        dock = TimelineDock(store, lambda: SERVERS[0])
        dock.resize(1200, 800)

        async def open_dock() -> None:
            dock.show()
            await until(lambda: dock.chart is not None and dock.chart.series is not None)
            await dock.settle()

        await measure(out, "open_first", open_dock)
        chart = dock.chart
        assert chart is not None and chart.series is not None
        out["chart_markers"] = len(chart.series.markers)
        out["chart_steps"] = len(chart.series.vram_gb)

        async def reopen() -> None:
            dock.hide()
            await quiet(0.05)
            dock.show()
            await dock.settle()

        await measure(out, "open_again", reopen)

        async def type_filter() -> None:
            for ch in "qwen3":
                QTest.keyClicks(dock.filter_box, ch)
                await asyncio.sleep(0.08)  # a quick typist
            await until(lambda: dock.model.filter.model == "qwen3")
            await dock.settle()

        await measure(out, "type_filter", type_filter)
        out["rows_after_filter"] = dock.count_label.text()

        async def combos() -> None:
            for box, text in (
                (dock.kind_box, "Unloaded"),
                (dock.source_box, "The server"),
                (dock.scope_box, "All servers"),
                (dock.kind_box, "All events"),
                (dock.source_box, "All sources"),
            ):
                box.setCurrentText(text)
                await dock.settle()
                await asyncio.sleep(0.05)
            dock.filter_box.clear()
            dock.apply_filter()
            await dock.settle()

        await measure(out, "filter_combos", combos)

        async def scroll_pages() -> None:
            for _ in range(10):
                rows = dock.model.rowCount()
                dock.view.scrollToBottom()
                await until(lambda r=rows: dock.model.rowCount() > r)  # type: ignore[misc]
                await dock.settle()
                await asyncio.sleep(0.02)
            bar = dock.view.verticalScrollBar()
            for _ in range(40):  # and wheel up through them
                QTest.keyClick(dock.view, Qt.Key.Key_PageUp)
                await asyncio.sleep(0.01)
            assert bar.value() < bar.maximum()

        await measure(out, "scroll_10_pages", scroll_pages)
        out["rows_after_scroll"] = dock.model.rowCount()

        deep = ids[40_000 if n > 40_000 else n // 2]

        async def show_deep() -> None:
            assert await dock.show_event(deep)

        await measure(out, "show_event_deep", show_deep)
        out["rows_after_show_event"] = dock.model.rowCount()

        async def live() -> None:
            for i in range(20):
                batch = await store.add(
                    [
                        Event(
                            time.time(), SERVERS[i % 3], "loaded", "other", "qwen/qwen3-4b", f"x{i}"
                        )
                    ]
                )
                dock.add_events(batch)
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # the chart is read again after a burst
            await dock.settle()

        await measure(out, "live_events_and_chart_reload", live)

        async def hover() -> None:
            spots = chart.spots("other")
            for spot in spots[:: max(1, len(spots) // 30)]:
                chart._on_markers_hovered(chart.scatters["other"], [spot], None)
                await asyncio.sleep(0.01)

        await measure(out, "hover_markers", hover)

        await dock.aclose()
        await store.aclose()
        dock.close()
    out["longest_stall_ms"] = max(v["max_gap_ms"] for v in out.values() if isinstance(v, dict))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    QApplication.instance() or QApplication(sys.argv[:1])
    result: dict[str, Any] = qasync.run(bench(args.events))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if isinstance(value, dict):
            gap, p99, seconds = value["max_gap_ms"], value["p99_gap_ms"], value["seconds"]
            print(f"{key:<30} longest stall {gap:>6} ms, p99 {p99} ms, {seconds} s")
        else:
            print(f"{key:<30} {value}")


if __name__ == "__main__":
    main()
