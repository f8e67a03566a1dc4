"""Render docs/timeline.png: the timeline dock over a scripted day (offscreen, no server).

    .venv/bin/python docs/make_timeline_screenshot.py

The day: lmgui loads a model in the morning, an IDE agent JIT-loads a coder that its TTL unloads,
lmgui is closed for an hour (a hole in the chart), a chat app loads Gemma, the server restarts
(offline, back, its instances gone), a big load by another client evicts the coder, a load fails,
lmgui frees the GPU for a game and restores it, a download finishes. The hover label is shown on
the eviction, and the eviction is selected in the list.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_API", "pyside6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lmgui.core.events import BY_LMGUI, BY_OTHER, EVICTED, Event, Sample

DOCS = Path(__file__).resolve().parent
SERVER = "http://localhost:1234"
GB = 1_000_000_000
BUDGET = 24 * GB
OVERHEAD = int(0.9 * GB)
"""What the GPU holds besides the models (the desktop, the driver): NVML sees it, lmgui does not."""

NOW = (20, 0)
"""The picture's clock: today at 20:00, the chart from yesterday 20:00."""

# (today's clock time, kind, source, model key, identifier, GB, detail)
DAY: list[tuple[str, str, str, str | None, str | None, float | None, str | None]] = [
    ("08:05", "loaded", "lmgui", "qwen/qwen3-4b", "qwen/qwen3-4b", 3.1, None),
    ("08:40", "loaded", "other", "qwen/qwen2.5-coder-7b", "coder", 5.2, None),
    ("09:45", "unloaded", "server", "qwen/qwen2.5-coder-7b", "coder", 5.2, "its idle TTL ran out"),
    ("11:30", "loaded", "other", "google/gemma-3-12b", "gemma-chat", 8.1, None),
    ("12:40", "offline", "server", None, None, None, "connection refused"),
    ("12:52", "online", "server", None, None, None, None),
    ("12:52", "unloaded", "server", "qwen/qwen3-4b", "qwen/qwen3-4b", 3.1, "the server restarted"),
    (
        "12:52",
        "unloaded",
        "server",
        "google/gemma-3-12b",
        "gemma-chat",
        8.1,
        "the server restarted",
    ),
    ("13:05", "loaded", "lmgui", "openai/gpt-oss-20b", "openai/gpt-oss-20b", 12.8, None),
    ("14:00", "loaded", "other", "qwen/qwen2.5-coder-7b", "coder", 5.2, None),
    ("14:45", "unloaded", "server", "qwen/qwen2.5-coder-7b", "coder", 5.2, EVICTED),
    ("14:45", "loaded", "other", "mistralai/devstral-small-2507", "devstral", 9.4, None),
    ("15:20", "load_failed", "lmgui", "meta/llama-3.3-70b", None, None, "needs 42 GB, 1.8 free"),
    ("16:00", "unloaded", "lmgui", "openai/gpt-oss-20b", "openai/gpt-oss-20b", 12.8, BY_LMGUI),
    ("16:00", "action", "lmgui", None, None, None, "Made way for a game: unloaded 1 instance"),
    ("17:30", "loaded", "lmgui", "openai/gpt-oss-20b", "openai/gpt-oss-20b", 12.8, None),
    ("17:30", "action", "lmgui", None, None, None, "The game closed: restored 1 instance"),
    ("17:50", "download_finished", "lmgui", "qwen/qwen3-30b-a3b", None, None, None),
    ("18:30", "unloaded", "other", "mistralai/devstral-small-2507", "devstral", 9.4, BY_OTHER),
    ("19:10", "loaded", "other", "qwen/qwen3-4b", "qwen/qwen3-4b", 3.1, None),
]
CLOSED = ("10:10", "10:50")
"""lmgui was not running: no samples, a hole in the chart."""
AWAY = ("12:40", "12:52")
"""The server restarting: no samples either."""
GAME = ("16:00", "17:30")
"""A game held 9 GB that lmgui made way for: NVML measures it, lmgui's estimate does not."""


def today(clock: str) -> float:
    """Today at ``clock`` ("HH:MM"), local time."""
    hour, minute = (int(p) for p in clock.split(":"))
    t = time.localtime()
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, hour, minute, 0, 0, 0, -1))


def scripted_day() -> tuple[float, list[Event], list[Sample]]:
    """The picture's clock, its events and its chart samples (one a minute while lmgui ran)."""
    now = today(f"{NOW[0]:02d}:{NOW[1]:02d}")
    events = [
        Event(
            today(clock),
            SERVER,
            kind,
            source,
            model_key=key,
            identifier=ident,
            context_length=8192 if kind == "loaded" else None,
            gpu_offload=1.0 if kind == "loaded" else None,
            vram_bytes=int(gb * GB) if gb else None,
            detail=detail,
        )
        for clock, kind, source, key, ident, gb, detail in DAY
    ]
    loaded: dict[str, int] = {}
    samples = []
    pending = sorted(events, key=lambda e: e.at)
    closed = [today(c) for c in CLOSED]
    away = [today(c) for c in AWAY]
    game = [today(c) for c in GAME]
    at = now - 24 * 3600
    while at < now:
        while pending and pending[0].at <= at:
            e = pending.pop(0)
            if e.kind == "loaded" and e.identifier and e.vram_bytes:
                loaded[e.identifier] = e.vram_bytes
            elif e.kind == "unloaded" and e.identifier:
                loaded.pop(e.identifier, None)
        if not (closed[0] <= at < closed[1] or away[0] <= at < away[1]):
            vram = sum(loaded.values())
            held = 9 * GB if game[0] <= at < game[1] else 0
            wobble = int(0.15 * GB * ((int(at) // 60 * 7919) % 13) / 13)
            samples.append(
                Sample(
                    at,
                    SERVER,
                    vram,
                    len(loaded),
                    measured_bytes=vram + OVERHEAD + held + wobble,
                    budget_bytes=BUDGET,
                )
            )
        at += 60
    return now, events, samples


async def main(out: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMainWindow

    from lmgui.core.event_store import AsyncEventStore, EventStore
    from lmgui.ui.timeline import TimelineDock

    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "events.sqlite3"
        now, events, samples = scripted_day()
        sync = EventStore(path)
        kept = sync.add(events)
        for s in samples:
            sync.sample(s)
        sync.close()
        store = AsyncEventStore(path)
        window = QMainWindow()
        window.setWindowTitle("lmgui")
        dock = TimelineDock(store, lambda: SERVER, window, wall=lambda: now)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        window.resize(1180, 780)
        window.show()
        await dock.settle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while dock.chart is None or dock.chart.series is None:
            if loop.time() > deadline:
                raise TimeoutError("the chart did not come")
            await asyncio.sleep(0.05)
        await dock.settle()
        chart = dock.chart
        evicted = next(e for e in kept if e.detail == EVICTED)
        assert evicted.id is not None
        await dock.show_event(evicted.id)
        spot = next(p for p in chart.spots("server") if p.data().event_id == evicted.id)
        chart._on_markers_hovered(chart.scatters["server"], [spot], None)
        await asyncio.sleep(0.3)
        window.grab().save(str(out))
        print("wrote", out)
        await dock.aclose()
        await store.aclose()
        window.close()


if __name__ == "__main__":
    import qasync
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication(sys.argv[:1])
    qasync.run(main(DOCS / "timeline.png"))
