"""The SDK channel as a user meets it in the window: a load with GPU 0.5, TTL 5 minutes and an
identifier from the load dialog, against a token-protected simulator on a machine without lms,
applied by the server, with progress in the dialog, and the table showing it as the server
keeps it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from lmgui.api import LMStudioClient
from lmgui.core.paths import AppPaths
from lmgui.qtmodels.model_tree import Column
from lmgui.sim import Simulator
from lmgui.ui.load_dialog import LoadDialog
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for

TOKEN = "sk-lm-Zq8Xb2Rt:Vw9Lp4Km7Nh3Jd6FAbCd"


def instance_cell(app: object, iid: str, col: Column) -> str:
    index = app.tree.instance_index(iid)  # type: ignore[attr-defined]
    return str(index.siblingAtColumn(col).data() or "")


async def test_a_load_from_the_dialog_is_applied_by_the_server_and_shown(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim(token=TOKEN, load_seconds_per_gb=0.8)  # 2 s: progress to see
    async with running(qtbot, paths, sim.url, token=TOKEN) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        dialog = app.window.open_load_dialog("qwen/qwen3-4b")
        assert isinstance(dialog, LoadDialog)
        dialog.gpu_mode.setCurrentIndex(dialog.gpu_mode.findData("fraction"))
        dialog.gpu_fraction.setValue(0.5)
        dialog.ttl_on.setChecked(True)
        dialog.ttl_value.setValue(5)
        dialog.ttl_unit.setCurrentIndex(dialog.ttl_unit.findData(60))
        dialog.identifier.setText("my-qwen")
        results: list[int] = []
        dialog.finished.connect(results.append)
        qtbot.mouseClick(dialog.load_button, Qt.MouseButton.LeftButton)
        # The server's own progress: the bar is no longer a busy indicator.
        await wait_for(lambda: dialog.progress.maximum() == 1000 and dialog.progress.value() > 0)
        await wait_for(lambda: results == [1])  # applied in full: the dialog closes itself
        await wait_for(lambda: app.tree.instance_index("my-qwen").isValid())
        await wait_for(lambda: instance_cell(app, "my-qwen", Column.STATUS) == "idle")
        assert instance_cell(app, "my-qwen", Column.GPU) == "50 %"
        ttl = instance_cell(app, "my-qwen", Column.TTL)
        assert ttl.startswith(("5:00", "4:5")) and "(lmgui)" not in ttl  # the server's TTL
        assert not sim.received("POST", "/api/v1/models/load"), "not through REST"

        # Another app uses it: the server's countdown starts again, as the server keeps it.
        before = app.poller.snapshot.instances[0][1].last_used
        async with LMStudioClient(sim.url, TOKEN, lms=None, sdk=False) as other:
            await other.chat("my-qwen", "hello")
        await wait_for(
            lambda: any(
                i.id == "my-qwen" and (i.last_used or 0) > (before or 0)
                for _, i in app.poller.snapshot.instances
            )
        )


async def test_the_servers_own_vram_and_estimate_guide_a_load_when_no_budget_is_set(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim(token=TOKEN, vram_gb=8.0)
    async with running(qtbot, paths, sim.url, token=TOKEN) as app:
        assert app.settings.vram_budget_gb == 0  # the user set none
        bar = app.window.vram
        # The bar counts against the server's VRAM, as LM Studio surveyed it.
        await wait_for(lambda: bar.label.text() == "estimate, against the server's VRAM")
        assert "of 8.0 GB" in bar.bar.format()
        assert bar.gpu_label.isVisibleTo(app.window)
        assert "Simulated GPU (lmgui-sim): 8.0 GB" in bar.gpu_label.text()

        dialog = app.window.open_load_dialog("qwen/qwen3.5-9b")
        assert isinstance(dialog, LoadDialog)
        dialog.context.setValue(4096)
        await wait_for(lambda: "within its guardrails" in dialog.server_estimate.text())
        assert dialog.server_estimate.text().startswith("LM Studio's own estimate: ")
        assert "of the server's VRAM, as LM Studio surveyed it" in dialog.fit.text()
        dialog.context.setValue(262144)  # far more KV cache than 8 GB holds
        await wait_for(lambda: "would refuse this load" in dialog.server_estimate.text())
        assert not sim.state.instances  # estimates load nothing
        dialog.reject()

        # A budget of the user's own wins over the survey.
        app.settings.vram_budget_gb = 24.0
        app.window.refresh_vram()
        assert bar.label.text() == "estimate, against your VRAM budget"
        assert not bar.gpu_label.isVisibleTo(app.window)


async def test_without_the_channel_the_dialog_shows_lmguis_estimate_only(
    qtbot: QtBot, rest_sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, rest_sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        dialog = app.window.open_load_dialog("qwen/qwen3-4b")
        assert isinstance(dialog, LoadDialog)
        dialog.context.setValue(8192)
        await wait_for(lambda: dialog._estimated is not None)  # the server was asked
        assert dialog.server_estimate.isHidden()
        assert dialog.estimate.text().startswith("Estimated memory: ")
        assert dialog.fit.text().startswith("Free VRAM is unknown")
        assert app.window.vram.label.text() == "estimate (set a budget in Settings)"
        dialog.reject()
