"""The unload dialog: pick one, several or all instances (ids as the server gives them)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.records import Instance
from lmgui.core.format import human_count

__all__ = ["UnloadDialog"]


class UnloadDialog(QDialog):
    unload_requested = Signal(list, bool)
    """(instance ids, "don't ask again" ticked)"""

    def __init__(
        self,
        instances: list[Instance],
        *,
        preselected: set[str] | None = None,
        title: str = "Unload instances",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        chosen = preselected if preselected is not None else {i.id for i in instances}
        intro = QLabel("Unload these instances? The memory they hold is freed.")
        intro.setTextFormat(Qt.TextFormat.PlainText)
        self.list = QListWidget()
        self.list.setAccessibleName("Instances to unload")
        for inst in instances:
            ctx = f"  (context {human_count(inst.context_length)})" if inst.context_length else ""
            item = QListWidgetItem(f"{inst.id}{ctx}")  # QListWidgetItem text is plain text
            item.setData(Qt.ItemDataRole.UserRole, inst.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if inst.id in chosen else Qt.CheckState.Unchecked
            )
            self.list.addItem(item)
        self.toggle_all = QPushButton("Select &all")
        self.toggle_all.clicked.connect(self._on_toggle_all_clicked)
        self.dont_ask = QCheckBox("&Don't ask again (unload at once from now on)")
        self.buttons = QDialogButtonBox()
        self.unload_button = QPushButton("&Unload")
        self.unload_button.setDefault(True)
        self.buttons.addButton(self.unload_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._on_accepted)
        self.buttons.rejected.connect(self.reject)
        self.list.itemChanged.connect(self._refresh)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.list)
        layout.addWidget(self.toggle_all)
        layout.addWidget(self.dont_ask)
        layout.addWidget(self.buttons)
        self._refresh()

    def selected(self) -> list[str]:
        return [
            str(self.list.item(r).data(Qt.ItemDataRole.UserRole))
            for r in range(self.list.count())
            if self.list.item(r).checkState() == Qt.CheckState.Checked
        ]

    def _refresh(self) -> None:
        n = len(self.selected())
        self.unload_button.setEnabled(n > 0)
        self.unload_button.setText(f"&Unload {n}" if n != 1 else "&Unload 1")
        everything = n == self.list.count()
        self.toggle_all.setText("Select &none" if everything else "Select &all")

    def _on_toggle_all_clicked(self) -> None:
        state = (
            Qt.CheckState.Unchecked
            if len(self.selected()) == self.list.count()
            else Qt.CheckState.Checked
        )
        for r in range(self.list.count()):
            self.list.item(r).setCheckState(state)

    def _on_accepted(self) -> None:
        ids = self.selected()
        if ids:
            self.unload_requested.emit(ids, self.dont_ask.isChecked())
            self.accept()
