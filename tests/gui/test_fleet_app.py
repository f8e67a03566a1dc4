"""The whole app watching several servers: one window with a row per server, row actions that
reach the row's own server (checked in what each simulator holds), a load on the second server
from the load dialog, and a server killed and restarted without the others' rows noticing.
Real simulators on loopback ports, the real app on the qasync loop."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PySide6.QtCore import QModelIndex
from pytestqt.qtbot import QtBot

from lmgui.app import LmguiApp
from lmgui.core.fleet_state import fleet_icon_name
from lmgui.core.paths import AppPaths
from lmgui.core.profiles import Profile, ProfileStore
from lmgui.core.settings import Settings, SettingsValues
from lmgui.core.status import ConnectionState
from lmgui.qtmodels.model_tree import Column, Role, RowKind, ServerRecord
from lmgui.sim import SimConfig, Simulator
from tests.conftest import SimFactory
from tests.gui.conftest import shown, wait_for

TOKEN = "sk-lm-Zq8Xb2Rt:Vw9Lp4Km7Nh3Jd6FAbCd"


@contextlib.asynccontextmanager
async def fleet_app(
    qtbot: QtBot, paths: AppPaths, *profiles: Profile, tokens: dict[str, str] | None = None
) -> AsyncIterator[LmguiApp]:
    """The app as a user starts it after adding ``profiles`` in Settings."""
    ProfileStore(paths.config_dir / "servers.json").save(profiles)
    app = LmguiApp(paths, poll_ms=100)
    for url, token in (tokens or {}).items():
        conn = app.fleet.connection(url)
        assert conn is not None
        await conn.set_token(token)
    for _, conn in app.fleet.connections():
        conn.poller.max_backoff_ms = 400
    async with shown(qtbot, app):
        yield app


def server_rows(app: LmguiApp) -> list[QModelIndex]:
    tree = app.tree
    return [tree.index(r, 0) for r in range(tree.rowCount())]


def server_cell(app: LmguiApp, url: str, column: Column) -> str:
    return str(app.tree.server_index(url).siblingAtColumn(column).data() or "")


def loaded_ids(sim: Simulator) -> set[str]:
    return set(sim.state.instances)


def dimmed(app: LmguiApp) -> bool:
    """Whether the table is greyed as a whole (one server, offline)."""
    return app.tree.dimmed


def select(app: LmguiApp, index: QModelIndex) -> None:
    proxy_index = app.window.proxy.mapFromSource(index)
    assert proxy_index.isValid()
    app.window.view.setCurrentIndex(proxy_index)


async def test_three_servers_one_switched_off_show_in_one_window(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    desk, box, off = make_sim(), make_sim(token=TOKEN), make_sim()
    desk.state.finish_load(desk.state.begin_load("google/gemma-3-270m", {}).id)
    profiles = (
        Profile("desk", desk.url),
        Profile("gpu-box", box.url),
        Profile("old laptop", off.url, enabled=False),
    )
    async with fleet_app(qtbot, paths, *profiles, tokens={box.url: TOKEN}) as app:
        # One row per watched server, in profile order; the switched-off one is not polled.
        await wait_for(lambda: app.tree.filled(desk.url) and app.tree.filled(box.url))
        rows = server_rows(app)
        assert [r.data(Role.RECORD) for r in rows] == [
            ServerRecord(desk.url, "desk"),
            ServerRecord(box.url, "gpu-box"),
        ]
        assert all(r.data(Role.KIND) == RowKind.SERVER for r in rows)
        assert app.fleet.connection(off.url) is None
        # The token-protected server is connected with its own token; its models are listed.
        await wait_for(lambda: server_cell(app, box.url, Column.STATE) == "Connected")
        assert app.tree.models(box.url)
        # Each server's rows hold its own instances; the desk's loaded model shows under it.
        assert app.tree.instance_index("google/gemma-3-270m", desk.url).isValid()
        assert not app.tree.instance_index("google/gemma-3-270m", box.url).isValid()
        assert "1 loaded" in server_cell(app, desk.url, Column.STATUS)
        # The fleet's totals in the status bar.
        await wait_for(lambda: app.window.fleet_label.text().startswith("2 servers: 1 instance"))


async def test_load_dialog_loads_on_the_picked_server(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    first, second = make_sim(), make_sim()
    async with fleet_app(
        qtbot, paths, Profile("one", first.url), Profile("two", second.url)
    ) as app:
        await wait_for(lambda: app.tree.filled(first.url) and app.tree.filled(second.url))
        # The selected row's server is the dialog's default.
        select(app, app.tree.model_index("qwen/qwen3-4b", second.url))
        dialog = app.window.open_load_dialog()
        assert dialog is not None
        assert dialog.server == second.url
        assert dialog.server_box.isVisibleTo(dialog)
        labels = [dialog.server_box.itemText(i) for i in range(dialog.server_box.count())]
        assert labels[0].startswith("one") and labels[1].startswith("two")
        # Each server listed with its free VRAM, once the server's own survey is in.
        await wait_for(lambda: "free of 24.0 GB" in dialog.server_box.itemText(1))
        await wait_for(lambda: "free of 24.0 GB" in dialog.server_box.itemText(0))
        # Pick the first server, then the second again, as a user would.
        dialog.server_box.setCurrentIndex(0)
        dialog.server_box.activated.emit(0)
        assert dialog.server == first.url
        dialog.server_box.setCurrentIndex(1)
        dialog.server_box.activated.emit(1)
        dialog.context.setValue(4096)
        dialog.load_button.click()
        await wait_for(lambda: bool(loaded_ids(second)))
        assert not loaded_ids(first)
        iid = next(iter(loaded_ids(second)))
        await wait_for(lambda: app.tree.instance_index(iid, second.url).isValid())
        # Lmgui's own load is no "appeared" mark.
        assert app.tree.instance_index(iid, second.url).data(Role.MARK) is None


async def test_row_actions_reach_the_rows_server(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    a, b = make_sim(), make_sim()
    # The same instance id on both servers: only the row's server may lose it.
    for sim in (a, b):
        sim.state.finish_load(sim.state.begin_load("google/gemma-3-270m", {}).id)
    async with fleet_app(qtbot, paths, Profile("a", a.url), Profile("b", b.url)) as app:
        app.settings.confirm_unload = False
        await wait_for(lambda: app.tree.instance_index("google/gemma-3-270m", b.url).isValid())
        select(app, app.tree.instance_index("google/gemma-3-270m", b.url))
        assert app.server_url == b.url  # the selected row's server is the window's current one
        assert app.snapshot_menu.free_action.text() == "&Free the GPU on b"
        app.window.unload_action.trigger()
        await wait_for(lambda: not loaded_ids(b))
        assert loaded_ids(a) == {"google/gemma-3-270m"}
        await wait_for(lambda: not app.tree.instance_index("google/gemma-3-270m", b.url).isValid())
        assert app.tree.instance_index("google/gemma-3-270m", a.url).isValid()
        # The tray's Unload of a's instance reaches a.
        app._on_tray_unload_requested(a.url, ["google/gemma-3-270m"])
        await wait_for(lambda: not loaded_ids(a))
        # The tray's "Free the GPU" of b frees b only, and its Restore brings b's back.
        for sim in (a, b):
            sim.state.finish_load(sim.state.begin_load("qwen/qwen3-4b", {}).id)
        await wait_for(lambda: app.tree.instance_index("qwen/qwen3-4b", b.url).isValid())
        await wait_for(lambda: app.tree.instance_index("qwen/qwen3-4b", a.url).isValid())
        app.tray.free_requested.emit(b.url)
        await wait_for(lambda: not loaded_ids(b))
        assert loaded_ids(a) == {"qwen/qwen3-4b"}
        await wait_for(lambda: app.snapshots.restorable(b.url) is not None)
        assert app.snapshots.restorable(a.url) is None
        app.tray.restore_requested.emit(b.url)
        await wait_for(lambda: loaded_ids(b) == {"qwen/qwen3-4b"})
        assert loaded_ids(a) == {"qwen/qwen3-4b"}


async def test_a_killed_server_goes_offline_alone_and_comes_back(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    steady = make_sim()
    steady.state.finish_load(steady.state.begin_load("google/gemma-3-270m", {}).id)
    config = SimConfig(port=0, tokens_per_second=0, load_seconds_per_gb=0)
    doomed = Simulator(config).start()
    port = doomed.port
    back: Simulator | None = None
    try:
        async with fleet_app(
            qtbot, paths, Profile("steady", steady.url), Profile("doomed", doomed.url)
        ) as app:
            url = app.fleet.connections()[1][1].url
            await wait_for(lambda: app.tree.filled(steady.url) and app.tree.filled(url))
            # Settled: the server's own VRAM survey (asked once, beside the polls) has arrived.
            await wait_for(lambda: "/" in server_cell(app, steady.url, Column.VRAM))
            steady_index = app.tree.instance_index("google/gemma-3-270m", steady.url)
            select(app, steady_index)
            changes: list[Any] = []
            app.tree.dataChanged.connect(
                lambda top, _bottom, _roles: changes.append(
                    (top.siblingAtColumn(0).data(Role.SERVER), top.column(), top.data())
                )
            )
            removed: list[str] = []
            app.tree.rowsAboutToBeRemoved.connect(
                lambda parent, *_: removed.append(str(parent.data(Role.SERVER) or "top"))
            )
            resets: list[bool] = []
            app.tree.modelReset.connect(lambda: resets.append(True))
            steady_polls = app.fleet.connection(steady.url).poller.polls  # type: ignore[union-attr]
            titles: list[str] = []
            app.notifier.notify.connect(lambda _kind, title, _body: titles.append(title))

            doomed.stop()  # killed mid-poll: the next request finds nobody
            await wait_for(
                lambda: (
                    app.fleet.connection(url).poller.status.state  # type: ignore[union-attr]
                    is ConnectionState.UNREACHABLE
                )
            )
            assert "Unreachable" in server_cell(app, url, Column.STATE)
            # The notification names the server that went.
            await wait_for(lambda: "doomed: LM Studio is unreachable" in titles)
            # The steady server went on polling; its rows were never touched, the selection
            # stayed, nothing was reset, and its state is still connected.
            steady_conn = app.fleet.connection(steady.url)
            assert steady_conn is not None
            await wait_for(lambda: steady_conn.poller.polls > steady_polls + 3)
            assert steady_conn.poller.status.state is ConnectionState.CONNECTED
            assert [c for c in changes if c[0] == steady.url] == []
            assert steady.url not in removed
            assert not resets
            assert app.window.view.currentIndex() == app.window.proxy.mapFromSource(
                app.tree.instance_index("google/gemma-3-270m", steady.url)
            )
            assert not app.tree.dimmed  # several servers: only the dead one's row says it
            # The tray's one icon shows the worst state: a server is offline.
            assert app.tray_state().servers[1].connection is ConnectionState.UNREACHABLE
            assert fleet_icon_name(app.tray_state()) == "state-offline"

            back = Simulator(
                SimConfig(port=port, tokens_per_second=0, load_seconds_per_gb=0)
            ).start()
            await wait_for(
                lambda: (
                    app.fleet.connection(url).poller.status.state  # type: ignore[union-attr]
                    is ConnectionState.CONNECTED
                ),
                within=15,
            )
            assert server_cell(app, url, Column.STATE) == "Connected"
            await wait_for(lambda: fleet_icon_name(app.tray_state()) == "state-loaded")
    finally:
        doomed.stop()
        if back is not None:
            back.stop()


async def test_settings_add_a_server_with_a_token_and_one_switched_off(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    desk, box, off = make_sim(), make_sim(token=TOKEN), make_sim()
    async with fleet_app(qtbot, paths, Profile("desk", desk.url)) as app:
        await wait_for(lambda: app.tree.filled(desk.url))
        assert not app.tree.fleet  # one server: its models are the top-level rows
        profiles = (
            Profile("desk", desk.url),
            Profile("gpu-box", box.url),
            Profile("laptop", off.url, enabled=False),
        )
        app.apply_settings(
            SettingsValues(
                desk.url,
                None,
                100,
                0.0,
                True,
                profiles=profiles,
                token_changes=((box.url, TOKEN),),
            )
        )
        await wait_for(lambda: app.tree.filled(box.url))
        assert [r.data(Role.RECORD) for r in server_rows(app)] == [
            ServerRecord(desk.url, "desk"),
            ServerRecord(box.url, "gpu-box"),
        ]
        assert app.tree.filled(desk.url), "the desk's rows were filled again under its row"
        await wait_for(lambda: server_cell(app, box.url, Column.STATE) == "Connected")
        assert app.fleet.connection(off.url) is None
        assert not off.requests, "a switched-off server is never asked"
        # The token goes to its own server only.
        bearer = f"Bearer {TOKEN}"
        assert any(r.headers.get("authorization") == bearer for r in box.requests)
        assert not any(TOKEN in str(r.headers) for r in desk.requests)
        # Switching the laptop on later starts polling it beside the others.
        app.apply_settings(
            SettingsValues(
                desk.url,
                None,
                100,
                0.0,
                True,
                profiles=(*profiles[:2], Profile("laptop", off.url)),
            )
        )
        await wait_for(lambda: app.tree.filled(off.url))
        assert len(server_rows(app)) == 3


async def test_a_load_dialog_open_on_a_server_switched_off_moves_to_a_watched_one(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    a, b, c = make_sim(), make_sim(), make_sim()
    profiles = (Profile("a", a.url), Profile("b", b.url), Profile("c", c.url))
    async with fleet_app(qtbot, paths, *profiles) as app:
        app.settings.vram_budget_gb = 24.0  # the fit check plans room: it reads the pins
        await wait_for(lambda: all(app.tree.filled(s.url) for s in (a, b, c)))
        select(app, app.tree.model_index("qwen/qwen3-4b", b.url))
        dialog = app.window.open_load_dialog()
        assert dialog is not None and dialog.server == b.url
        app.apply_settings(
            SettingsValues(a.url, None, 100, 24.0, True, profiles=(profiles[0], profiles[2]))
        )
        # No error: the dialog now names and loads on a server lmgui watches.
        await wait_for(lambda: dialog.server == app.server_url)
        assert dialog.server != b.url
        assert dialog.server_box.currentData() == dialog.server
        assert app.window.selected_server() != b.url  # the selection's server went too
        dialog.load_button.click()
        await wait_for(lambda: bool(loaded_ids(a) or loaded_ids(c)))
        assert not loaded_ids(b)


async def test_use_loaded_selects_the_instance_on_the_dialogs_server(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    a, b = make_sim(), make_sim()
    for sim in (a, b):
        sim.state.finish_load(sim.state.begin_load("google/gemma-3-270m", {}).id)
    async with fleet_app(qtbot, paths, Profile("a", a.url), Profile("b", b.url)) as app:
        await wait_for(lambda: app.tree.instance_index("google/gemma-3-270m", b.url).isValid())
        await wait_for(lambda: app.tree.instance_index("google/gemma-3-270m", a.url).isValid())
        select(app, app.tree.model_index("google/gemma-3-270m", b.url))
        dialog = app.window.open_load_dialog()
        assert dialog is not None and dialog.use_existing.isChecked()
        dialog.load_button.click()  # "Use loaded"
        current = app.window.proxy.mapToSource(app.window.view.currentIndex())
        assert current == app.tree.instance_index("google/gemma-3-270m", b.url)
        assert app.server_url == b.url


async def test_switching_views_between_one_server_and_several(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    live = make_sim()
    dead = "http://127.0.0.1:9"  # nothing listens there
    async with fleet_app(qtbot, paths, Profile("dead", dead)) as app:
        conn = app.fleet.connections()[0][1]
        await wait_for(lambda: conn.poller.status.state is ConnectionState.UNREACHABLE)
        assert dimmed(app)  # one server offline: the table greys
        # A live server joins: every server has its row, the view is not greyed as a whole.
        app.set_profiles([Profile("dead", dead), Profile("live", live.url)])
        await wait_for(lambda: app.tree.filled(live.url))
        assert app.tree.fleet and not dimmed(app)
        # Pausing holds every server, and one added while paused waits too.
        app.set_paused(True)
        other = make_sim()
        app.set_profiles(
            [Profile("dead", dead), Profile("live", live.url), Profile("other", other.url)]
        )
        added = app.fleet.connection(other.url)
        assert added is not None and not added.poller.running
        assert app.tray_state().paused
        app.set_paused(False)
        await wait_for(lambda: app.tree.filled(other.url))
        # Back to the dead one alone: greyed again.
        app.set_profiles([Profile("dead", dead)])
        await wait_for(lambda: not app.tree.fleet)
        assert dimmed(app)


async def test_a_server_switched_off_and_on_again_is_recorded_again(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    a, b = make_sim(), make_sim()
    both = [Profile("a", a.url), Profile("b", b.url)]
    async with fleet_app(qtbot, paths, *both) as app:
        await wait_for(lambda: app.tree.filled(a.url) and app.tree.filled(b.url))
        app.set_profiles(both[:1])
        app.set_profiles(both)
        await wait_for(lambda: app.tree.filled(b.url))
        recorded: list[Any] = []
        app.event_log.recorded.connect(recorded.extend)
        async with httpx.AsyncClient(base_url=b.url) as other:
            r = await other.post("/api/v1/models/load", json={"model": "qwen/qwen3-4b"})
            assert r.status_code == 200
        await wait_for(
            lambda: any(e.server == b.url and e.identifier == "qwen/qwen3-4b" for e in recorded)
        )


async def test_the_environments_token_goes_to_the_default_server_only(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, lab = make_sim(token=TOKEN), make_sim()
    Settings(paths.config_dir / "lmgui.ini").server_url = home.url
    monkeypatch.setenv("LM_API_TOKEN", TOKEN)
    # The lab comes first in the list; the token is still the home server's.
    async with fleet_app(qtbot, paths, Profile("lab", lab.url), Profile("home", home.url)) as app:
        await wait_for(lambda: server_cell(app, home.url, Column.STATE) == "Connected")
        await wait_for(lambda: app.tree.filled(lab.url))
        assert not any(TOKEN in str(r.headers) for r in lab.requests)


async def test_profiles_without_a_usable_address_start_on_the_default_server(
    qtbot: QtBot, paths: AppPaths, make_sim: SimFactory
) -> None:
    home = make_sim()
    Settings(paths.config_dir / "lmgui.ini").server_url = home.url
    (paths.config_dir / "servers.json").write_text(
        json.dumps({"version": 1, "servers": [{"name": "typo", "url": "http://host:99999"}]})
    )
    app = LmguiApp(paths, poll_ms=100)
    try:
        assert [c.url for _, c in app.fleet.connections()] == [home.url]
    finally:
        await app.shutdown()
