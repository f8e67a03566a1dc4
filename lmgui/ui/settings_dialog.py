"""Settings: the server, its token, polling, the VRAM budget, unload confirmation.

Emits ``applied(SettingsValues)``; the app applies them at once (no restart). Invalid values
are explained beside their field and keep the OK button disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.client import normalize_base_url

__all__ = ["SettingsDialog", "SettingsValues", "url_problem"]


@dataclass(frozen=True)
class SettingsValues:
    server_url: str
    token: str | None
    """None: leave the stored token as it is; "" removes it."""
    poll_interval_ms: int
    vram_budget_gb: float
    confirm_unload: bool


def url_problem(text: str) -> str | None:
    """Why this is not a usable server address, or None."""
    if not text.strip():
        return "Enter the server's address, e.g. http://127.0.0.1:1234."
    parts = urlsplit(normalize_base_url(text))
    if parts.scheme not in ("http", "https"):
        return "Use an http:// or https:// address."
    if not parts.hostname:
        return "The address needs a host name or IP address."
    try:
        _ = parts.port
    except ValueError:
        return "The port must be a number from 1 to 65535."
    return None


class SettingsDialog(QDialog):
    applied = Signal(object)
    """SettingsValues"""

    def __init__(
        self,
        values: SettingsValues,
        *,
        has_token: bool,
        keyring_note: str | None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("lmgui settings")
        self.server = QLineEdit(values.server_url)
        self.server.setAccessibleName("Server address")
        self.server.setPlaceholderText("http://127.0.0.1:1234")
        self.server_error = QLabel()
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setAccessibleName("API token")
        self.token.setPlaceholderText(
            "a token is stored; type to replace it"
            if has_token
            else "sk-lm-… (only if the server requires one)"
        )
        self.clear_token = QCheckBox("Remove the stored token")
        self.clear_token.setVisible(has_token)
        self.token_note = QLabel(keyring_note or "The token is kept in your system keyring.")
        self.poll = QDoubleSpinBox()
        self.poll.setAccessibleName("Refresh interval")
        self.poll.setRange(0.5, 600)
        self.poll.setDecimals(1)
        self.poll.setSuffix(" s")
        self.poll.setValue(values.poll_interval_ms / 1000)
        self.budget = QDoubleSpinBox()
        self.budget.setAccessibleName("VRAM budget")
        self.budget.setRange(0, 4096)
        self.budget.setDecimals(1)
        self.budget.setSuffix(" GB")
        self.budget.setSpecialValueText("not set")
        self.budget.setValue(values.vram_budget_gb)
        self.budget.setToolTip("Your GPU's memory, for the fit check when NVML cannot measure it")
        self.confirm = QCheckBox("Ask before unloading")
        self.confirm.setChecked(values.confirm_unload)
        for label in (self.server_error, self.token_note):
            label.setTextFormat(Qt.TextFormat.PlainText)
            label.setWordWrap(True)
        self.server_error.setStyleSheet("color: #b00020;")

        form = QFormLayout()
        form.addRow("&Server:", self.server)
        form.addRow("", self.server_error)
        form.addRow("API &token:", self.token)
        form.addRow("", self.clear_token)
        form.addRow("", self.token_note)
        form.addRow("&Refresh every:", self.poll)
        form.addRow("&VRAM budget:", self.budget)
        form.addRow("", self.confirm)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self._on_accepted)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.server.textChanged.connect(self.validate)
        self.validate()

    def validate(self) -> bool:
        problem = url_problem(self.server.text())
        self.server_error.setText(problem or "")
        self.server_error.setVisible(bool(problem))
        ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok_button.setEnabled(problem is None)
        return problem is None

    def values(self) -> SettingsValues:
        token: str | None = self.token.text().strip() or None
        if self.clear_token.isChecked():
            token = ""
        return SettingsValues(
            server_url=normalize_base_url(self.server.text()),
            token=token,
            poll_interval_ms=int(self.poll.value() * 1000),
            vram_budget_gb=self.budget.value(),
            confirm_unload=self.confirm.isChecked(),
        )

    def _on_accepted(self) -> None:
        if self.validate():
            self.applied.emit(self.values())
            self.accept()
