"""The timeline as the running app records it, against the simulator over real sockets: another
client's plain HTTP loads and unloads are named as another client's, lmgui's own as lmgui's; a TTL
expiry and an eviction are told apart from an unload; a server restart is offline, back, and
what it forgot."""

from __future__ import annotations

import functools

import httpx
from pytestqt.qtbot import QtBot

from lmgui.api import LMStudioClient
from lmgui.core.actions import LoadRequest
from lmgui.core.event_store import EventFilter, EventStore
from lmgui.core.events import Event
from lmgui.core.paths import AppPaths
from lmgui.sim import SimConfig, Simulator
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for


def kept(paths: AppPaths, **f: object) -> list[Event]:
    """What the store holds, oldest first (read as the CLI does, beside the app)."""
    store = EventStore(paths.data_dir / "events.sqlite3")
    try:
        return list(reversed(store.events(EventFilter(**f), limit=1000)))  # type: ignore[arg-type]
    finally:
        store.close()


def saw(events: list[Event], kind: str, identifier: str) -> bool:
    return any((e.kind, e.identifier) == (kind, identifier) for e in events)


def said(events: list[Event]) -> list[tuple[str, str | None, str, str | None]]:
    return [(e.kind, e.identifier, e.source, e.detail) for e in events]


async def test_who_loaded_and_unloaded_what_and_why(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim()  # the real clock: a server TTL runs out in real time
    async with running(qtbot, paths, sim.url) as app:
        seen: list[Event] = []
        app.event_log.recorded.connect(seen.extend)
        await wait_for(lambda: app.tree.rowCount() > 0)
        async with httpx.AsyncClient(base_url=sim.url) as other:  # another app, plain HTTP
            r = await other.post("/api/v1/models/load", json={"model": "google/gemma-3-270m"})
            assert r.status_code == 200
            await wait_for(lambda: any(e.identifier == "google/gemma-3-270m" for e in seen))
            r = await other.post(
                "/api/v1/models/unload", json={"instance_id": "google/gemma-3-270m"}
            )
            assert r.status_code == 200
            await wait_for(lambda: len(seen) == 2)
        await app.actions.load(LoadRequest("qwen/qwen3-4b", context_length=8192))
        await wait_for(lambda: len(seen) == 3)
        await app.actions.unload(["qwen/qwen3-4b"])
        await wait_for(lambda: len(seen) == 4)
        # A short server TTL runs out; then JIT loads from another app, the second evicting the
        # first.
        async with LMStudioClient(sim.url, lms=None) as sdk:
            await sdk.load("google/gemma-3-270m", identifier="brief", ttl=1)
        await wait_for(lambda: ("unloaded", "brief") in [(e.kind, e.identifier) for e in seen])
        async with httpx.AsyncClient(base_url=sim.url, timeout=30) as other:
            for key in ("meta/llama-3.2-1b-instruct", "ibm/granite-4-micro"):
                body = {"model": key, "messages": [{"role": "user", "content": "hi"}]}
                assert (await other.post("/v1/chat/completions", json=body)).status_code == 200
                await wait_for(functools.partial(saw, seen, "loaded", key))
        await wait_for(
            lambda: ("loaded", "ibm/granite-4-micro") in [(e.kind, e.identifier) for e in seen]
        )
    assert said(kept(paths)) == [
        ("loaded", "google/gemma-3-270m", "other", None),
        ("unloaded", "google/gemma-3-270m", "other", "unloaded by another client"),
        ("loaded", "qwen/qwen3-4b", "lmgui", None),
        ("unloaded", "qwen/qwen3-4b", "lmgui", "unloaded by lmgui"),
        ("loaded", "brief", "other", None),
        ("unloaded", "brief", "server", "its idle TTL ran out"),
        ("loaded", "meta/llama-3.2-1b-instruct", "other", None),
        (
            "unloaded",
            "meta/llama-3.2-1b-instruct",
            "server",
            "evicted when another load needed room",
        ),
        ("loaded", "ibm/granite-4-micro", "other", None),
    ]
    assert kept(paths)[2].context_length == 8192 and kept(paths)[2].vram_bytes


async def test_a_server_restart_is_offline_back_and_what_it_forgot(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim()
    port = sim.port
    async with running(qtbot, paths, sim.url) as app:
        seen: list[Event] = []
        app.event_log.recorded.connect(seen.extend)
        await app.actions.load(LoadRequest("google/gemma-3-270m"))
        await wait_for(lambda: len(seen) == 1)
        sim.stop()
        await wait_for(lambda: [e.kind for e in seen][-1:] == ["offline"])
        back = Simulator(SimConfig(port=port, tokens_per_second=0, load_seconds_per_gb=0)).start()
        try:
            await wait_for(lambda: len(seen) == 4)
        finally:
            back.stop()
    assert said(seen)[1:] == [
        ("offline", None, "server", seen[1].detail),
        ("online", None, "server", None),
        ("unloaded", "google/gemma-3-270m", "server", "the server restarted"),
    ]
    assert seen[1].detail  # why it was unreachable, in one sentence
    samples = EventStore(paths.data_dir / "events.sqlite3").samples(app.server_url, 0)
    assert samples and samples[0].instances in (0, 1)  # the chart's points were kept too


async def test_a_notification_opens_the_timeline_at_its_event(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() > 0)
        assert not app.timeline.isVisible()
        async with httpx.AsyncClient(base_url=sim.url) as other:
            r = await other.post("/api/v1/models/load", json={"model": "qwen/qwen3-4b"})
            assert r.status_code == 200
        await wait_for(lambda: f"{app.server_url}|qwen/qwen3-4b" in app._newest_event)
        app.tray.icon.messageClicked.emit()  # "qwen/qwen3-4b was loaded by another app"
        await wait_for(lambda: app.timeline.isVisible())

        def selected() -> str | None:
            rows = app.timeline.view.selectionModel().selectedRows()
            return app.timeline.model.event_at(rows[0].row()).identifier if rows else None

        await wait_for(lambda: selected() == "qwen/qwen3-4b")
        assert "by another client" in app.timeline.copy_selected()
