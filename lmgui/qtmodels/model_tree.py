"""The model/instance tree: one row per model, its loaded instances as child rows; with several
servers (the fleet), a top-level row per server holds that server's models.

Fed by ``SnapshotDiff``s, never reset on a poll: the keyed diff decides which rows are removed or
inserted and which cells change, and only those cells are written (a value equal to the one shown
is not written again), so selection, expansion, sort and scroll survive every refresh.

WORKAROUND: the cells live in a ``QStandardItemModel`` rather than a Python
``QAbstractItemModel``. QTreeView re-lays out the whole tree when a child row is inserted or
removed, calling index/flags/data/hasChildren for every row; through Python that was ~24,000
calls and ~100 ms for 2000 models (measured, bench/run.py). With the data in C++ the view, the
sort/filter proxy and painting never call back into Python.

Instances that appear or vanish without an action from lmgui are marked for a moment; a vanished
one stays as a struck-through "ghost" row until the mark expires.

Servers: each is a section with its own rows, pending loads, instance facts and pins, keyed by
its URL. With one server the model rows are top-level, as they always were; with several, each
server's row shows its name, its connection state, its instances' VRAM against its own total,
and holds its models. A server's first fill builds its rows while its server row is out of the
tree and puts it back in one insert, so filling one server never resets the others' rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QStandardItem, QStandardItemModel

from lmgui.api.records import Instance, Model
from lmgui.core.format import (
    UNREADABLE,
    UNREADABLE_TIP,
    capabilities,
    field_text,
    gpu_offload_text,
    human_bytes,
    human_count,
    human_duration,
    status_text,
)
from lmgui.core.instances import InstanceInfo
from lmgui.core.messages import quantization_label
from lmgui.core.snapshot import ModelChange, SnapshotDiff
from lmgui.core.vram import estimate_loaded, params_billions

__all__ = [
    "Column",
    "ModelFilterProxy",
    "ModelTreeModel",
    "Role",
    "RowKind",
    "ServerRecord",
    "model_state",
]

AnyIndex = QModelIndex | QPersistentModelIndex


class Column(IntEnum):
    NAME = 0
    TYPE = 1
    PARAMS = 2
    QUANT = 3
    FORMAT = 4
    SIZE = 5
    CONTEXT = 6
    STATE = 7
    CAPS = 8
    PARALLEL = 9
    FLASH = 10
    KV_GPU = 11
    VRAM = 12
    TTL = 13
    # Added after TTL, not beside the columns they relate to: a header layout saved by an
    # earlier lmgui keeps its meaning (sections are restored by number).
    GPU = 14
    STATUS = 15


HEADERS = {
    Column.NAME: "Name",
    Column.TYPE: "Type",
    Column.PARAMS: "Params",
    Column.QUANT: "Quant",
    Column.FORMAT: "Format",
    Column.SIZE: "Size",
    Column.CONTEXT: "Context",
    Column.STATE: "State",
    Column.CAPS: "Capabilities",
    Column.PARALLEL: "Parallel",
    Column.FLASH: "Flash attn",
    Column.KV_GPU: "KV on GPU",
    Column.VRAM: "Est. VRAM",
    Column.TTL: "TTL",
    Column.GPU: "GPU",
    Column.STATUS: "Status",
}
TOOLTIPS = {
    Column.NAME: "Model name (key in the tooltip) or instance id as the server gives it",
    Column.CONTEXT: "Maximum context of the model; the loaded context of an instance",
    Column.VRAM: "Estimated VRAM (weights by GPU offload plus KV cache); see docs/vram.md",
    Column.TTL: "Idle time left before the instance unloads, where known: the server's own "
    'countdown, or lmgui\'s, marked "(lmgui)", where lmgui enforces the TTL',
    Column.GPU: "GPU offload of the instance: as the server reports it, else as lmgui loaded it",
    Column.STATUS: "What the instance is doing, as the server reports it",
}


class RowKind(IntEnum):
    MODEL = 0
    INSTANCE = 1
    SERVER = 2


@dataclass(frozen=True)
class ServerRecord:
    """A server row's record: the server's normalized URL and its label (profile name)."""

    url: str
    name: str


class Role(IntEnum):
    """Roles of a row's first cell (column 0), except SORT, which every cell has."""

    RECORD = Qt.ItemDataRole.UserRole + 1
    """The row's record: a Model, an Instance, or a ServerRecord."""
    KIND = Qt.ItemDataRole.UserRole + 2
    SORT = Qt.ItemDataRole.UserRole + 3
    MODEL = Qt.ItemDataRole.UserRole + 4
    """The Model of the row (an instance row's parent model)."""
    MARK = Qt.ItemDataRole.UserRole + 5
    SERVER = Qt.ItemDataRole.UserRole + 6
    """The normalized URL of the row's server ("" where the tree was never told servers)."""


MARK_SECONDS = 8.0
_NUMERIC = {
    Column.PARAMS,
    Column.SIZE,
    Column.CONTEXT,
    Column.PARALLEL,
    Column.VRAM,
    Column.TTL,
    Column.GPU,
}
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_GREY = QBrush(QColor(140, 140, 140))
_NEW = QBrush(QColor(255, 243, 176))
_OFFLINE = QBrush(QColor(190, 40, 40))
# An instance answering right now stands out in its Status cell: bold, and coloured. Mid tones,
# so they read on light and dark palettes alike.
_ACTIVE = {
    "generating": QBrush(QColor(30, 150, 70)),
    "processingPrompt": QBrush(QColor(200, 125, 0)),
    "computingEmbedding": QBrush(QColor(40, 120, 200)),
}
_STATUS_RANK = {"generating": 4, "processingPrompt": 3, "computingEmbedding": 2, "idle": 1}
"""Sorting by Status puts the busiest first (descending) and the unknown last."""

Cells = list[dict[int, Any]]
"""Per column, the roles to show and their values."""


@dataclass
class _InstanceRow:
    instance: Instance
    items: list[QStandardItem]
    vram: int = 0
    mark: str | None = None  # "appeared" / "vanished"
    mark_until: float = 0.0

    @property
    def ghost(self) -> bool:
        return self.mark == "vanished"


@dataclass
class _Section:
    """One server's part of the tree."""

    url: str
    name: str
    order: int
    items: list[QStandardItem] | None
    """The server row (several servers); None: its model rows are top-level (one server)."""
    nodes: dict[str, _Node] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    info: dict[str, InstanceInfo] = field(default_factory=dict)
    pinned: set[str] = field(default_factory=set)
    filled: bool = False
    state: str = "Connecting…"
    offline: bool = False
    vram_total: int | None = None
    """What its instances' VRAM is counted against (measured, budget or its own survey)."""
    ticking: bool = False
    """A row of it has a mark or a countdown: the 1 s tick is needed."""


@dataclass
class _Node:
    model: Model
    items: list[QStandardItem]
    section: _Section
    instances: dict[str, _InstanceRow] = field(default_factory=dict)

    def live(self) -> list[_InstanceRow]:
        return [r for r in self.instances.values() if not r.ghost]


Expected = Callable[[str, str, str], bool]
"""``expected(kind, instance_id, model_key)``: whether lmgui itself caused this "added" or
"removed" (kind)."""


def _new_items() -> list[QStandardItem]:
    items = []
    for _ in Column:
        item = QStandardItem()
        item.setEditable(False)
        items.append(item)
    return items


def _write(items: list[QStandardItem], cells: Cells) -> None:
    """Set the roles that differ from what each item holds: one dataChanged per changed cell,
    none for a cell that shows the same as before."""
    for item, roles in zip(items, cells, strict=True):
        changed = {role: v for role, v in roles.items() if item.data(role) != v}
        if not changed:
            continue
        index = item.index()
        if index.isValid():
            item.model().setItemData(index, changed)
        else:  # not in the tree yet: no one to tell
            for role, value in changed.items():
                item.setData(value, role)


class ModelTreeModel(QStandardItemModel):
    dimmed_changed = Signal(bool)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` times the marks; ``wall`` (time.time()'s scale, as the server's last use
        and the ledger's deadlines are) the TTL countdowns."""
        super().__init__(0, len(Column), parent)
        for col in Column:
            self.setHeaderData(col, Qt.Orientation.Horizontal, HEADERS[col])
            if col in TOOLTIPS:
                self.setHeaderData(
                    col, Qt.Orientation.Horizontal, TOOLTIPS[col], Qt.ItemDataRole.ToolTipRole
                )
        self._sections: dict[str, _Section] = {}
        self._descending = False
        self._clock = clock
        self._wall = wall
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._on_tick)
        self.dimmed = False

    # ------------------------------------------------------------------ cell contents

    def _model_cells(self, node: _Node) -> Cells:
        m = node.model
        live = node.live()
        pending = m.key in node.section.pending
        vram = sum(r.vram for r in live)
        quant = quantization_label(m.quantization)
        # Without a readable size (or an instance's context) the sum would be a confident wrong
        # number: "?" instead, as on the instance row.
        vram_unknown = "size_bytes" in m.malformed or any(
            "context_length" in r.instance.malformed for r in live
        )
        text = {
            Column.NAME: m.display_name,
            Column.TYPE: m.type,
            Column.PARAMS: m.params_string or "",
            Column.QUANT: quant,
            Column.FORMAT: m.format or "",
            Column.SIZE: field_text(m, "size_bytes", human_bytes),
            Column.CONTEXT: field_text(m, "max_context_length", human_count),
            Column.STATE: model_state(pending, len(live)),
            Column.CAPS: ", ".join(capabilities(m)),
            Column.VRAM: (UNREADABLE if vram_unknown else human_bytes(vram)) if live else "",
        }
        sort = {
            Column.NAME: m.display_name.casefold(),
            Column.PARAMS: params_billions(m) or 0.0,
            Column.SIZE: m.size_bytes or 0,
            Column.CONTEXT: m.max_context_length or 0,
            Column.STATE: (1000 if pending else 0) + len(live),
            Column.VRAM: vram,
        }
        tips = {
            Column.NAME: f"{m.display_name}\nkey: {m.key}"
            + (f"\npublisher: {m.publisher}" if m.publisher else "")
            + (_unreadable_note(m.malformed) if m.malformed else ""),
            Column.VRAM: "Sum of this model's instances, estimated (docs/vram.md)",
        }
        _tip_unreadable(tips, text)
        cells: Cells = []
        for col in Column:
            roles: dict[int, Any] = {
                Qt.ItemDataRole.DisplayRole: text.get(col, ""),
                Role.SORT: sort.get(col, text.get(col, "")),
            }
            if col == Column.NAME:  # the row's record lives in its first cell
                roles.update(
                    {
                        Role.RECORD: m,
                        Role.MODEL: m,
                        Role.KIND: int(RowKind.MODEL),
                        Role.SERVER: node.section.url,
                    }
                )
            if col in tips:
                roles[Qt.ItemDataRole.ToolTipRole] = tips[col]
            if col in _NUMERIC:
                roles[Qt.ItemDataRole.TextAlignmentRole] = _RIGHT
            cells.append(roles)
        return cells

    def _instance_cells(self, node: _Node, row: _InstanceRow) -> Cells:
        inst = row.instance
        sec = node.section
        info = sec.info.get(inst.id)
        ttl_left, ttl_text, ttl_tip = self._ttl(inst, info)
        gpu = _gpu_fraction(inst, info)
        readable_gpu = gpu if gpu is not None and 0.0 <= gpu <= 1.0 else None  # NaN: None
        if row.mark:
            state = _mark_text(row.mark)
        else:
            state = "loading" if inst.id in sec.pending else "loaded"
            if inst.id in sec.pinned:
                state += ", pinned"  # kept when the GPU is freed or room is made
        text = {
            Column.NAME: inst.id,
            Column.CONTEXT: field_text(inst, "context_length", human_count),
            Column.STATE: state,
            Column.PARALLEL: field_text(inst, "parallel", _plain),
            Column.FLASH: field_text(inst, "flash_attention", _yes_no),
            Column.KV_GPU: field_text(inst, "offload_kv_cache_to_gpu", _yes_no),
            Column.VRAM: "" if row.ghost else _instance_vram(node.model, inst, row.vram),
            Column.TTL: ttl_text,
            Column.GPU: gpu_offload_text(gpu),
            Column.STATUS: status_text(inst.status, inst.queued),
        }
        sort = {
            Column.NAME: inst.id.casefold(),
            Column.CONTEXT: inst.context_length or 0,
            Column.PARALLEL: inst.parallel or 0,
            Column.VRAM: row.vram,
            Column.TTL: ttl_left if ttl_left is not None else float("inf"),
            Column.GPU: readable_gpu if readable_gpu is not None else -1.0,
            Column.STATUS: _STATUS_RANK.get(inst.status or "", 0) * 1_000_000
            + min(max(inst.queued or 0, 0), 999_999),
        }
        fraction = readable_gpu if readable_gpu is not None else 1.0
        tips = {
            Column.NAME: f"instance id: {inst.id}\nmodel: {node.model.key}"
            + (_unreadable_note(inst.malformed) if inst.malformed else ""),
            Column.VRAM: f"Estimated for GPU offload {fraction:.0%} (docs/vram.md)",
        }
        if ttl_tip:
            tips[Column.TTL] = ttl_tip
        if readable_gpu is not None:
            tips[Column.GPU] = (
                "GPU offload as the server reports it"
                if inst.gpu_offload is not None
                else "GPU offload lmgui loaded it with"
            )
        _tip_unreadable(tips, text)
        if row.mark:
            tips[Column.STATE] = _mark_text(row.mark)
        font = None
        if row.ghost:
            font = QFont()
            font.setStrikeOut(True)
        active = None if row.ghost else _ACTIVE.get(inst.status or "")
        status_font = font
        if active is not None or (inst.busy and not row.ghost):
            status_font = QFont()
            status_font.setBold(True)
        cells: Cells = []
        for col in Column:
            status = col == Column.STATUS
            roles: dict[int, Any] = {
                Qt.ItemDataRole.DisplayRole: text.get(col, ""),
                Role.SORT: sort.get(col, text.get(col, "")),
                Qt.ItemDataRole.ToolTipRole: tips.get(col),
                Qt.ItemDataRole.ForegroundRole: _GREY
                if row.ghost
                else (active if status else None),
                Qt.ItemDataRole.BackgroundRole: _NEW if row.mark == "appeared" else None,
                Qt.ItemDataRole.FontRole: status_font if status else font,
            }
            if col == Column.NAME:
                roles.update(
                    {
                        Role.RECORD: inst,
                        Role.MODEL: node.model,
                        Role.KIND: int(RowKind.INSTANCE),
                        Role.MARK: row.mark,
                        Role.SERVER: sec.url,
                    }
                )
            if col in _NUMERIC:
                roles[Qt.ItemDataRole.TextAlignmentRole] = _RIGHT
            cells.append(roles)
        return cells

    def _ttl(
        self, inst: Instance, info: InstanceInfo | None
    ) -> tuple[float | None, str, str | None]:
        """(seconds left, cell text, tooltip) of the idle countdown. The server's own, where it
        reports one, wins: it is the one that unloads. Else lmgui's, from the ledger, marked
        "(lmgui)" only where lmgui itself unloads at the deadline."""
        now = self._wall()
        server = inst.ttl_left(now)
        if server is not None and inst.ttl_seconds is not None:
            return (
                server,
                human_duration(server),
                f"The server unloads it after {human_duration(inst.ttl_seconds)} idle "
                "(its TTL); this is the time left.",
            )
        if info is None or info.idle_deadline is None:
            return None, "", None
        left = max(0.0, info.idle_deadline - now)
        if info.enforced_by_lmgui:
            return (
                left,
                human_duration(left) + " (lmgui)",
                "The server did not take this TTL: lmgui unloads it when idle this long.",
            )
        return left, human_duration(left), None

    def _counts_down(self, node: _Node, row: _InstanceRow) -> bool:
        """Whether the row's TTL cell changes with time alone (so the 1 s tick rewrites it)."""
        inst = row.instance
        if inst.ttl_seconds is not None and inst.last_used is not None:
            return True
        info = node.section.info.get(inst.id)
        return info is not None and info.idle_deadline is not None

    def _refresh_model_row(self, node: _Node) -> None:
        _write(node.items, self._model_cells(node))

    def _server_cells(self, sec: _Section) -> Cells:
        live = [r for n in sec.nodes.values() if n.instances for r in n.live()]
        vram = sum(r.vram for r in live)
        busy = sum(1 for r in live if r.instance.busy)
        vram_text = human_bytes(vram) if live else ""
        vram_tip = "Sum of this server's instances, estimated (docs/vram.md)"
        if sec.vram_total:
            # Short, to fit the column: "44.1/48 GB"; the tooltip says it in full.
            vram_text = f"{vram / 1e9:.1f}/{sec.vram_total / 1e9:.0f} GB"
            vram_tip = (
                f"{human_bytes(vram)} estimated in use of {human_bytes(sec.vram_total)} "
                "(docs/vram.md)"
            )
        loaded = f"{len(live)} loaded" if live else "nothing loaded"
        text = {
            Column.NAME: sec.name,
            Column.TYPE: "server",
            Column.SIZE: human_count(len(sec.nodes)) + " models" if sec.filled else "",
            Column.STATE: sec.state,
            Column.VRAM: vram_text,
            Column.STATUS: loaded + (f", {busy} busy" if busy else ""),
        }
        tip = f"{sec.name}\n{sec.url}\n{sec.state}"
        bold = QFont()
        bold.setBold(True)
        cells: Cells = []
        for col in Column:
            roles: dict[int, Any] = {
                Qt.ItemDataRole.DisplayRole: text.get(col, ""),
                # Servers keep their order whatever the column and the direction of the sort.
                Role.SORT: -sec.order if self._descending else sec.order,
                Qt.ItemDataRole.ToolTipRole: vram_tip if col == Column.VRAM else tip,
                Qt.ItemDataRole.FontRole: bold if col in (Column.NAME, Column.STATE) else None,
                Qt.ItemDataRole.ForegroundRole: _OFFLINE
                if sec.offline and col == Column.STATE
                else None,
            }
            if col == Column.NAME:
                roles.update(
                    {
                        Role.RECORD: ServerRecord(sec.url, sec.name),
                        Role.KIND: int(RowKind.SERVER),
                        Role.SERVER: sec.url,
                    }
                )
            if col in _NUMERIC:
                roles[Qt.ItemDataRole.TextAlignmentRole] = _RIGHT
            cells.append(roles)
        return cells

    def _refresh_server_row(self, sec: _Section) -> None:
        if sec.items is not None:
            _write(sec.items, self._server_cells(sec))

    def _refresh_instance_row(self, node: _Node, row: _InstanceRow) -> None:
        _write(row.items, self._instance_cells(node, row))

    # ------------------------------------------------------------------ servers

    @property
    def fleet(self) -> bool:
        """Several servers: each has a server row holding its models."""
        return len(self._sections) > 1

    def servers(self) -> list[ServerRecord]:
        return [ServerRecord(s.url, s.name) for s in self._sections.values()]

    def set_servers(self, servers: list[tuple[str, str]]) -> list[str]:
        """Show these servers ((normalized URL, label), in order). Returns the URLs whose rows
        must be filled again (``apply`` a diff from an empty snapshot): new servers, or all when
        the tree changed between one server and several (one reset, a change of servers)."""
        urls = [u for u, _ in servers]
        names = dict(servers)
        if urls == list(self._sections):
            for sec in self._sections.values():
                if sec.name != names[sec.url]:
                    sec.name = names[sec.url]
                    self._refresh_server_row(sec)
            return []
        fleet = len(urls) > 1
        same_kept = [u for u in self._sections if u in names] == [
            u for u in urls if u in self._sections
        ]
        if fleet and self.fleet and same_kept:
            for url in [u for u in self._sections if u not in names]:
                gone = self._sections.pop(url)
                assert gone.items is not None
                self.removeRow(gone.items[0].row())
            added: list[str] = []
            for order, url in enumerate(urls):
                kept = self._sections.get(url)
                if kept is None:
                    new = self._sections[url] = _Section(url, names[url], order, _new_items())
                    self._refresh_server_row(new)
                    self.appendRow(new.items or [])
                    added.append(url)
                else:
                    kept.order, kept.name = order, names[url]
                    self._refresh_server_row(kept)
            self._sections = {u: self._sections[u] for u in urls}
            return added
        self.beginResetModel()
        blocked = self.blockSignals(True)
        try:
            self.removeRows(0, self.rowCount())
            self._sections = {}
            for order, url in enumerate(urls):
                sec = _Section(url, names[url], order, _new_items() if fleet else None)
                self._sections[url] = sec
                if sec.items is not None:
                    self._refresh_server_row(sec)
                    self.appendRow(sec.items)
        finally:
            self.blockSignals(blocked)
        self.endResetModel()
        self._arm_tick()
        return urls

    def set_sort_descending(self, descending: bool) -> None:
        """The view sorts descending: server rows sort the other way, so they stay in the
        order the user gave the servers."""
        if descending != self._descending:
            self._descending = descending
            for sec in self._sections.values():
                self._refresh_server_row(sec)

    def set_server_state(
        self, url: str, state: str, *, offline: bool, vram_total: int | None = None
    ) -> None:
        """A server's connection state (its row's State cell) and the VRAM it is counted
        against. With one server, offline dims the whole table instead."""
        sec = self._sections.get(url)
        if sec is None or (sec.state, sec.offline, sec.vram_total) == (state, offline, vram_total):
            return  # said again by every poll; the rest of the row is refreshed where it changes
        sec.state, sec.offline, sec.vram_total = state, offline, vram_total
        self._refresh_server_row(sec)

    def _section(self, url: str | None) -> _Section | None:
        """``url``'s section; None: the first (one made when the tree was never told servers)."""
        if url is not None:
            return self._sections.get(url)
        if not self._sections:
            self._sections[""] = _Section("", "", 0, None)
        return next(iter(self._sections.values()))

    def _parent_item(self, sec: _Section) -> QStandardItem:
        return sec.items[0] if sec.items is not None else self.invisibleRootItem()

    def _nodes(self) -> Iterable[_Node]:
        for sec in self._sections.values():
            yield from sec.nodes.values()

    # ------------------------------------------------------------------ updates

    def apply(
        self, d: SnapshotDiff, expected: Expected | None = None, url: str | None = None
    ) -> None:
        """Apply one poll's diff of server ``url`` (None: the only one): row removes and
        inserts, and the changed cells only."""
        sec = self._section(url)
        if sec is None:
            return  # a server no longer shown
        if not sec.filled:
            self._fill(sec, d.added)  # the first fill is the baseline: nothing "appeared"
            return
        check = expected or _never
        now = self._clock()
        parent = self._parent_item(sec)
        for key in d.removed:
            node = sec.nodes.pop(key, None)
            if node is not None:
                parent.removeRow(node.items[0].row())
        for change in d.changed:
            self._apply_change(sec, change, check, now)
        for m in d.added:
            node = self._new_node(sec, m, check, now)
            parent.appendRow(node.items)
        self._refresh_server_row(sec)
        self._arm_tick(sec)

    def _fill(self, sec: _Section, models: Iterable[Model]) -> None:
        """A server's first rows: one reset with one server, one insert with several, never
        thousands of inserts."""
        sec.filled = True
        if sec.items is None:
            self.beginResetModel()
            blocked = self.blockSignals(True)
            try:
                for m in models:
                    self.appendRow(self._new_node(sec, m, _always, 0.0).items)
            finally:
                self.blockSignals(blocked)
            self.endResetModel()
        else:
            row = sec.items[0].row()
            taken = self.takeRow(row)  # out of the tree: building its rows tells no one
            for m in models:
                taken[0].appendRow(self._new_node(sec, m, _always, 0.0).items)
            self._refresh_server_row(sec)
            self.insertRow(row, taken)
        self._arm_tick(sec)

    def _new_node(self, sec: _Section, m: Model, expected: Expected, now: float) -> _Node:
        node = _Node(m, _new_items(), sec)
        sec.nodes[m.key] = node
        for inst in m.instances:
            mark = None if expected("added", inst.id, m.key) else "appeared"
            row = self._instance_row(node, inst, mark, now)
            node.instances[inst.id] = row
            self._refresh_instance_row(node, row)
            node.items[0].appendRow(row.items)
        self._refresh_model_row(node)
        return node

    def _instance_row(
        self, node: _Node, inst: Instance, mark: str | None, now: float
    ) -> _InstanceRow:
        until = now + MARK_SECONDS if mark else 0.0
        return _InstanceRow(inst, _new_items(), self._estimate(node, inst), mark, until)

    def _apply_change(
        self, sec: _Section, change: ModelChange, expected: Expected, now: float
    ) -> None:
        node = sec.nodes[change.model.key]
        node.model = change.model
        parent = node.items[0]
        for iid in change.instances_removed:
            row = node.instances.get(iid)
            if row is None:
                continue
            if expected("removed", iid, change.model.key):
                del node.instances[iid]
                parent.removeRow(row.items[0].row())
            else:  # keep it as a ghost for a moment
                row.mark, row.mark_until = "vanished", now + MARK_SECONDS
                self._refresh_instance_row(node, row)
        for inst in change.instances_added:
            mark = None if expected("added", inst.id, change.model.key) else "appeared"
            old = node.instances.get(inst.id)
            if old is not None:  # it came back while still shown as vanished
                old.instance, old.mark = inst, mark
                old.mark_until = now + MARK_SECONDS if mark else 0.0
                old.vram = self._estimate(node, inst)
                self._refresh_instance_row(node, old)
                continue
            row = self._instance_row(node, inst, mark, now)
            node.instances[inst.id] = row
            self._refresh_instance_row(node, row)
            parent.appendRow(row.items)
        for inst in change.instances_changed:
            row = node.instances[inst.id]
            row.instance = inst
            row.vram = self._estimate(node, inst)
            self._refresh_instance_row(node, row)
        if change.fields & {"size_bytes", "malformed"}:  # an instance's VRAM cell shows both
            for row in node.instances.values():
                row.vram = self._estimate(node, row.instance)
                self._refresh_instance_row(node, row)
        self._refresh_model_row(node)

    def _estimate(self, node: _Node, inst: Instance) -> int:
        fraction = _gpu_fraction(inst, node.section.info.get(inst.id))
        if fraction is None or not 0.0 <= fraction <= 1.0:  # unknown (or "?"): full offload
            fraction = 1.0
        # None (unreadable size or context) shows as "?" through the row's malformed fields.
        return estimate_loaded(node.model, inst, fraction) or 0

    def clear(self) -> None:
        """Forget every row (the servers stay): only for a change of server, never for a poll."""
        self.beginResetModel()
        blocked = self.blockSignals(True)
        try:
            for sec in self._sections.values():
                self._parent_item(sec).removeRows(0, len(sec.nodes))
                sec.nodes.clear()
                sec.info.clear()
                sec.filled = False
        finally:
            self.blockSignals(blocked)
        self.endResetModel()

    def set_pending(self, keys_and_ids: Iterable[str], url: str | None = None) -> None:
        """Model keys and instance ids with a load in flight on ``url`` (shown as "loading")."""
        sec = self._section(url)
        if sec is None:
            return
        new = set(keys_and_ids)
        touched = new ^ sec.pending
        sec.pending = new
        for node in sec.nodes.values():
            if node.model.key in touched or touched & node.instances.keys():
                self._refresh_model_row(node)
                for row in node.instances.values():
                    self._refresh_instance_row(node, row)

    def set_instance_info(self, info: dict[str, InstanceInfo], url: str | None = None) -> None:
        """Per-instance facts the server does not list (GPU offload, TTL deadline)."""
        sec = self._section(url)
        if sec is None:
            return
        changed = {k for k in info.keys() | sec.info.keys() if info.get(k) != sec.info.get(k)}
        sec.info = dict(info)
        if changed:
            for node in sec.nodes.values():
                hit = changed & node.instances.keys()
                for iid in hit:
                    row = node.instances[iid]
                    row.vram = self._estimate(node, row.instance)
                    self._refresh_instance_row(node, row)
                if hit:
                    self._refresh_model_row(node)
            self._refresh_server_row(sec)
        self._arm_tick(sec)

    def set_pinned(self, pinned: set[str], url: str | None = None) -> None:
        """The instances the user pinned (kept when the GPU is freed or room is made)."""
        sec = self._section(url)
        if sec is None:
            return
        changed = pinned ^ sec.pinned
        sec.pinned = set(pinned)
        for node in sec.nodes.values():
            for iid in changed & node.instances.keys():
                self._refresh_instance_row(node, node.instances[iid])

    def set_dimmed(self, dimmed: bool) -> None:
        """The one server is offline: the last known state stays, greyed by the view. (With
        several, each server's row says its state instead: ``set_server_state``.)"""
        dimmed = dimmed and not self.fleet
        if dimmed != self.dimmed:
            self.dimmed = dimmed
            self.dimmed_changed.emit(dimmed)

    # ------------------------------------------------------------------ marks and countdowns

    def _arm_tick(self, sec: _Section | None = None) -> None:
        """Run the 1 s tick while any row needs it. ``sec``: only that server's rows changed
        (the others' answer is kept, so a poll of one server never walks every server)."""
        for one in (sec,) if sec is not None else self._sections.values():
            one.ticking = any(
                r.mark or self._counts_down(n, r)
                for n in one.nodes.values()
                if n.instances
                for r in n.instances.values()
            )
        needed = any(one.ticking for one in self._sections.values())
        if needed and not self._tick.isActive():
            self._tick.start()
        elif not needed:
            self._tick.stop()

    def _on_tick(self) -> None:
        """Once a second between polls: marks expire and countdowns (the server's, computed
        from its last use, and lmgui's) move on. Only a cell whose text changed is written."""
        self.expire_marks()
        for node in self._nodes():
            for row in node.instances.values():
                if self._counts_down(node, row):
                    self._refresh_instance_row(node, row)
        self._arm_tick()

    def expire_marks(self) -> None:
        """Clear marks whose moment has passed; drop ghost rows."""
        now = self._clock()
        for sec in self._sections.values():
            any_expired = False
            for node in sec.nodes.values():
                expired = [r for r in node.instances.values() if r.mark and r.mark_until <= now]
                for row in expired:
                    if row.ghost:
                        del node.instances[row.instance.id]
                        node.items[0].removeRow(row.items[0].row())
                    else:
                        row.mark = None
                        self._refresh_instance_row(node, row)
                if expired:
                    any_expired = True
                    self._refresh_model_row(node)
            if any_expired:
                self._refresh_server_row(sec)

    # ------------------------------------------------------------------ queries

    def model_index(self, key: str, url: str | None = None) -> QModelIndex:
        for sec in self._sections.values():
            node = sec.nodes.get(key)
            if node is not None and url in (None, sec.url):
                return node.items[0].index()
        return QModelIndex()

    def instance_index(self, instance_id: str, url: str | None = None) -> QModelIndex:
        for sec in self._sections.values():
            if url not in (None, sec.url):
                continue
            for node in sec.nodes.values():
                row = node.instances.get(instance_id)
                if row is not None:
                    return row.items[0].index()
        return QModelIndex()

    def server_index(self, url: str) -> QModelIndex:
        """The server's row (several servers), else an invalid index."""
        sec = self._sections.get(url)
        return sec.items[0].index() if sec is not None and sec.items else QModelIndex()

    def models(self, url: str | None = None) -> list[Model]:
        """The models of server ``url`` (None: of the first server)."""
        sec = (
            self._sections.get(url)
            if url is not None
            else next(iter(self._sections.values()), None)
        )
        return [n.model for n in sec.nodes.values()] if sec is not None else []

    def filled(self, url: str) -> bool:
        """Whether server ``url``'s rows were filled (its first list arrived)."""
        sec = self._sections.get(url)
        return sec is not None and sec.filled

    def total_vram(self, url: str | None = None) -> int:
        """Estimated VRAM of every live instance (of server ``url``; None: of all)."""
        return sum(
            r.vram
            for sec in self._sections.values()
            if url is None or sec.url == url
            for n in sec.nodes.values()
            if n.instances
            for r in n.instances.values()
            if not r.ghost
        )


def _gpu_fraction(inst: Instance, info: InstanceInfo | None) -> float | None:
    """The instance's GPU offload: as the server reports it (it knows, whoever loaded it), else
    as lmgui loaded it (the ledger), else unknown."""
    if inst.gpu_offload is not None:
        return inst.gpu_offload
    return info.gpu_fraction if info is not None else None


def _always(kind: str, instance_id: str, model_key: str) -> bool:
    return True


def _never(kind: str, instance_id: str, model_key: str) -> bool:
    return False


def model_state(pending: bool, loaded: int) -> str:
    if pending:
        return "loading" + (f" ({loaded} loaded)" if loaded else "")
    if loaded == 0:
        return "not loaded"
    return "loaded" if loaded == 1 else f"loaded ({loaded})"


def _mark_text(mark: str) -> str:
    return {
        "appeared": "appeared (not loaded by lmgui)",
        "vanished": "gone (TTL, eviction or another client)",
    }.get(mark, mark)


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _plain(value: int | None) -> str:
    return "" if value is None else str(value)


def _instance_vram(model: Model, inst: Instance, vram: int) -> str:
    # The estimate needs the model's size and the instance's context; without a readable one it
    # would be a confident wrong number.
    if "size_bytes" in model.malformed or "context_length" in inst.malformed:
        return UNREADABLE
    return human_bytes(vram)


def _unreadable_note(fields: tuple[str, ...]) -> str:
    return f"\nunreadable from the server (shown as {UNREADABLE}): " + ", ".join(fields)


_FIELD_COLUMNS = (
    Column.SIZE,
    Column.CONTEXT,
    Column.PARALLEL,
    Column.FLASH,
    Column.KV_GPU,
    Column.GPU,
)
"""Columns that show one field of a record, so may show "?" (as may VRAM). Never a name column:
a server may well call a model "?"."""


def _tip_unreadable(tips: dict[Column, str], text: dict[Column, str]) -> None:
    """Every "?" cell says what it means, not a tooltip of its column's usual kind."""
    for col in (*_FIELD_COLUMNS, Column.VRAM):
        if text.get(col) == UNREADABLE:
            tips[col] = UNREADABLE_TIP


class ModelFilterProxy(QSortFilterProxyModel):
    """Sorts by the SORT role; filters model rows by text and toggles, children follow."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(Role.SORT)
        self.setAutoAcceptChildRows(True)
        self.setDynamicSortFilter(True)
        self._text = ""
        self.loaded_only = False
        self.types: frozenset[str] = frozenset()
        self.vision_only = False
        self.tools_only = False

    def set_text(self, text: str) -> None:
        self.beginFilterChange()
        self._text = text.strip().casefold()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_toggles(
        self,
        *,
        loaded_only: bool | None = None,
        types: Iterable[str] | None = None,
        vision_only: bool | None = None,
        tools_only: bool | None = None,
    ) -> None:
        self.beginFilterChange()
        if loaded_only is not None:
            self.loaded_only = loaded_only
        if types is not None:
            self.types = frozenset(types)
        if vision_only is not None:
            self.vision_only = vision_only
        if tools_only is not None:
            self.tools_only = tools_only
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        src = self.sourceModel()
        m = src.index(source_row, 0, source_parent).data(Role.RECORD)
        if not isinstance(m, Model):
            return True  # server rows always show; instance rows follow their model row
        if self._text and not any(
            self._text in (s or "").casefold() for s in (m.display_name, m.key, m.publisher)
        ):
            return False
        if self.loaded_only and not m.instances:
            return False
        if self.types and m.type not in self.types:
            return False
        if self.vision_only and not m.vision:
            return False
        return not (self.tools_only and not m.tool_use)
