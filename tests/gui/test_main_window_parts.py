"""The main window's parts on their own: the VRAM bar, the one GPU reading per poll, the unload
scopes, the load/unload wiring's sentences, the chat pane and a switch of poller.

The window is built without the app: a fake ``Actions`` (the signals and the calls the window
makes) and a poller that never polls, driven by emitting its signals."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from lmgui.api import Instance, Model
from lmgui.api.records import LoadResult
from lmgui.core.actions import Actions, LoadRequest
from lmgui.core.gpu import GpuMemory
from lmgui.core.instances import InstanceInfo
from lmgui.core.poller import Poller
from lmgui.core.settings import Settings
from lmgui.core.snapshot import Snapshot, diff
from lmgui.qtmodels.model_tree import ModelTreeModel
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.main_window import MainWindow
from lmgui.ui.unload_dialog import UnloadDialog
from lmgui.ui.vram_bar import VramBar
from tests.gui.conftest import wait_for

GB = 1_000_000_000
RTX = GpuMemory("RTX 4090", 12 * GB, 24 * GB)


class FakeActions(QObject):
    load_started = Signal(object)
    load_progress = Signal(object, float)
    load_finished = Signal(object, object)
    load_failed = Signal(object, str)
    unload_finished = Signal(str, str)
    unload_failed = Signal(str, str, str)
    ttl_expired = Signal(str, str)
    pending_changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[LoadRequest] = []
        self.unloads: list[list[str]] = []

    def load(self, request: LoadRequest) -> None:
        self.loads.append(request)

    def unload(self, ids: list[str], server: str = "") -> None:
        self.unloads.append(list(ids))

    def pending(self, server: str | None = None) -> set[str]:
        return set()


class Gpus:
    """A GPU reader that counts its readings."""

    def __init__(self, reading: list[GpuMemory] | None) -> None:
        self.reading = reading
        self.reads = 0

    def __call__(self, url: str) -> list[GpuMemory] | None:
        self.reads += 1
        return self.reading


async def _no_models(_asked: bool) -> list[Model] | None:
    return []


def inst(key: str, iid: str) -> Instance:
    return Instance(id=iid, model_key=key, config={"context_length": 4096})


def model(key: str, *instances: Instance) -> Model:
    return Model(
        key=key,
        type="llm",
        display_name=key.split("/")[-1],
        size_bytes=2 * GB,
        instances=instances,
    )


CATALOG = [
    model("qwen/qwen3-4b", inst("qwen/qwen3-4b", "qwen/qwen3-4b"), inst("qwen/qwen3-4b", "q:2")),
    model("google/gemma-3-270m", inst("google/gemma-3-270m", "google/gemma-3-270m")),
    model("nomic/embed"),
]


class Parts:
    def __init__(self, qtbot: QtBot, tmp_path: Path, gpus: Gpus, **kw: Any) -> None:
        self.tree = ModelTreeModel()
        self.poller = Poller(_no_models)
        self.actions = FakeActions()
        self.settings = Settings(tmp_path / "lmgui.ini")
        self.window = MainWindow(
            self.tree,
            self.poller,
            cast(Actions, self.actions),
            self.settings,
            server_url=lambda: "http://127.0.0.1:1234",
            gpus=gpus,
            **kw,
        )
        qtbot.addWidget(self.window)

    def fill(self, models: list[Model]) -> None:
        self.tree.apply(diff(Snapshot(), Snapshot.of(models)))
        self.poller.poll_finished.emit()


@pytest.fixture
def boxes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Texts of the message boxes the window opens (none is shown)."""
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "open", lambda self: shown.append(self.text()))
    return shown


def test_the_vram_bar_says_what_the_estimate_is_compared_with(qtbot: QtBot) -> None:
    bar = VramBar()
    qtbot.addWidget(bar)
    bar.show_figures(6 * GB, 0.0, None)
    assert bar.bar.format() == "6.0 GB estimated (no VRAM budget set)"
    assert bar.bar.value() == 0
    assert bar.label.text() == "estimate (set a budget in Settings)"
    assert bar.gpu_label.isHidden()

    bar.show_figures(6 * GB, 24.0, None)
    assert bar.bar.format() == "6.0 GB estimated of 24.0 GB"
    assert bar.bar.value() == 250  # per mille
    assert bar.label.text() == "estimate, against your VRAM budget"

    bar.show_figures(30 * GB, 24.0, [RTX])  # measured: NVML's total wins over the budget
    assert bar.bar.format() == "30.0 GB estimated of 24.0 GB"
    assert bar.bar.value() == 1000  # full, never past the end
    assert bar.label.text() == "estimate; measured below"
    assert not bar.gpu_label.isHidden()
    assert bar.gpu_label.text() == "Measured (NVML): RTX 4090: 12.0 GB of 24.0 GB used"


def test_the_window_reads_the_gpus_once_per_poll_and_keeps_that_reading(
    qtbot: QtBot, tmp_path: Path
) -> None:
    gpus = Gpus([RTX])
    parts = Parts(qtbot, tmp_path, gpus)
    w = parts.window
    assert gpus.reads == 1  # at start, so the first paint has figures
    w.refresh_vram()
    w._update_age()  # the 1 s age tick
    assert gpus.reads == 1, "only a poll reads the GPUs"
    assert w.last_gpus == [RTX]

    gpus.reading = [GpuMemory("RTX 4090", 20 * GB, 24 * GB)]
    parts.poller.poll_finished.emit()
    assert gpus.reads == 2
    assert w.last_gpus == gpus.reading  # what the tray shows too
    assert "20.0 GB of 24.0 GB used" in w.vram.gpu_label.text()

    parts.settings.vram_budget_gb = 8.0
    w.refresh_vram()  # a new budget: shown again, without another reading
    assert gpus.reads == 2
    assert w.vram_bar.format().endswith("of 24.0 GB")  # measured still wins


def test_without_nvml_the_bar_follows_the_budget(qtbot: QtBot, tmp_path: Path) -> None:
    parts = Parts(qtbot, tmp_path, Gpus(None))
    parts.fill(CATALOG)
    w = parts.window
    assert w.last_gpus is None
    assert w.vram_bar.format().endswith("(no VRAM budget set)")
    parts.settings.vram_budget_gb = 24.0
    w.refresh_vram()
    assert w.vram_bar.format().endswith("of 24.0 GB")
    assert w.vram.gpu_label.isHidden()


def test_unloading_the_selection_offers_the_models_other_instances(
    qtbot: QtBot, tmp_path: Path
) -> None:
    parts = Parts(qtbot, tmp_path, Gpus(None))
    parts.fill(CATALOG)
    w = parts.window
    w.select_instance("q:2")
    dialog = w.open_unload_dialog()
    assert isinstance(dialog, UnloadDialog)
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Unload instances"
    assert dialog.list.count() == 2  # both instances of qwen3-4b, the chosen one ticked
    assert dialog.selected() == ["q:2"]


def test_unload_everything_offers_every_instance(qtbot: QtBot, tmp_path: Path) -> None:
    parts = Parts(qtbot, tmp_path, Gpus(None))
    w = parts.window
    assert w.unload_everything() is None
    assert w.statusBar().currentMessage() == "Nothing is loaded."
    parts.fill(CATALOG)
    dialog = w.unload_everything()
    assert isinstance(dialog, UnloadDialog)
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Unload all instances"
    assert sorted(dialog.selected()) == ["google/gemma-3-270m", "q:2", "qwen/qwen3-4b"]


def test_without_confirmation_unload_goes_straight_to_actions(qtbot: QtBot, tmp_path: Path) -> None:
    parts = Parts(qtbot, tmp_path, Gpus(None))
    parts.fill(CATALOG)
    parts.settings.confirm_unload = False
    parts.window.select_instance("google/gemma-3-270m")
    assert parts.window.open_unload_dialog() is None
    assert parts.actions.unloads == [["google/gemma-3-270m"]]


def test_unloading_an_instance_that_is_answering_asks_even_without_confirmation(
    qtbot: QtBot, tmp_path: Path
) -> None:
    parts = Parts(qtbot, tmp_path, Gpus(None))
    busy = Instance(
        "qwen-1", "qwen/qwen3-4b", {"context_length": 4096}, status="generating", queued=0
    )
    parts.fill([model("qwen/qwen3-4b", busy, inst("qwen/qwen3-4b", "q:2")), *CATALOG[1:]])
    parts.settings.confirm_unload = False  # the user said: unload at once
    w = parts.window
    w.select_instance("qwen-1")
    dialog = w.open_unload_dialog()
    assert isinstance(dialog, UnloadDialog), "a busy instance is asked about all the same"
    qtbot.addWidget(dialog)
    assert dialog.busy_warning.text() == "qwen-1 is generating an answer; unload it anyway?"
    assert dialog.dont_ask.isHidden()
    assert parts.actions.unloads == []
    dialog.unload_button.click()
    assert parts.actions.unloads == [["qwen-1"]]
    assert parts.settings.confirm_unload is False

    # An idle one still goes at once, as the user asked.
    w.select_instance("q:2")
    assert w.open_unload_dialog() is None
    assert parts.actions.unloads == [["qwen-1"], ["q:2"]]

    # With confirmation on, the usual dialog says it too, and offers "don't ask again".
    parts.settings.confirm_unload = True
    dialog = w.unload_everything()
    assert isinstance(dialog, UnloadDialog)
    qtbot.addWidget(dialog)
    assert dialog.busy_warning.text() == "qwen-1 is generating an answer; unload it anyway?"
    assert not dialog.dont_ask.isHidden()


def test_the_details_pane_lists_what_the_server_reports_of_an_instance(
    qtbot: QtBot, tmp_path: Path
) -> None:
    import time

    parts = Parts(qtbot, tmp_path, Gpus(None))
    now = time.time()
    rich = Instance(
        "qwen-1",
        "qwen/qwen3-4b",
        {"context_length": 4096},
        gpu_offload=0.5,
        ttl_seconds=300.0,
        last_used=now - 20,
        status="generating",
        queued=2,
    )
    parts.fill([model("qwen/qwen3-4b", rich, inst("qwen/qwen3-4b", "q:2"))])
    w = parts.window
    w.select_instance("qwen-1")
    lines = w.details.toPlainText().splitlines()
    assert lines[:2] == ["instance: qwen-1", "model: qwen/qwen3-4b"]
    assert lines[2] == "GPU offload: 50 %"
    assert lines[3] == "server TTL: 5:00 (counts down once it is idle)"  # it is generating
    assert lines[4] == "last used: " + time.strftime("%H:%M:%S", time.localtime(now - 20))
    assert lines[5:8] == [
        "status: generating",
        "queued requests: 2 (the one in progress and 1 waiting)",
        "",
    ]
    w.select_instance("q:2")  # a server without the SDK channel: nothing more is said
    assert w.details.toPlainText().splitlines()[:4] == [
        "instance: q:2",
        "model: qwen/qwen3-4b",
        "",
        "config:",
    ]


def test_what_actions_report_reaches_the_status_bar_and_the_tree(
    qtbot: QtBot, tmp_path: Path, boxes: list[str]
) -> None:
    infos = {"qwen/qwen3-4b": InstanceInfo(gpu_fraction=0.5)}
    parts = Parts(qtbot, tmp_path, Gpus(None), instance_infos=lambda url: infos)
    shown: list[dict[str, InstanceInfo]] = []
    parts.tree.set_instance_info = lambda info, url=None: shown.append(info)  # type: ignore[method-assign]
    w = parts.window
    assert w.open_load_dialog() is None
    assert w.statusBar().currentMessage() == "No models to load yet: the server has not answered."

    parts.fill(CATALOG)
    request = LoadRequest("qwen/qwen3-4b")
    parts.actions.load_started.emit(request)
    assert w.statusBar().currentMessage() == "Loading qwen/qwen3-4b…"
    result = LoadResult("qwen/qwen3-4b", load_time_seconds=4.2)
    parts.actions.load_finished.emit(request, result)
    assert w.statusBar().currentMessage() == "Loaded qwen/qwen3-4b as qwen/qwen3-4b in 4.2 s."
    assert shown == [infos]  # the ledger's facts at once, not at the next change

    parts.actions.load_failed.emit(request, "Loading qwen/qwen3-4b failed: no memory.")
    assert boxes == ["Loading qwen/qwen3-4b failed: no memory."]  # no dialog open to show it
    parts.actions.ttl_expired.emit("q:2", "")
    assert w.statusBar().currentMessage() == (
        "Unloading q:2: idle longer than its TTL (enforced by lmgui)."
    )
    parts.actions.unload_finished.emit("q:2", "")
    assert w.statusBar().currentMessage() == "Unloaded q:2."


def test_a_load_dialog_hands_its_request_to_actions_and_follows_the_polls(
    qtbot: QtBot, tmp_path: Path
) -> None:
    parts = Parts(qtbot, tmp_path, Gpus(None))
    parts.fill(CATALOG)
    dialog = parts.window.open_load_dialog("nomic/embed")
    assert dialog is not None
    assert parts.window.dialogs.load_dialogs == [dialog]
    dialog.load_requested.emit(LoadRequest("nomic/embed"))
    assert [r.model_key for r in parts.actions.loads] == ["nomic/embed"]
    assert "nomic/embed" in parts.settings.load_defaults()  # remembered for next time
    dialog.reject()
    assert parts.window.dialogs.load_dialogs == []


class FakePane(QWidget):
    status = Signal(str)


def test_show_chat_shows_the_window_and_the_chat_pane(qtbot: QtBot, tmp_path: Path) -> None:
    parts = Parts(qtbot, tmp_path, Gpus(None))
    w = parts.window
    w.show_chat()  # no pane yet: just the window
    assert w.isVisible()
    w.hide()
    w.set_chat_pane(cast(ChatPane, FakePane()))
    assert not w.chat_dock.isVisible()
    w.show_chat()
    assert w.isVisible() and w.chat_dock.isVisible()


def test_a_new_poller_replaces_the_old_one(qtbot: QtBot, tmp_path: Path) -> None:
    gpus = Gpus([RTX])
    parts = Parts(qtbot, tmp_path, gpus)
    w = parts.window
    new = Poller(_no_models)
    pokes: list[Poller] = []
    new.poke = lambda: pokes.append(new)  # type: ignore[method-assign]
    gpus.reading = None  # the new server is not on this machine
    w.set_poller(new)
    assert w.poller is new and w.last_gpus is None and w.vram.gpu_label.isHidden()
    reads = gpus.reads
    parts.poller.poll_finished.emit()  # the old server's poller no longer drives the window
    assert gpus.reads == reads
    new.poll_finished.emit()
    assert gpus.reads == reads + 1
    w.refresh_action.trigger()
    assert pokes == [new]


async def test_a_poll_says_whether_it_changed_anything(qtbot: QtBot) -> None:
    """The app skips its per-poll work (the tray's rebuild, the server row) after a poll that
    changed nothing, so ``changed`` must be True after every poll that did."""
    answers: list[list[Model] | None] = [CATALOG[:2], None, CATALOG, None, None]
    asked: list[bool] = []

    async def fetch(poked: bool) -> list[Model] | None:
        asked.append(poked)
        return answers.pop(0)

    poller = Poller(fetch, interval_ms=60_000)
    seen: list[bool] = []
    poller.poll_finished.connect(lambda: seen.append(poller.changed))
    for n in (1, 2, 3):
        poller.poke()
        await wait_for(lambda n=n: len(seen) == n)  # type: ignore[misc]
    poller.set_interval(100)
    poller.start()  # a first poll at once, then on the timer
    await wait_for(lambda: len(seen) == 5)
    await poller.aclose()
    # Connected with two models; the same again; a third model; nothing new twice.
    assert seen == [True, False, True, False, False]
    # A poll asked for (poke) asks the server everything; one on the timer may reuse.
    assert asked == [True, True, True, True, False]
