"""The model/instance tree: one row per model, its loaded instances as child rows.

Fed by ``SnapshotDiff``s, never reset on a poll: removes, inserts and ``dataChanged`` for the
changed cells only, so selection, expansion, sort and scroll survive every refresh.

Instances that appear or vanish without an action from lmgui are marked for a moment; a vanished
one stays as a greyed "ghost" row until the mark expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import QBrush, QColor, QFont

from lmgui.api.records import Instance, Model
from lmgui.core.format import human_bytes, human_count, human_duration
from lmgui.core.instances import InstanceInfo
from lmgui.core.snapshot import ModelChange, SnapshotDiff
from lmgui.core.vram import estimate_instance

__all__ = ["Column", "ModelFilterProxy", "ModelTreeModel", "RowKind"]

AnyIndex = QModelIndex | QPersistentModelIndex
ROOT = QModelIndex()


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
}
TOOLTIPS = {
    Column.NAME: "Model name (key in the tooltip) or instance id as the server gives it",
    Column.CONTEXT: "Maximum context of the model; the loaded context of an instance",
    Column.VRAM: "Estimated VRAM (weights by GPU offload plus KV cache); see docs/vram.md",
    Column.TTL: "Idle time left before the instance unloads, where known",
}

# Model fields -> the columns of a model row that show them.
FIELD_COLUMNS: dict[str, tuple[Column, ...]] = {
    "display_name": (Column.NAME,),
    "type": (Column.TYPE,),
    "params_string": (Column.PARAMS,),
    "quantization": (Column.QUANT,),
    "format": (Column.FORMAT,),
    "size_bytes": (Column.SIZE, Column.VRAM),
    "max_context_length": (Column.CONTEXT,),
    "capabilities": (Column.CAPS,),
}


class RowKind(IntEnum):
    MODEL = 0
    INSTANCE = 1


class Role(IntEnum):
    RECORD = Qt.ItemDataRole.UserRole + 1
    """The row's record: a Model, or an Instance."""
    KIND = Qt.ItemDataRole.UserRole + 2
    SORT = Qt.ItemDataRole.UserRole + 3
    MODEL = Qt.ItemDataRole.UserRole + 4
    """The Model of the row (an instance row's parent model)."""
    MARK = Qt.ItemDataRole.UserRole + 5


MARK_SECONDS = 8.0


@dataclass
class _InstanceRow:
    instance: Instance
    vram: int
    mark: str | None = None  # "appeared" / "vanished"
    mark_until: float = 0.0

    @property
    def ghost(self) -> bool:
        return self.mark == "vanished"


@dataclass
class _Node:
    model: Model
    instances: list[_InstanceRow] = field(default_factory=list)

    def live(self) -> list[_InstanceRow]:
        return [r for r in self.instances if not r.ghost]


Expected = Callable[[str, str, str], bool]
"""``expected(kind, instance_id, model_key)``: whether lmgui itself caused this "added" or
"removed" (kind)."""


class ModelTreeModel(QAbstractItemModel):
    def __init__(
        self, parent: QObject | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(parent)
        self._nodes: list[_Node] = []
        self._row: dict[str, int] = {}
        self._pending: set[str] = set()
        self._info: dict[str, InstanceInfo] = {}
        self._clock = clock
        self._wall = time.time
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._on_tick)
        self.dimmed = False

    # ------------------------------------------------------------------ Qt model interface

    def index(self, row: int, column: int, parent: AnyIndex = ROOT) -> QModelIndex:
        if column < 0 or column >= len(Column) or row < 0:
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column) if row < len(self._nodes) else QModelIndex()
        if parent.internalPointer() is not None or parent.column() != 0:
            return QModelIndex()
        node = self._nodes[parent.row()]
        if row >= len(node.instances):
            return QModelIndex()
        return self.createIndex(row, column, node)

    def parent(self, index: AnyIndex = ROOT) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        node = index.internalPointer()
        if node is None:
            return QModelIndex()
        return self.createIndex(self._row[node.model.key], 0)

    def rowCount(self, parent: AnyIndex = ROOT) -> int:
        if not parent.isValid():
            return len(self._nodes)
        if parent.internalPointer() is not None or parent.column() != 0:
            return 0
        return len(self._nodes[parent.row()].instances)

    def columnCount(self, parent: AnyIndex = ROOT) -> int:
        return len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(Column):
            return None
        col = Column(section)
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[col]
        if role == Qt.ItemDataRole.ToolTipRole:
            return TOOLTIPS.get(col)
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node: _Node | None = index.internalPointer()
        col = Column(index.column())
        if node is None:
            top = self._nodes[index.row()]
            return self._model_data(top, col, role)
        return self._instance_data(node, node.instances[index.row()], col, role)

    # ------------------------------------------------------------------ cell contents

    def _model_data(self, node: _Node, col: Column, role: int) -> Any:
        m = node.model
        if role == Role.RECORD or role == Role.MODEL:
            return m
        if role == Role.KIND:
            return RowKind.MODEL
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == Column.NAME:
                return f"{m.display_name}\nkey: {m.key}" + (
                    f"\npublisher: {m.publisher}" if m.publisher else ""
                )
            if col == Column.VRAM:
                return "Sum of this model's instances, estimated (docs/vram.md)"
            return None
        if role == Qt.ItemDataRole.ForegroundRole and self.dimmed:
            return QBrush(QColor(140, 140, 140))
        if role == Qt.ItemDataRole.TextAlignmentRole and col in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        live = node.live()
        if role == Role.SORT:
            return _model_sort(node, col, live, self._pending)
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if col == Column.NAME:
            return m.display_name
        if col == Column.TYPE:
            return m.type
        if col == Column.PARAMS:
            return m.params_string or ""
        if col == Column.QUANT:
            return (m.quantization.name if m.quantization else None) or ""
        if col == Column.FORMAT:
            return m.format or ""
        if col == Column.SIZE:
            return human_bytes(m.size_bytes)
        if col == Column.CONTEXT:
            return human_count(m.max_context_length)
        if col == Column.STATE:
            return model_state(m.key in self._pending, len(live))
        if col == Column.CAPS:
            return _caps(m)
        if col == Column.VRAM:
            return human_bytes(sum(r.vram for r in live)) if live else ""
        return ""

    def _instance_data(self, node: _Node, row: _InstanceRow, col: Column, role: int) -> Any:
        inst = row.instance
        if role == Role.RECORD:
            return inst
        if role == Role.MODEL:
            return node.model
        if role == Role.KIND:
            return RowKind.INSTANCE
        if role == Role.MARK:
            return row.mark
        info = self._info.get(inst.id)
        if role == Qt.ItemDataRole.ForegroundRole and (row.ghost or self.dimmed):
            return QBrush(QColor(140, 140, 140))
        if role == Qt.ItemDataRole.BackgroundRole and row.mark == "appeared":
            return QBrush(QColor(255, 243, 176))
        if role == Qt.ItemDataRole.FontRole and row.ghost:
            font = QFont()
            font.setStrikeOut(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and col in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == Column.NAME:
                return f"instance id: {inst.id}\nmodel: {node.model.key}"
            if col == Column.VRAM:
                fraction = info.gpu_fraction if info and info.gpu_fraction is not None else 1.0
                return f"Estimated for GPU offload {fraction:.0%} (docs/vram.md)"
            if col == Column.STATE and row.mark:
                return _mark_text(row.mark)
            return None
        if role == Role.SORT:
            return _instance_sort(row, col, self._ttl_left(info))
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if col == Column.NAME:
            return inst.id
        if col == Column.CONTEXT:
            return human_count(inst.context_length)
        if col == Column.STATE:
            if row.mark:
                return _mark_text(row.mark)
            return "loading" if inst.id in self._pending else "loaded"
        if col == Column.PARALLEL:
            return "" if inst.parallel is None else str(inst.parallel)
        if col == Column.FLASH:
            return _yes_no(inst.flash_attention)
        if col == Column.KV_GPU:
            return _yes_no(inst.offload_kv_cache_to_gpu)
        if col == Column.VRAM:
            return "" if row.ghost else human_bytes(row.vram)
        if col == Column.TTL:
            left = self._ttl_left(info)
            if left is None:
                return ""
            return human_duration(left) + (" (lmgui)" if info and info.enforced_by_lmgui else "")
        return ""

    def _ttl_left(self, info: InstanceInfo | None) -> float | None:
        if info is None or info.idle_deadline is None:
            return None
        return max(0.0, info.idle_deadline - self._wall())

    # ------------------------------------------------------------------ updates

    def apply(self, d: SnapshotDiff, expected: Expected | None = None) -> None:
        """Apply one poll's diff as row removes, inserts and dataChanged; never a reset."""
        if not self._nodes:  # the first fill is the baseline: nothing "appeared"
            check: Expected = _always
        else:
            check = expected or _never
        now = self._clock()
        for key in d.removed:
            row = self._row.get(key)
            if row is None:
                continue
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._nodes[row]
            self._reindex()
            self.endRemoveRows()
        for change in d.changed:
            self._apply_change(change, check, now)
        if d.added:
            first = len(self._nodes)
            self.beginInsertRows(QModelIndex(), first, first + len(d.added) - 1)
            for m in d.added:
                node = _Node(m)
                for inst in m.instances:
                    mark = None if check("added", inst.id, m.key) else "appeared"
                    node.instances.append(self._row_for(m, inst, mark, now))
                self._nodes.append(node)
            self._reindex()
            self.endInsertRows()
        self._arm_tick()

    def _apply_change(self, change: ModelChange, expected: Expected, now: float) -> None:
        row = self._row[change.model.key]
        node = self._nodes[row]
        node.model = change.model
        parent = self.index(row, 0)
        for iid in change.instances_removed:
            idx = next((i for i, r in enumerate(node.instances) if r.instance.id == iid), None)
            if idx is None:
                continue
            if expected("removed", iid, change.model.key):
                self.beginRemoveRows(parent, idx, idx)
                del node.instances[idx]
                self.endRemoveRows()
            else:  # keep it as a ghost for a moment
                r = node.instances[idx]
                r.mark, r.mark_until = "vanished", now + MARK_SECONDS
                self._row_changed(parent, idx)
        for inst in change.instances_changed:
            for idx, r in enumerate(node.instances):
                if r.instance.id == inst.id:
                    r.instance = inst
                    r.vram = self._estimate(change.model, inst)
                    self._row_changed(parent, idx)
        for inst in change.instances_added:
            ghost = next(
                (i for i, r in enumerate(node.instances) if r.instance.id == inst.id), None
            )
            mark = None if expected("added", inst.id, change.model.key) else "appeared"
            if ghost is not None:  # it came back while still shown as vanished
                node.instances[ghost] = self._row_for(change.model, inst, mark, now)
                self._row_changed(parent, ghost)
                continue
            at = len(node.instances)
            self.beginInsertRows(parent, at, at)
            node.instances.append(self._row_for(change.model, inst, mark, now))
            self.endInsertRows()
        cols = {c for f in change.fields for c in FIELD_COLUMNS.get(f, ())}
        if change.instances_added or change.instances_removed or change.instances_changed:
            cols |= {Column.STATE, Column.VRAM}
        if "size_bytes" in change.fields:
            for idx, r in enumerate(node.instances):
                r.vram = self._estimate(change.model, r.instance)
                self._row_changed(parent, idx)
        for c in cols:
            i = self.index(row, c)
            self.dataChanged.emit(i, i)

    def _row_for(self, model: Model, inst: Instance, mark: str | None, now: float) -> _InstanceRow:
        until = now + MARK_SECONDS if mark else 0.0
        return _InstanceRow(inst, self._estimate(model, inst), mark, until)

    def _estimate(self, model: Model, inst: Instance) -> int:
        info = self._info.get(inst.id)
        fraction = info.gpu_fraction if info and info.gpu_fraction is not None else 1.0
        return estimate_instance(
            model,
            context_length=inst.context_length,
            gpu_fraction=fraction,
            kv_on_gpu=inst.offload_kv_cache_to_gpu,
        ).vram_bytes

    def _row_changed(self, parent: QModelIndex, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0, parent), self.index(row, len(Column) - 1, parent))

    def _reindex(self) -> None:
        self._row = {n.model.key: i for i, n in enumerate(self._nodes)}

    def clear(self) -> None:
        """Forget every row: only for a change of server, never for a poll."""
        self.beginResetModel()
        self._nodes.clear()
        self._row.clear()
        self._info.clear()
        self.endResetModel()

    def set_pending(self, keys_and_ids: Iterable[str]) -> None:
        """Model keys and instance ids with a load in flight (shown as "loading")."""
        new = set(keys_and_ids)
        touched = new ^ self._pending
        self._pending = new
        for key in touched:
            if key in self._row:
                i = self.index(self._row[key], Column.STATE)
                self.dataChanged.emit(i, i)
            for pidx, row in self._instance_rows(key):
                i = self.index(row, Column.STATE, pidx)
                self.dataChanged.emit(i, i)

    def set_instance_info(self, info: dict[str, InstanceInfo]) -> None:
        """Per-instance facts the server does not list (GPU offload, TTL deadline)."""
        changed = {k for k in info.keys() | self._info.keys() if info.get(k) != self._info.get(k)}
        self._info = dict(info)
        for iid in changed:
            for pidx, row in self._instance_rows(iid):
                node = self._nodes[pidx.row()]
                node.instances[row].vram = self._estimate(node.model, node.instances[row].instance)
                self._row_changed(pidx, row)
                top = self.index(pidx.row(), Column.VRAM)
                self.dataChanged.emit(top, top)
        self._arm_tick()

    def set_dimmed(self, dimmed: bool) -> None:
        """Grey everything out (the server is offline; the last known state stays visible)."""
        if dimmed == self.dimmed or not self._nodes:
            self.dimmed = dimmed
            return
        self.dimmed = dimmed
        last = len(self._nodes) - 1
        self.dataChanged.emit(
            self.index(0, 0), self.index(last, len(Column) - 1), [Qt.ItemDataRole.ForegroundRole]
        )
        for row, node in enumerate(self._nodes):
            if node.instances:
                parent = self.index(row, 0)
                self.dataChanged.emit(
                    self.index(0, 0, parent),
                    self.index(len(node.instances) - 1, len(Column) - 1, parent),
                    [Qt.ItemDataRole.ForegroundRole],
                )

    def _instance_rows(self, instance_id: str) -> list[tuple[QModelIndex, int]]:
        out = []
        for prow, node in enumerate(self._nodes):
            for row, r in enumerate(node.instances):
                if r.instance.id == instance_id:
                    out.append((self.index(prow, 0), row))
        return out

    # ------------------------------------------------------------------ marks and countdowns

    def _arm_tick(self) -> None:
        needed = any(r.mark for n in self._nodes for r in n.instances) or any(
            i.idle_deadline is not None for i in self._info.values()
        )
        if needed and not self._tick.isActive():
            self._tick.start()
        elif not needed:
            self._tick.stop()

    def _on_tick(self) -> None:
        self.expire_marks()
        for iid, info in self._info.items():
            if info.idle_deadline is not None:
                for pidx, row in self._instance_rows(iid):
                    i = self.index(row, Column.TTL, pidx)
                    self.dataChanged.emit(i, i)
        self._arm_tick()

    def expire_marks(self) -> None:
        """Clear marks whose moment has passed; drop ghost rows."""
        now = self._clock()
        for prow, node in enumerate(self._nodes):
            parent = self.index(prow, 0)
            for row in range(len(node.instances) - 1, -1, -1):
                r = node.instances[row]
                if not r.mark or r.mark_until > now:
                    continue
                if r.ghost:
                    self.beginRemoveRows(parent, row, row)
                    del node.instances[row]
                    self.endRemoveRows()
                else:
                    r.mark = None
                    self._row_changed(parent, row)

    # ------------------------------------------------------------------ queries

    def model_index(self, key: str) -> QModelIndex:
        row = self._row.get(key)
        return self.index(row, 0) if row is not None else QModelIndex()

    def instance_index(self, instance_id: str) -> QModelIndex:
        rows = self._instance_rows(instance_id)
        return self.index(rows[0][1], 0, rows[0][0]) if rows else QModelIndex()

    def models(self) -> list[Model]:
        return [n.model for n in self._nodes]

    def total_vram(self) -> int:
        """Estimated VRAM of every live instance."""
        return sum(r.vram for n in self._nodes for r in n.live())


def _always(kind: str, instance_id: str, model_key: str) -> bool:
    return True


def _never(kind: str, instance_id: str, model_key: str) -> bool:
    return False


_NUMERIC = {Column.PARAMS, Column.SIZE, Column.CONTEXT, Column.PARALLEL, Column.VRAM, Column.TTL}


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


def _caps(m: Model) -> str:
    marks = []
    if m.vision:
        marks.append("vision")
    if m.tool_use:
        marks.append("tools")
    if m.reasoning_options:
        marks.append("reasoning")
    return ", ".join(marks)


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _params_sort(m: Model) -> float:
    from lmgui.core.vram import params_billions

    return params_billions(m) or 0.0


def _model_sort(node: _Node, col: Column, live: list[_InstanceRow], pending: set[str]) -> Any:
    m = node.model
    if col == Column.NAME:
        return m.display_name.casefold()
    if col == Column.PARAMS:
        return _params_sort(m)
    if col == Column.SIZE:
        return m.size_bytes or 0
    if col == Column.CONTEXT:
        return m.max_context_length or 0
    if col == Column.STATE:
        return (1000 if m.key in pending else 0) + len(live)  # a plain int: QVariant compares it
    if col == Column.VRAM:
        return sum(r.vram for r in live)
    if col == Column.QUANT:
        return (m.quantization.name if m.quantization else None) or ""
    if col == Column.CAPS:
        return _caps(m)
    if col == Column.TYPE:
        return m.type
    if col == Column.FORMAT:
        return m.format or ""
    return ""


def _instance_sort(row: _InstanceRow, col: Column, ttl_left: float | None) -> Any:
    inst = row.instance
    if col == Column.CONTEXT:
        return inst.context_length or 0
    if col == Column.PARALLEL:
        return inst.parallel or 0
    if col == Column.VRAM:
        return row.vram
    if col == Column.TTL:
        return ttl_left if ttl_left is not None else float("inf")
    if col == Column.NAME:
        return inst.id.casefold()
    return ""


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
        if source_parent.isValid():
            return True  # instance rows follow their model row
        src = self.sourceModel()
        m = src.index(source_row, 0, source_parent).data(Role.RECORD)
        if not isinstance(m, Model):
            return True
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
