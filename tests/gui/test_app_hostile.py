"""The running app against a slow or stuck server, with polling paused, with a dirty token, and
the files it keeps."""

from __future__ import annotations

import asyncio
import logging
import stat
import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from lmgui.api import LMStudioClient
from lmgui.api.limits import Deadlines
from lmgui.app import LmguiApp
from lmgui.core.paths import AppPaths, PrivateRotatingFileHandler
from lmgui.core.poller import ConnectionState
from lmgui.ui.tray import tooltip
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for
from tests.hostile import HostileFactory

MODELS = (
    b'{"models": [{"type": "llm", "key": "a/b", "display_name": "A B", "size_bytes": 1000000,'
    b' "loaded_instances": [{"id": "a/b", "config": {"context_length": 4096}}]}]}'
)
TOKEN = "sk-lm-Zq8Xb2Rt:Vw9Lp4Km7Nh3Jd6F"


async def test_a_dripping_poll_shows_slow_then_unreachable_and_polling_goes_on(
    qtbot: QtBot, hostile: HostileFactory, paths: AppPaths
) -> None:
    srv = hostile("json", body=MODELS)
    app = LmguiApp(paths, server=srv.url, poll_ms=100, deadlines=Deadlines(models=1.2))
    app.poller.max_backoff_ms = 200
    qtbot.addWidget(app.window)
    app.window.show()
    app.poller.start()
    states: list[ConnectionState] = []
    app.poller.status_changed.connect(lambda s: states.append(s.state))
    try:
        await wait_for(lambda: app.poller.status.state is ConnectionState.CONNECTED)
        srv.set_mode("drip", interval=0.1)
        await wait_for(lambda: app.poller.status.state is ConnectionState.SLOW)
        assert app.window.state_label.text() == "Slow to answer"
        assert "Slow: the server is taking long to answer" in tooltip(app.tray_state().servers[0])
        assert app.tree.rowCount() == 1, "the table stays as it was while the server is slow"
        await wait_for(lambda: app.poller.status.state is ConnectionState.UNREACHABLE)
        assert app.window.state_label.text().startswith("Unreachable since ")
        assert "did not finish sending the model list within 1.2 s" in app.poller.status.message
        srv.set_mode("json", body=MODELS)
        await wait_for(lambda: app.poller.status.state is ConnectionState.CONNECTED)
    finally:
        await app.shutdown()
    assert states[-3:] == [
        ConnectionState.SLOW,
        ConnectionState.UNREACHABLE,
        ConnectionState.CONNECTED,
    ]


async def test_unload_from_the_tray_with_polling_paused_is_verified_at_once(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim()
    async with LMStudioClient(sim.url, lms=None) as other:
        await other.load("google/gemma-3-270m")
    async with running(qtbot, paths, sim.url, interval_ms=100) as app:
        await wait_for(
            lambda: any(i.id == "google/gemma-3-270m" for _, i in app.poller.snapshot.instances)
        )
        app.set_paused(True)
        polls = len(sim.received("GET", "/api/v1/models"))
        finished: list[str] = []
        app.actions.unload_finished.connect(lambda iid, _url: finished.append(iid))
        app.tray.unload_requested.emit(app.server_url, ["google/gemma-3-270m"])
        # Verified against a list fetched at once, not after a 30 s wait for a poll that never
        # comes while polling is paused.
        await wait_for(lambda: finished == ["google/gemma-3-270m"], within=5.0)
        assert not app.poller.running, "unloading does not resume polling"
        assert len(sim.received("GET", "/api/v1/models")) > polls  # a fresh list, fetched once
        assert not list(app.poller.snapshot.instances)


async def test_a_token_with_a_line_end_from_the_environment_works_in_the_window(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = make_sim(token=TOKEN)
    monkeypatch.setenv("LM_API_TOKEN", TOKEN + "\r\n")
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.poller.status.state is ConnectionState.CONNECTED)


async def test_a_token_that_cannot_be_sent_is_said_in_the_window_without_it(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = make_sim(token=TOKEN)
    bad = TOKEN[:10] + "\u00e9" + TOKEN[10:]
    monkeypatch.setenv("LM_API_TOKEN", bad)
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.poller.status.state is ConnectionState.TOKEN_REJECTED)
        shown = app.window.state_label.toolTip() + app.window.statusBar().currentMessage()
        assert "The API token contains a non-ASCII character" in shown
        assert not sim.received("GET", "/api/v1/models"), "nothing was sent with it"
    written = "\n".join(
        p.read_bytes().decode("utf-8", "replace")
        for p in Path(paths.log_dir).parent.rglob("*")
        if p.is_file()
    )
    for piece in (bad, TOKEN[:10], TOKEN[16:]):
        assert piece not in written + shown


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
async def test_the_apps_files_are_private(
    qtbot: QtBot, make_sim: SimFactory, tmp_path: Path
) -> None:
    paths = AppPaths.under(tmp_path / "home")
    paths.data_dir.mkdir(parents=True)
    paths.data_dir.chmod(0o755)
    sim = make_sim()
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.poller.status.state is ConnectionState.CONNECTED)
        await app.chat.new_thread("google/gemma-3-270m")  # the history gets written
    for folder in (paths.config_dir, paths.data_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    db = paths.data_dir / "chats.sqlite3"
    for f in paths.data_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # The log, after a rollover too.
    handler = PrivateRotatingFileHandler(paths.log_dir / "lmgui.log", maxBytes=200, backupCount=2)
    try:
        for n in range(20):
            handler.emit(logging.makeLogRecord({"msg": f"line {n} " + "x" * 40}))
    finally:
        handler.close()
    assert stat.S_IMODE(paths.log_dir.stat().st_mode) == 0o700
    logs = sorted(paths.log_dir.iterdir())
    assert len(logs) == 3
    for f in logs:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # A file an older lmgui left readable by others is narrowed at the next start.
    db.chmod(0o644)
    paths.tighten()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


async def test_a_refresh_asked_for_during_the_last_poll_does_not_outlive_shutdown(
    qtbot: QtBot, hostile: HostileFactory, paths: AppPaths, caplog: pytest.LogCaptureFixture
) -> None:
    srv = hostile("stall", send_headers=False)  # the poll stays in flight
    app = LmguiApp(paths, server=srv.url, poll_ms=100)
    qtbot.addWidget(app.window)
    app.poller.start()
    await wait_for(lambda: app.poller.in_flight and srv.connections >= 1)
    app.poller.poke()  # the tray menu opened while the poll was in flight
    with caplog.at_level(logging.ERROR):
        await app.shutdown()
        await asyncio.sleep(0)  # one more turn of the loop, where a stray poll would start
    assert not app.poller.in_flight and not app.poller.scheduled
    assert "poll failed" not in caplog.text
