"""The model/instance tree: consistent under qtmodeltester, incremental, selection-preserving."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QTreeView
from pytestqt.qtbot import QtBot

from lmgui.api import Capabilities, Instance, Model
from lmgui.api.model_list import parse_models
from lmgui.core.instances import InstanceInfo
from lmgui.core.snapshot import Snapshot, diff
from lmgui.qtmodels.model_tree import Column, ModelFilterProxy, ModelTreeModel, Role


def inst(key: str, iid: str, ctx: int = 4096) -> Instance:
    return Instance(id=iid, model_key=key, config={"context_length": ctx, "parallel": 4})


def model(key: str, *instances: Instance, **kw: Any) -> Model:
    base: dict[str, Any] = {
        "type": "llm",
        "display_name": key.split("/")[-1],
        "size_bytes": 2_000_000_000,
    }
    base.update(kw)
    return Model(key=key, instances=instances, **base)


CATALOG = [
    model(
        "qwen/qwen3-4b",
        inst("qwen/qwen3-4b", "qwen/qwen3-4b"),
        publisher="qwen",
        params_string="4B",
    ),
    model("google/gemma-3-270m", publisher="google", params_string="270M", size_bytes=240_000_000),
    model("nomic/embed", type="embedding", publisher="nomic", size_bytes=270_000_000),
    model(
        "qwen/qwen2.5-vl-7b",
        publisher="qwen",
        params_string="7B",
        capabilities=Capabilities(vision=True, trained_for_tool_use=True),
    ),
]


class Feed:
    """Drives a tree model through snapshots, as the poller would."""

    def __init__(self, tree: ModelTreeModel) -> None:
        self.tree = tree
        self.snapshot = Snapshot()

    def push(self, models: list[Model], expected: set[str] | None = None) -> None:
        new = Snapshot.of(models)
        exp = expected or set()
        self.tree.apply(diff(self.snapshot, new), lambda kind, iid, key: iid in exp)
        self.snapshot = new


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tree(qapp: object, clock: Clock) -> ModelTreeModel:
    return ModelTreeModel(clock=clock)


@pytest.fixture
def feed(tree: ModelTreeModel) -> Feed:
    f = Feed(tree)
    f.push(CATALOG, expected={"qwen/qwen3-4b"})
    return f


def texts(
    tree: ModelTreeModel, col: Column = Column.NAME, parent: QModelIndex | None = None
) -> list[str]:
    p = parent or QModelIndex()
    return [tree.index(r, col, p).data() for r in range(tree.rowCount(p))]


def test_shape_and_cells(tree: ModelTreeModel, feed: Feed, qtmodeltester: Any) -> None:
    qtmodeltester.check(tree)
    assert texts(tree) == ["qwen3-4b", "gemma-3-270m", "embed", "qwen2.5-vl-7b"]
    qwen = tree.model_index("qwen/qwen3-4b")
    assert tree.index(qwen.row(), Column.STATE).data() == "loaded"
    assert tree.index(1, Column.STATE).data() == "not loaded"
    assert tree.index(3, Column.CAPS).data() == "vision, tools"
    assert (
        tree.index(qwen.row(), Column.NAME)
        .data(Qt.ItemDataRole.ToolTipRole)
        .endswith("key: qwen/qwen3-4b\npublisher: qwen")
    )
    child = tree.index(0, Column.NAME, qwen)
    assert child.data() == "qwen/qwen3-4b" and child.parent() == qwen
    assert tree.index(0, Column.CONTEXT, qwen).data() == "4k"
    assert tree.index(0, Column.PARALLEL, qwen).data() == "4"
    assert tree.index(0, Column.VRAM, qwen).data().endswith("GB")
    assert isinstance(child.data(Role.RECORD), Instance)
    assert child.data(Role.MODEL).key == "qwen/qwen3-4b"


def test_changes_are_incremental_never_a_reset(
    tree: ModelTreeModel, feed: Feed, qtmodeltester: Any, qtbot: QtBot
) -> None:
    qtmodeltester.check(tree)  # keeps checking every signal from here on
    resets: list[str] = []
    tree.modelAboutToBeReset.connect(lambda: resets.append("reset"))
    tree.layoutAboutToBeChanged.connect(lambda *a: resets.append("layout"))
    changed: list[tuple[str, int]] = []

    def on_changed(top_left: QModelIndex, bottom_right: QModelIndex, roles: Any = ()) -> None:
        if top_left.parent().isValid():  # instance rows
            rec = top_left.siblingAtColumn(0).data(Role.RECORD)
            changed.extend((rec.id, c) for c in range(top_left.column(), bottom_right.column() + 1))

    tree.dataChanged.connect(on_changed)

    # The instance's context changes: dataChanged for that row's changed cells, nothing else.
    catalog = list(CATALOG)
    catalog[0] = model(
        "qwen/qwen3-4b",
        inst("qwen/qwen3-4b", "qwen/qwen3-4b", 8192),
        publisher="qwen",
        params_string="4B",
    )
    feed.push(catalog)
    assert {iid for iid, _ in changed} == {"qwen/qwen3-4b"}
    assert (("qwen/qwen3-4b", Column.CONTEXT)) in changed
    assert ("qwen/qwen3-4b", Column.TYPE) not in changed  # an unchanged cell is not touched
    qwen = tree.model_index("qwen/qwen3-4b")
    assert tree.index(0, Column.CONTEXT, qwen).data() == "8k"

    # An unchanged poll emits nothing at all.
    changed.clear()
    with qtbot.assertNotEmitted(tree.dataChanged), qtbot.assertNotEmitted(tree.rowsInserted):
        feed.push(catalog)

    # A second instance, a removed model and a new one: inserts and removes.
    catalog[0] = model(
        "qwen/qwen3-4b",
        inst("qwen/qwen3-4b", "qwen/qwen3-4b", 8192),
        inst("qwen/qwen3-4b", "qwen/qwen3-4b:2"),
        publisher="qwen",
        params_string="4B",
    )
    del catalog[2]
    catalog.append(model("meta/llama", publisher="meta"))
    with qtbot.waitSignal(tree.rowsInserted), qtbot.waitSignal(tree.rowsRemoved):
        feed.push(catalog, expected={"qwen/qwen3-4b:2"})
    assert texts(tree) == ["qwen3-4b", "gemma-3-270m", "qwen2.5-vl-7b", "llama"]
    assert texts(tree, parent=tree.model_index("qwen/qwen3-4b")) == [
        "qwen/qwen3-4b",
        "qwen/qwen3-4b:2",
    ]
    assert tree.index(0, Column.STATE).data() == "loaded (2)"
    assert resets == []


def test_selection_and_expansion_survive_polls(
    tree: ModelTreeModel, feed: Feed, qtbot: QtBot
) -> None:
    proxy = ModelFilterProxy()
    proxy.setSourceModel(tree)
    view = QTreeView()
    qtbot.addWidget(view)
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.sortByColumn(Column.NAME, Qt.SortOrder.AscendingOrder)
    qwen = proxy.mapFromSource(tree.model_index("qwen/qwen3-4b"))
    view.expand(qwen)
    child = proxy.index(0, 0, qwen)
    view.selectionModel().setCurrentIndex(
        child,
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    kept = QPersistentModelIndex(child)

    catalog = [
        model("aaa/first", publisher="a"),
        *list(CATALOG[1:]),
        model("qwen/qwen3-4b", inst("qwen/qwen3-4b", "qwen/qwen3-4b", 16384), publisher="qwen"),
    ]
    del catalog[2]  # the embedding model goes away
    feed.push(catalog)

    current = view.selectionModel().currentIndex()
    assert kept.isValid() and current.data() == "qwen/qwen3-4b"
    assert current.parent().data() == "qwen3-4b"
    assert view.isExpanded(current.parent())
    assert [i.data() for i in view.selectionModel().selectedRows()] == ["qwen/qwen3-4b"]


def test_filter_text_and_toggles(tree: ModelTreeModel, feed: Feed, qtmodeltester: Any) -> None:
    proxy = ModelFilterProxy()
    proxy.setSourceModel(tree)
    qtmodeltester.check(proxy)

    def shown() -> list[str]:
        return [proxy.index(r, 0).data() for r in range(proxy.rowCount())]

    proxy.set_text("QWEN")  # display name, key or publisher, any case
    assert shown() == ["qwen3-4b", "qwen2.5-vl-7b"]
    assert proxy.rowCount(proxy.index(0, 0)) == 1  # instances follow their model
    proxy.set_text("google")
    assert shown() == ["gemma-3-270m"]
    proxy.set_text("")
    proxy.set_toggles(loaded_only=True)
    assert shown() == ["qwen3-4b"]
    proxy.set_toggles(loaded_only=False, types={"embedding"})
    assert shown() == ["embed"]
    proxy.set_toggles(types=(), vision_only=True)
    assert shown() == ["qwen2.5-vl-7b"]
    proxy.set_toggles(vision_only=False, tools_only=True)
    assert shown() == ["qwen2.5-vl-7b"]


def test_loaded_only_follows_polls(tree: ModelTreeModel, feed: Feed) -> None:
    proxy = ModelFilterProxy()
    proxy.setSourceModel(tree)
    proxy.set_toggles(loaded_only=True)
    catalog = list(CATALOG)
    catalog[1] = model("google/gemma-3-270m", inst("google/gemma-3-270m", "g"), publisher="google")
    feed.push(catalog)
    assert proxy.rowCount() == 2


def test_sort_by_size_uses_numbers(tree: ModelTreeModel, feed: Feed) -> None:
    proxy = ModelFilterProxy()
    proxy.setSourceModel(tree)
    proxy.sort(Column.SIZE, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(r, Column.SIZE).data() for r in range(proxy.rowCount())] == [
        "240.0 MB",
        "270.0 MB",
        "2.0 GB",
        "2.0 GB",
    ]


def test_unexpected_changes_are_marked_for_a_moment(
    tree: ModelTreeModel, feed: Feed, clock: Clock, qtmodeltester: Any
) -> None:
    qtmodeltester.check(tree)
    catalog = list(CATALOG)
    catalog[0] = model("qwen/qwen3-4b", publisher="qwen")  # its instance vanished (TTL?)
    catalog[1] = model("google/gemma-3-270m", inst("google/gemma-3-270m", "google/gemma-3-270m"))
    feed.push(catalog)
    qwen = tree.model_index("qwen/qwen3-4b")
    ghost = tree.index(0, Column.STATE, qwen)
    assert ghost.data().startswith("gone")
    assert tree.index(0, Column.NAME, qwen).data(Qt.ItemDataRole.FontRole).strikeOut()
    assert tree.index(qwen.row(), Column.STATE).data() == "not loaded"
    gemma = tree.model_index("google/gemma-3-270m")
    assert tree.index(0, Column.STATE, gemma).data().startswith("appeared")

    clock.now += 60
    tree.expire_marks()
    assert tree.rowCount(qwen) == 0
    assert tree.index(0, Column.STATE, gemma).data() == "loaded"


def test_expected_changes_are_not_marked(tree: ModelTreeModel, feed: Feed) -> None:
    catalog = list(CATALOG)
    catalog[0] = model("qwen/qwen3-4b", publisher="qwen")
    feed.push(catalog, expected={"qwen/qwen3-4b"})
    assert tree.rowCount(tree.model_index("qwen/qwen3-4b")) == 0


def test_pending_load_and_ttl_info(tree: ModelTreeModel, feed: Feed) -> None:
    tree.set_pending({"google/gemma-3-270m"})
    assert tree.index(1, Column.STATE).data() == "loading"
    tree.set_pending(set())
    assert tree.index(1, Column.STATE).data() == "not loaded"

    import time

    qwen = tree.model_index("qwen/qwen3-4b")
    before = tree.index(0, Column.VRAM, qwen).data()
    tree.set_instance_info(
        {
            "qwen/qwen3-4b": InstanceInfo(
                gpu_fraction=0.5, idle_deadline=time.time() + 600, enforced_by_lmgui=True
            )
        }
    )
    ttl = tree.index(0, Column.TTL, qwen).data()
    assert ttl.endswith("(lmgui)") and ttl.startswith(("9:", "10:"))
    assert tree.index(0, Column.VRAM, qwen).data() != before  # half offload costs less VRAM


def test_dimmed_when_offline(tree: ModelTreeModel, feed: Feed, qtbot: QtBot) -> None:
    with qtbot.waitSignal(tree.dimmed_changed) as sig:
        tree.set_dimmed(True)
    assert sig.args == [True] and tree.dimmed
    with qtbot.assertNotEmitted(tree.dimmed_changed):
        tree.set_dimmed(True)
    with qtbot.waitSignal(tree.dimmed_changed):
        tree.set_dimmed(False)


def test_an_unreadable_field_shows_a_question_mark_not_a_dash(
    tree: ModelTreeModel, qtmodeltester: Any
) -> None:
    body = (
        b'{"models": ['
        b'{"key": "acme/bad-size", "type": "llm", "display_name": "bad-size",'
        b' "size_bytes": "4 GB", "max_context_length": -1, "loaded_instances":'
        b' [{"id": "acme/bad-size", "config": {"context_length": "8192", "parallel": 2}}]},'
        b'{"key": "acme/no-size", "type": "llm", "display_name": "no-size"}]}'
    )
    Feed(tree).push(parse_models(body))
    qtmodeltester.check(tree)
    bad, unsaid = tree.model_index("acme/bad-size"), tree.model_index("acme/no-size")
    tip = Qt.ItemDataRole.ToolTipRole
    assert tree.index(bad.row(), Column.SIZE).data() == "?"
    assert "could not read" in tree.index(bad.row(), Column.SIZE).data(tip)
    assert tree.index(bad.row(), Column.CONTEXT).data() == "?"
    assert "size_bytes" in tree.index(bad.row(), Column.NAME).data(tip)
    assert tree.index(bad.row(), Column.VRAM).data() == "?"  # no weights to estimate from
    # "-" stays what it was: the server did not say.
    assert tree.index(unsaid.row(), Column.SIZE).data() == "-"
    assert tree.index(unsaid.row(), Column.CONTEXT).data() == "-"
    # The loaded instance is listed, its unreadable context as "?", the rest as sent.
    assert tree.rowCount(bad) == 1
    assert tree.index(0, Column.NAME, bad).data() == "acme/bad-size"
    assert tree.index(0, Column.CONTEXT, bad).data() == "?"
    assert "could not read" in tree.index(0, Column.CONTEXT, bad).data(tip)
    assert tree.index(0, Column.PARALLEL, bad).data() == "2"
    assert tree.index(0, Column.VRAM, bad).data() == "?"


def test_a_size_that_becomes_unreadable_updates_its_instance_rows(
    tree: ModelTreeModel, feed: Feed
) -> None:
    qwen = tree.model_index("qwen/qwen3-4b")
    assert tree.index(0, Column.VRAM, qwen).data().endswith("GB")
    broken = [
        msgspec.structs.replace(m, size_bytes=None, malformed=("size_bytes",))
        if m.key == "qwen/qwen3-4b"
        else m
        for m in CATALOG
    ]
    feed.push(broken)
    assert tree.index(qwen.row(), Column.SIZE).data() == "?"
    assert tree.index(0, Column.VRAM, qwen).data() == "?"
    feed.push(CATALOG)  # readable again
    assert tree.index(qwen.row(), Column.SIZE).data() == "2.0 GB"
    assert tree.index(0, Column.VRAM, qwen).data().endswith("GB")


# ------------------------------------------------------------------------ the SDK channel's facts


class Wall:
    """time.time() as the tree reads it for TTL countdowns."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def busy_inst(key: str, iid: str, wall: Wall, **kw: Any) -> Instance:
    fields: dict[str, Any] = {
        "gpu_offload": 0.5,
        "ttl_seconds": 300.0,
        "last_used": wall.now - 20,
        "status": "generating",
    }
    fields.update(kw)
    return Instance(id=iid, model_key=key, config={"context_length": 4096}, **fields)


def test_what_the_server_reports_of_an_instance_shows_in_its_row(
    qapp: object, clock: Clock, qtmodeltester: Any, qtbot: QtBot
) -> None:
    wall = Wall()
    tree = ModelTreeModel(clock=clock, wall=wall)
    qtmodeltester.check(tree)
    feed = Feed(tree)
    catalog = [model("qwen/qwen3-4b", busy_inst("qwen/qwen3-4b", "qwen-1", wall, queued=2))]
    feed.push(catalog)
    qwen = tree.model_index("qwen/qwen3-4b")

    def cell(col: Column, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        return tree.index(0, col, qwen).data(role)

    assert cell(Column.GPU) == "50 %"
    assert cell(Column.STATUS) == "generating (+1 queued)"  # LM Studio counts the current one
    # The server's TTL, no "(lmgui)"; all of it while busy: the idle clock starts afterwards.
    assert cell(Column.TTL) == "5:00"
    assert "server unloads it after 5:00 idle" in cell(Column.TTL, Qt.ItemDataRole.ToolTipRole)
    # Generating stands out: bold and coloured, in its Status cell only.
    assert cell(Column.STATUS, Qt.ItemDataRole.FontRole).bold()
    assert cell(Column.STATUS, Qt.ItemDataRole.ForegroundRole) is not None
    assert cell(Column.NAME, Qt.ItemDataRole.FontRole) is None
    assert cell(Column.GPU, Qt.ItemDataRole.ForegroundRole) is None
    # The server's offload makes the estimate too (half the weights on the GPU).
    full = ModelTreeModel(clock=clock, wall=wall)
    Feed(full).push([model("qwen/qwen3-4b", inst("qwen/qwen3-4b", "qwen-1"))])
    full_vram = full.index(0, Column.VRAM, full.model_index("qwen/qwen3-4b")).data()
    assert cell(Column.VRAM) != full_vram
    assert cell(Column.VRAM, Qt.ItemDataRole.ToolTipRole).startswith(
        "Estimated for GPU offload 50%"
    )

    # While it answers, its idle clock has not started: a tick between polls changes nothing.
    assert tree._tick.isActive()
    written: list[int] = []
    tree.dataChanged.connect(
        lambda tl, br, roles=(): written.extend(range(tl.column(), br.column() + 1))
    )
    wall.now += 10
    tree._on_tick()
    assert cell(Column.TTL) == "5:00" and written == []

    # The answer ends: one poll, and only the cells it changes are written.
    catalog = [
        model(
            "qwen/qwen3-4b",
            busy_inst("qwen/qwen3-4b", "qwen-1", wall, status="idle", last_used=wall.now),
        )
    ]
    feed.push(catalog)
    assert cell(Column.STATUS) == "idle"
    assert not cell(Column.STATUS, Qt.ItemDataRole.FontRole)
    assert cell(Column.STATUS, Qt.ItemDataRole.ForegroundRole) is None
    assert cell(Column.TTL) == "5:00"
    assert sorted(set(written)) == [Column.NAME, Column.STATUS]  # NAME: the record

    # Idle, the server's countdown ticks on between polls, like lmgui's: only the TTL cell.
    written.clear()
    wall.now += 30
    tree._on_tick()
    assert cell(Column.TTL) == "4:30"
    assert written == [Column.TTL]


@pytest.mark.parametrize(
    ("fields", "gpu", "status"),
    [
        ({"gpu_offload": 1.0, "status": "processingPrompt"}, "max", "reading prompt"),
        ({"gpu_offload": 0.0, "status": "computingEmbedding"}, "off", "embedding"),
        ({"gpu_offload": 0.999, "status": "idle", "queued": 0}, "99 %", "idle"),
        ({"gpu_offload": 0.004, "status": "loadingSomething"}, "1 %", "loadingSomething"),
        ({"gpu_offload": float("nan")}, "?", "-"),
        ({}, "-", "-"),
    ],
)
def test_gpu_and_status_cell_texts(
    qapp: object, fields: dict[str, Any], gpu: str, status: str
) -> None:
    tree = ModelTreeModel()
    Feed(tree).push([model("a/one", Instance("a/one", "a/one", {}, **fields))])
    parent = tree.model_index("a/one")
    assert tree.index(0, Column.GPU, parent).data() == gpu
    assert tree.index(0, Column.STATUS, parent).data() == status


def test_the_ledger_fills_in_what_the_server_does_not_report(
    qapp: object, clock: Clock, qtmodeltester: Any
) -> None:
    wall = Wall()
    tree = ModelTreeModel(clock=clock, wall=wall)
    qtmodeltester.check(tree)
    Feed(tree).push(
        [
            model(
                "a/one",
                inst("a/one", "plain"),  # a server without the SDK channel
                busy_inst("a/one", "both", wall, status="idle", gpu_offload=None),
            )
        ]
    )
    parent = tree.model_index("a/one")
    rows = {tree.index(r, Column.NAME, parent).data(): r for r in range(tree.rowCount(parent))}

    def cell(iid: str, col: Column) -> Any:
        return tree.index(rows[iid], col, parent).data()

    assert [cell("plain", c) for c in (Column.GPU, Column.STATUS, Column.TTL)] == ["-", "-", ""]
    lmgui_ttl = InstanceInfo(
        gpu_fraction=0.25, ttl_seconds=600, idle_deadline=wall.now + 600, enforced_by_lmgui=True
    )
    tree.set_instance_info({"plain": lmgui_ttl, "both": lmgui_ttl})
    assert cell("plain", Column.GPU) == "25 %"  # as lmgui loaded it
    assert cell("plain", Column.TTL) == "10:00 (lmgui)"
    # Where both exist, the server's countdown wins: it is the one that unloads.
    assert cell("both", Column.TTL) == "4:40"
    assert cell("both", Column.GPU) == "25 %"


def test_sorting_by_status_and_gpu(qapp: object, clock: Clock) -> None:
    wall = Wall()
    tree = ModelTreeModel(clock=clock, wall=wall)
    Feed(tree).push(
        [
            model(
                "a/one",
                busy_inst("a/one", "idle", wall, status="idle", gpu_offload=1.0),
                busy_inst("a/one", "unknown", wall, status=None, gpu_offload=None),
                busy_inst("a/one", "gen", wall, status="generating", gpu_offload=0.0),
                busy_inst("a/one", "prompt", wall, status="processingPrompt", gpu_offload=0.5),
            )
        ]
    )
    proxy = ModelFilterProxy()
    proxy.setSourceModel(tree)
    parent = proxy.index(0, 0)

    def order(col: Column, how: Qt.SortOrder) -> list[str]:
        proxy.sort(col, how)
        p = proxy.index(0, 0)
        return [proxy.index(r, Column.NAME, p).data() for r in range(proxy.rowCount(p))]

    assert parent.isValid()
    assert order(Column.STATUS, Qt.SortOrder.DescendingOrder) == [
        "gen",
        "prompt",
        "idle",
        "unknown",
    ]
    assert order(Column.GPU, Qt.SortOrder.AscendingOrder) == ["unknown", "gen", "prompt", "idle"]


def test_a_server_row_is_written_only_when_its_state_or_vram_total_changes(
    tree: ModelTreeModel,
) -> None:
    """Every poll of every server says its state again: only a difference may touch the row."""
    a, b = "http://a.lan:1234", "http://b.lan:1234"
    tree.set_servers([(a, "A"), (b, "B")])
    writes: list[int] = []
    tree.dataChanged.connect(lambda top, _bottom, _roles: writes.append(top.column()))
    tree.set_server_state(a, "Connected", offline=False, vram_total=24 * 10**9)
    said = len(writes)
    assert said > 0
    tree.set_server_state(a, "Connected", offline=False, vram_total=24 * 10**9)
    assert len(writes) == said
    tree.set_server_state(a, "Connected", offline=False, vram_total=48 * 10**9)
    assert len(writes) > said
    assert "48" in str(tree.server_index(a).siblingAtColumn(Column.VRAM).data())
