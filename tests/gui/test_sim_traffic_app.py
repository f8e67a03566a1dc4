"""Another app's traffic as lmgui shows it: the simulator's built-in client chats through
``/v1/chat/completions``, and the running app sees a load it did not make, busy while the other
app reads its answer, with the TTL that app asked for."""

from __future__ import annotations

from dataclasses import replace

from pytestqt.qtbot import QtBot

from lmgui.core.paths import AppPaths
from lmgui.qtmodels.model_tree import Column
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for

OTHER_APPS_MODEL = "meta/llama-3.2-1b-instruct"


def instance_cell(app: object, iid: str, col: Column) -> str:
    index = app.tree.instance_index(iid)  # type: ignore[attr-defined]
    return str(index.siblingAtColumn(col).data() or "") if index.isValid() else ""


async def test_other_apps_jit_loads_and_busy_instances_show_in_the_window(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim(tokens_per_second=30)  # an answer takes one to three seconds to read
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        said: list[tuple[str, str]] = []
        app.notifier.notify.connect(lambda kind, title, body: said.append((kind, title)))
        sim.start_traffic(600, models=[OTHER_APPS_MODEL], ttl=300)
        await wait_for(lambda: app.tree.instance_index(OTHER_APPS_MODEL).isValid())
        assert OTHER_APPS_MODEL not in app.ledger.entries  # not lmgui's load: a foreign one
        await wait_for(
            lambda: ("appeared", f"{OTHER_APPS_MODEL} was loaded by another app") in said
        )
        await wait_for(lambda: instance_cell(app, OTHER_APPS_MODEL, Column.STATUS) == "generating")
        ttl = instance_cell(app, OTHER_APPS_MODEL, Column.TTL)
        assert ttl.startswith(("5:00", "4:5")) and "(lmgui)" not in ttl  # the server's TTL
        sim.stop_traffic()
        await wait_for(lambda: instance_cell(app, OTHER_APPS_MODEL, Column.STATUS) == "idle")


async def test_the_demos_other_apps_follow_the_setting(qtbot: QtBot, paths: AppPaths) -> None:
    from lmgui.app import LmguiApp
    from lmgui.core.settings import Settings

    Settings(paths.config_dir / "lmgui.ini").demo_traffic = False  # turned off earlier
    app = LmguiApp(paths, demo=True, poll_ms=100)
    qtbot.addWidget(app.window)
    sim = app.sim
    assert sim is not None

    def other_apps_running() -> bool:
        return sim.traffic is not None

    try:
        assert not other_apps_running()
        values = app.settings.values(app.server_url, start_on_login=False)
        app.apply_settings(replace(values, demo_traffic=True))  # the Settings dialog's check
        assert other_apps_running() and app.settings.demo_traffic
        app.apply_settings(replace(values, demo_traffic=False))
        assert not other_apps_running()
    finally:
        await app.shutdown()
