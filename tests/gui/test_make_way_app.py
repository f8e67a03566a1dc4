"""Making way as the running app does it: with the setting on and a (scripted) local NVIDIA GPU,
a program that takes the GPU's memory sends idle instances away, the tray says so, and they come
back when it quits; with the setting off, lmgui only offers it, once."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from lmgui.api import LMStudioClient
from lmgui.core.paths import AppPaths
from lmgui.core.settings import Settings
from lmgui.core.tray_state import tooltip
from lmgui.sim import Simulator
from tests.gui.conftest import running, wait_for
from tests.test_make_way import CALM, ScriptedGpu, loaded


async def load_five(sim: Simulator) -> None:
    async with LMStudioClient(sim.url, lms=None) as other:
        for ident in ("d", "c", "a", "b", "e"):  # used in this order: d first, e last
            await other.load("qwen/qwen3-4b", identifier=ident, context_length=4096, gpu=1.0)


async def test_the_app_makes_way_for_a_game_and_brings_the_models_back(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    await load_five(sim)
    settings = Settings(paths.config_dir / "lmgui.ini")
    settings.make_way, settings.make_way_margin_gb, settings.make_way_offered = True, 6.0, True
    gpu = ScriptedGpu(sim)
    gpu.now = CALM
    async with running(qtbot, paths, sim.url) as app:
        app.conn.nvml = gpu  # the local NVIDIA GPU, scripted
        said: list[tuple[str, str]] = []
        app.notifier.notify.connect(lambda kind, title, body: said.append((kind, title)))
        await wait_for(lambda: len(app.tray_state().servers[0].instances) == 5)
        gpu.now = {**CALM, "blender": 1}
        await wait_for(
            lambda: app.conn.gpu_processes is not None and len(app.conn.gpu_processes) == 3
        )
        gpu.now = {**CALM, "blender": 15}  # it takes 15 GB: free VRAM falls under 6 GB
        await wait_for(lambda: set(loaded(sim)) == {"c", "d", "e"})  # the least recently used
        await wait_for(lambda: ("make_way", "Made way for blender") in said)
        await wait_for(
            lambda: (app.tray_state().servers[0].make_way or "").startswith("Making way for")
        )
        assert "Making way for blender (15.0 GB) since " in tooltip(app.tray_state().servers[0])
        assert not any(kind == "vanished" for kind, _ in said)  # lmgui's own: not "vanished"

        gpu.now = CALM  # blender quits
        await wait_for(lambda: set(loaded(sim)) == {"a", "b", "c", "d", "e"})
        await wait_for(lambda: app.tray_state().servers[0].make_way is None)
        assert ("make_way", "Models back") in said


async def test_with_the_setting_off_lmgui_offers_once_and_touches_nothing(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    await load_five(sim)
    gpu = ScriptedGpu(sim)
    gpu.now = CALM
    async with running(qtbot, paths, sim.url) as app:
        assert not app.settings.make_way and not app.settings.make_way_offered
        app.conn.nvml = gpu
        said: list[tuple[str, str]] = []
        app.notifier.notify.connect(lambda kind, title, body: said.append((kind, title)))
        await wait_for(lambda: len(app.tray_state().servers[0].instances) == 5)
        gpu.now = {**CALM, "game": 1}
        await wait_for(
            lambda: app.conn.gpu_processes is not None and len(app.conn.gpu_processes) == 3
        )
        gpu.now = {**CALM, "game": 15}
        await wait_for(lambda: app.settings.make_way_offered)
        assert said.count(("make_way", "Make way for other GPU programs?")) == 1
        polls = app.poller.polls
        await wait_for(lambda: app.poller.polls >= polls + 5)
        assert len(loaded(sim)) == 5 and app.tray_state().servers[0].make_way is None
