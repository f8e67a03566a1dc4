"""The unload dialog: pick one, several or all instances (ids as the server gives them).

An instance the server reports answering right now is named in a warning while it is ticked:
unloading it cuts that answer off for whoever asked."""

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
from lmgui.core.format import busy_unload_question, human_count, status_text

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
        offer_dont_ask: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        """``offer_dont_ask``: False where the user already turned confirmation off and the
        dialog asks only because an instance is busy."""
        super().__init__(parent)
        self.setWindowTitle(title)
        self._instances = {i.id: i for i in instances}
        chosen = preselected if preselected is not None else {i.id for i in instances}
        intro = QLabel("Unload these instances? The memory they hold is freed.")
        intro.setTextFormat(Qt.TextFormat.PlainText)
        self.busy_warning = QLabel()
        self.busy_warning.setTextFormat(Qt.TextFormat.PlainText)  # it quotes the server's ids
        self.busy_warning.setWordWrap(True)
        self.busy_warning.setAccessibleName("Instances answering right now")
        bold = self.busy_warning.font()
        bold.setBold(True)
        self.busy_warning.setFont(bold)
        self.list = QListWidget()
        self.list.setAccessibleName("Instances to unload")
        for inst in instances:
            ctx = f"  (context {human_count(inst.context_length)})" if inst.context_length else ""
            doing = f"  ● {status_text(inst.status, inst.queued)}" if inst.busy else ""
            item = QListWidgetItem(f"{inst.id}{ctx}{doing}")  # QListWidgetItem text is plain
            item.setData(Qt.ItemDataRole.UserRole, inst.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if inst.id in chosen else Qt.CheckState.Unchecked
            )
            self.list.addItem(item)
        self.toggle_all = QPushButton("Select &all")
        self.toggle_all.clicked.connect(self._on_toggle_all_clicked)
        self.dont_ask = QCheckBox("&Don't ask again (unload at once from now on)")
        if not offer_dont_ask:
            self.dont_ask.hide()  # never show() it here: without a parent yet, it is a window
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
        layout.addWidget(self.busy_warning)
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

    def busy_question(self) -> str | None:
        """The warning for the ticked instances that are answering now, or None."""
        return busy_unload_question([self._instances[i] for i in self.selected()])

    def _refresh(self) -> None:
        question = self.busy_question()
        self.busy_warning.setText(question or "")
        self.busy_warning.setVisible(question is not None)
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
