"""The chat's model picker as a list model over the thread's server's models: loaded instances
first, then every other LLM (which the server loads on the first message), and the thread's own
model when the server no longer has it.

WORKAROUND: a ``QStandardItemModel``, like the model tree: a combo box asks every row for its text
to size itself, and through a Python ``QAbstractListModel`` that is a call back into Python per
row, for a picker of 2000 models. Rows are built again only when the entries change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel

from lmgui.api.records import Model

__all__ = ["NAME_ROLE", "ModelPickerModel", "PickerEntry", "default_pick", "picker_entries"]

NAME_ROLE = Qt.ItemDataRole.UserRole
"""The instance id or model key an entry stands for (what ``QComboBox.currentData()`` gives)."""


@dataclass(frozen=True)
class PickerEntry:
    label: str
    name: str
    """Instance id or model key: what the chat is sent to."""


def picker_entries(models: Sequence[Model]) -> list[PickerEntry]:
    """Loaded instances first, then LLMs with no instance (they load on the first message)."""
    entries = [PickerEntry(f"{i.id}  (loaded)", i.id) for m in models for i in m.instances]
    entries += [
        PickerEntry(f"{m.display_name}  ({m.key}, loads on first message)", m.key)
        for m in models
        if m.type == "llm" and not m.instances
    ]
    return entries


def default_pick(models: Sequence[Model]) -> str | None:
    """What a new thread on a server talks to when nothing was picked: its first loaded LLM
    instance, else its first LLM (loaded on the first message); None when it has no LLM."""
    llms = [m for m in models if m.type == "llm"]
    loaded = next((i.id for m in llms for i in m.instances), None)
    return loaded or next((m.key for m in llms), None)


def missing_entry(name: str) -> PickerEntry:
    return PickerEntry(f"{name}  (not on the server now)", name)


class ModelPickerModel(QStandardItemModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._entries: list[PickerEntry] = []

    @property
    def entries(self) -> list[PickerEntry]:
        return list(self._entries)

    def set_models(self, models: Sequence[Model], keep: str | None = None) -> bool:
        """The entries for ``models``, with ``keep`` (the thread's model) added when the server
        has no such model or instance. False, and nothing touched, when they are unchanged."""
        entries = picker_entries(models)
        if keep and all(e.name != keep for e in entries):
            entries.append(missing_entry(keep))
        if entries == self._entries:
            return False
        self._entries = entries
        items = []
        for e in entries:
            item = QStandardItem(e.label)  # plain text: names come from the server
            item.setData(e.name, NAME_ROLE)
            item.setEditable(False)
            items.append(item)
        self.clear()
        if items:
            self.appendColumn(items)  # one insertion for every row
        return True

    def row_of(self, name: str | None) -> int:
        """The row standing for ``name``; -1 when there is none."""
        return next((n for n, e in enumerate(self._entries) if e.name == name), -1)
