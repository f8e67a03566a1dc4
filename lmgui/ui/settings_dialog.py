"""Settings (Ctrl+,): server profiles, refresh, notifications, window and tray, VRAM, loading.

Emits ``applied(SettingsValues)``; the app applies them at once (no restart). Invalid values are
explained beside their field and keep the OK button disabled.

The server tab edits the fleet: every profile's name, address, whether lmgui watches it, and its
token. One profile is shown at a time; what was typed for the others is kept in drafts until the
dialog closes, so a user can give the second server a token and leave the first alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.auth import InvalidTokenError, clean_token
from lmgui.api.client import check_base_url, normalize_base_url
from lmgui.api.errors import InvalidServerUrl
from lmgui.core.actions import LoadRequest
from lmgui.core.notify import KINDS
from lmgui.core.profiles import Profile
from lmgui.core.settings import SettingsValues
from lmgui.ui.widgets import ERROR, WARNING, plain_label

__all__ = ["SettingsDialog", "SettingsValues", "url_problem"]


def url_problem(text: str) -> str | None:
    """Why this is not a usable server address, or None."""
    if not text.strip():
        return "Enter the server's address, e.g. http://127.0.0.1:1234."
    parts = urlsplit(normalize_base_url(text))
    if parts.scheme not in ("http", "https"):
        return "Use an http:// or https:// address."
    try:
        _ = parts.port
    except ValueError:
        return "The port must be a number from 1 to 65535."
    try:
        check_base_url(text)
    except InvalidServerUrl as exc:
        return str(exc)
    return None


def token_problem(text: str) -> str | None:
    """Why this token cannot be used (never repeating it), or None."""
    try:
        clean_token(text)
    except InvalidTokenError as exc:
        return str(exc)
    return None


_TOKEN_HINTS: dict[bool | None, str] = {
    True: "a token is stored; type to replace it",
    False: "sk-lm-… (only if the server requires one)",
    None: "type a token to store one for this server",
}
"""The token field's placeholder: a token stored for the shown server, none, or not known (a
switched-off server whose keyring entry lmgui never read)."""

NOTHING_WATCHED = "Watch at least one server, or lmgui has nothing to show."


@dataclass
class _Draft:
    """One profile as edited in this dialog session (the fields as typed)."""

    name: str
    url: str
    enabled: bool
    token: str = field(default="", repr=False)
    remove_token: bool = False

    def label(self, index: int) -> str:
        return self.name.strip() or f"Server {index + 1}"


def _seconds(value_ms: int, name: str, low: float = 0.5) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setAccessibleName(name)
    spin.setRange(low, 600)
    spin.setDecimals(1)
    spin.setSuffix(" s")
    spin.setValue(value_ms / 1000)
    return spin


class SettingsDialog(QDialog):
    applied = Signal(object)
    """SettingsValues"""

    def __init__(
        self,
        values: SettingsValues,
        *,
        has_token: Callable[[str], bool | None],
        keyring_note: str | None,
        tray_available: bool = True,
        autostart_supported: bool = True,
        load_defaults: dict[str, LoadRequest] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("lmgui settings")
        self._drafts = [
            _Draft(p.name, p.url, p.enabled)
            for p in (values.profiles or (Profile("Local", values.server_url),))
        ]
        self._has_token = has_token
        tabs = QTabWidget()

        # --- server profiles
        self.profile_box = QComboBox()
        self.profile_box.setAccessibleName("Server profile")
        for i, draft in enumerate(self._drafts):
            self.profile_box.addItem(_item_text(draft, i))
        active = next((i for i, d in enumerate(self._drafts) if d.url == values.server_url), 0)
        self.profile_box.setCurrentIndex(active)
        self.add_profile = QPushButton("&Add")
        self.remove_profile = QPushButton("&Remove")
        self.profile_name = QLineEdit()
        self.profile_name.setAccessibleName("Profile name")
        self.server = QLineEdit()
        self.server.setAccessibleName("Server address")
        self.server.setPlaceholderText("http://127.0.0.1:1234")
        self.server_error = plain_label(colour=ERROR)
        self.watch = QCheckBox("&Watch this server")
        self.watch.setAccessibleName("Watch this server")
        self.watch.setToolTip("lmgui polls every watched server side by side")
        self.fleet_error = plain_label(colour=ERROR, hidden=True)
        """A problem with the profiles as a whole, or with one not shown."""
        self.token_error = plain_label(colour=ERROR)
        self.token_error.setVisible(False)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setAccessibleName("API token")
        self.clear_token = QCheckBox("Remove the stored token")
        self.clear_token.setAccessibleName("Remove the stored token")
        self.token_note = plain_label(keyring_note or "Tokens are kept in your system keyring.")
        row = QHBoxLayout()
        row.addWidget(self.profile_box, 1)
        row.addWidget(self.add_profile)
        row.addWidget(self.remove_profile)
        server_form = QFormLayout()
        profile_label = QLabel("&Profile:")
        profile_label.setBuddy(self.profile_box)  # a row of widgets gets no buddy by itself
        server_form.addRow(profile_label, row)
        server_form.addRow("", self.fleet_error)
        server_form.addRow("&Name:", self.profile_name)
        server_form.addRow("&Server:", self.server)
        server_form.addRow("", self.server_error)
        server_form.addRow("", self.watch)
        server_form.addRow("API &token:", self.token)
        server_form.addRow("", self.token_error)
        server_form.addRow("", self.clear_token)
        server_form.addRow("", self.token_note)
        server_tab = QWidget()
        server_tab.setLayout(server_form)
        tabs.addTab(server_tab, "Server")

        # --- refresh
        self.poll = _seconds(values.poll_interval_ms, "Refresh interval, window open")
        self.hidden_poll = _seconds(values.hidden_poll_interval_ms, "Refresh interval, in the tray")
        poll_form = QFormLayout()
        poll_form.addRow("&Window open, refresh every:", self.poll)
        poll_form.addRow("&Only in the tray, every:", self.hidden_poll)
        poll_form.addRow(
            "", plain_label("While a load is in progress lmgui refreshes every 0.5 s.")
        )
        poll_tab = QWidget()
        poll_tab.setLayout(poll_form)
        tabs.addTab(poll_tab, "Refresh")

        # --- notifications
        notify_tab = QWidget()
        notify_layout = QVBoxLayout(notify_tab)
        self.notify_boxes: dict[str, QCheckBox] = {}
        for kind, text in KINDS.items():
            box = QCheckBox(text)
            box.setChecked(values.notify.get(kind, True))
            self.notify_boxes[kind] = box
            notify_layout.addWidget(box)
        notify_layout.addStretch(1)
        tabs.addTab(notify_tab, "Notifications")

        # --- window and tray
        self.close_to_tray = QCheckBox("Closing the window keeps lmgui in the &tray")
        self.close_to_tray.setChecked(values.close_to_tray)
        self.start_minimized = QCheckBox("Start &minimized (in the tray)")
        self.start_minimized.setChecked(values.start_minimized)
        self.start_on_login = QCheckBox("Start lmgui when I &log in")
        self.start_on_login.setChecked(values.start_on_login)
        self.start_on_login.setEnabled(autostart_supported)
        self.demo_traffic = QCheckBox("In the &demo, simulate other apps using the server")
        self.demo_traffic.setToolTip(
            "lmgui --demo: another app chats with random models now and then, so JIT loads, "
            "busy instances and TTL resets show up"
        )
        self.demo_traffic.setChecked(values.demo_traffic)
        window_tab = QWidget()
        window_layout = QVBoxLayout(window_tab)
        for w in (self.close_to_tray, self.start_minimized, self.start_on_login, self.demo_traffic):
            window_layout.addWidget(w)
        if not tray_available:
            window_layout.addWidget(
                plain_label(
                    "No system tray was found: closing the window quits lmgui, and it starts "
                    "minimized rather than hidden.",
                    WARNING,
                )
            )
        if not autostart_supported:
            window_layout.addWidget(
                plain_label("Starting on login is not supported here.", WARNING)
            )
        window_layout.addStretch(1)
        tabs.addTab(window_tab, "Window")

        # --- memory
        self.budget = QDoubleSpinBox()
        self.budget.setAccessibleName("VRAM budget")
        self.budget.setRange(0, 4096)
        self.budget.setDecimals(1)
        self.budget.setSuffix(" GB")
        self.budget.setSpecialValueText("not set")
        self.budget.setValue(values.vram_budget_gb)
        memory_form = QFormLayout()
        memory_form.addRow("&VRAM budget:", self.budget)
        memory_form.addRow(
            "", plain_label("Your GPU's memory, for the fit check when NVML cannot measure it.")
        )
        self.make_way = QCheckBox("&Make way for other GPU programs")
        self.make_way.setToolTip(
            "When another program (a game, Blender, a training run) takes the GPU's memory, "
            'save what is loaded as "before making way" and unload idle instances, least '
            "recently used first (never a busy or pinned one); bring them back afterwards"
        )
        self.make_way.setChecked(values.make_way)
        self.make_way_margin = QDoubleSpinBox()
        self.make_way_margin.setAccessibleName("Free VRAM to keep for other programs")
        self.make_way_margin.setRange(0.5, 256)
        self.make_way_margin.setDecimals(1)
        self.make_way_margin.setSuffix(" GB")
        self.make_way_margin.setValue(values.make_way_margin_gb)
        self.make_way_auto = QCheckBox("Bring the models back on their own when it is done")
        self.make_way_auto.setToolTip("Otherwise the tray offers Restore")
        self.make_way_auto.setChecked(values.make_way_auto_restore)
        memory_form.addRow("", self.make_way)
        memory_form.addRow("Keep &free for them:", self.make_way_margin)
        memory_form.addRow("", self.make_way_auto)
        memory_form.addRow(
            "",
            plain_label(
                "For a server on this machine with an NVIDIA GPU (pip install 'lmgui[nvidia]')."
            ),
        )
        self.make_way.toggled.connect(self._on_make_way_toggled)
        self._on_make_way_toggled(values.make_way)
        memory_tab = QWidget()
        memory_tab.setLayout(memory_form)
        tabs.addTab(memory_tab, "Memory")

        # --- loading
        self.confirm = QCheckBox("Ask before &unloading")
        self.confirm.setChecked(values.confirm_unload)
        self.defaults = QListWidget()
        self.defaults.setAccessibleName("Saved load settings per model")
        for key, req in sorted((load_defaults or {}).items()):
            item = QListWidgetItem(f"{key}: {_describe(req)}")
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if key in values.favourites else Qt.CheckState.Unchecked
            )
            item.setToolTip("Ticked: a favourite, listed first in the tray's Load menu")
            self.defaults.addItem(item)
        self.forget = QPushButton("&Forget the selected model's settings")
        self._forgotten: list[str] = []
        loading_tab = QWidget()
        loading_layout = QVBoxLayout(loading_tab)
        loading_layout.addWidget(self.confirm)
        loading_layout.addWidget(
            plain_label(
                "Settings last used for each model: they prefill the load dialog and are used by "
                "the tray's Load menu. Tick a model to make it a favourite."
            )
        )
        loading_layout.addWidget(self.defaults, 1)
        loading_layout.addWidget(self.forget)
        tabs.addTab(loading_tab, "Loading")

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self._on_accepted)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(self.buttons)
        self.tabs = tabs

        self._shown_profile = active
        self._show(active)
        self.server.textChanged.connect(self.validate)
        self.token.textChanged.connect(self.validate)
        self.clear_token.toggled.connect(self._on_clear_token_toggled)
        self.watch.toggled.connect(self._on_watch_toggled)
        self.profile_box.currentIndexChanged.connect(self._on_profile_changed)
        self.profile_name.textChanged.connect(self._on_profile_name_changed)
        self.add_profile.clicked.connect(self._on_add_profile)
        self.remove_profile.clicked.connect(self._on_remove_profile)
        self.forget.clicked.connect(self._on_forget_clicked)
        self.validate()

    # ------------------------------------------------------------------ profiles

    def _keep_fields(self) -> None:
        """Copy the shown profile's fields into its draft (before another is shown)."""
        i = self._shown_profile
        if 0 <= i < len(self._drafts):
            d = self._drafts[i]
            d.name = self.profile_name.text()
            d.url = self.server.text()
            d.enabled = self.watch.isChecked()
            d.token = self.token.text()
            d.remove_token = self.clear_token.isChecked()

    def _show(self, index: int) -> None:
        """Fill the fields from draft ``index``; no field signal fires half way (it would copy a
        mix of two profiles into one draft)."""
        self._shown_profile = index
        if not 0 <= index < len(self._drafts):
            return
        d = self._drafts[index]
        fields = (self.profile_name, self.server, self.watch, self.token, self.clear_token)
        for w in fields:
            w.blockSignals(True)
        try:
            self.profile_name.setText(d.name)
            self.server.setText(d.url)
            self.watch.setChecked(d.enabled)
            self.token.setText(d.token)
            self.clear_token.setChecked(d.remove_token)
        finally:
            for w in fields:
                w.blockSignals(False)
        self.token.setEnabled(not d.remove_token)

    def _stored_token(self, url_text: str) -> bool | None:
        """Whether a token is stored for this address (None: not known); False for an address
        that is not usable (nothing can be stored under it)."""
        if url_problem(url_text) is not None:
            return False
        return self._has_token(normalize_base_url(url_text))

    def _refresh_token_hint(self) -> None:
        stored = self._stored_token(self.server.text())
        self.token.setPlaceholderText(_TOKEN_HINTS[stored])
        if stored is False and self.clear_token.isChecked():
            # The address changed to one without a stored token: nothing left to remove.
            self.clear_token.blockSignals(True)
            self.clear_token.setChecked(False)
            self.clear_token.blockSignals(False)
            self.token.setEnabled(True)
        self.clear_token.setVisible(stored is not False)

    def _on_profile_changed(self, index: int) -> None:
        self._keep_fields()
        self._show(index)
        self.validate()

    def _on_profile_name_changed(self, _text: str) -> None:
        self._keep_fields()
        self._update_item_text()

    def _on_watch_toggled(self, _on: bool) -> None:
        self._keep_fields()
        self._update_item_text()
        self.validate()

    def _on_clear_token_toggled(self, on: bool) -> None:
        self.token.setEnabled(not on)
        self.validate()

    def _update_item_text(self) -> None:
        i = self._shown_profile
        if 0 <= i < len(self._drafts):
            self.profile_box.setItemText(i, _item_text(self._drafts[i], i))

    def _on_add_profile(self) -> None:
        self._keep_fields()
        self._drafts.append(_Draft(f"Server {len(self._drafts) + 1}", "", enabled=True))
        self.profile_box.addItem(_item_text(self._drafts[-1], len(self._drafts) - 1))
        self.profile_box.setCurrentIndex(len(self._drafts) - 1)
        self.server.setFocus()

    def _on_remove_profile(self) -> None:
        if len(self._drafts) <= 1:
            return
        index = self.profile_box.currentIndex()
        del self._drafts[index]
        self.profile_box.blockSignals(True)
        try:
            self.profile_box.removeItem(index)
        finally:
            self.profile_box.blockSignals(False)
        self._show(self.profile_box.currentIndex())
        self.validate()

    def _on_forget_clicked(self) -> None:
        for item in self.defaults.selectedItems():
            self._forgotten.append(str(item.data(Qt.ItemDataRole.UserRole)))
            self.defaults.takeItem(self.defaults.row(item))

    # ------------------------------------------------------------------ result

    def _on_make_way_toggled(self, on: bool) -> None:
        self.make_way_margin.setEnabled(on)
        self.make_way_auto.setEnabled(on)

    def validate(self) -> bool:
        self._refresh_token_hint()
        self._keep_fields()
        problem = url_problem(self.server.text())
        self.server_error.setText(problem or "")
        self.server_error.setVisible(bool(problem))
        removing = self.clear_token.isChecked()
        bad_token = None if removing else token_problem(self.token.text())
        self.token_error.setText(bad_token or "")
        self.token_error.setVisible(bool(bad_token))
        fleet = self._fleet_problem()
        self.fleet_error.setText(fleet or "")
        self.fleet_error.setVisible(bool(fleet))
        ok = problem is None and bad_token is None and fleet is None
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
        self.remove_profile.setEnabled(len(self._drafts) > 1)
        return ok

    def _fleet_problem(self) -> str | None:
        """What is wrong with the profiles as a whole, or with one not shown (the shown one's
        problems are said beside its fields)."""
        if not any(d.enabled for d in self._drafts):
            return NOTHING_WATCHED
        for i, d in enumerate(self._drafts):
            if i == self._shown_profile:
                continue
            problem = url_problem(d.url) or (None if d.remove_token else token_problem(d.token))
            if problem:
                return f"{d.label(i)}: {problem}"
        seen: dict[str, str] = {}
        for i, d in enumerate(self._drafts):
            if url_problem(d.url) is not None:
                continue
            url = normalize_base_url(d.url)
            if url in seen:
                return f"{seen[url]} and {d.label(i)} are the same server: keep one of them."
            seen[url] = d.label(i)
        return None

    def _token_change(self, d: _Draft) -> str | None:
        """The draft's token change: None for none, "" to remove the stored token."""
        if d.remove_token and self._stored_token(d.url) is not False:
            return ""
        return clean_token(d.token)

    def values(self) -> SettingsValues:
        self._keep_fields()
        profiles: list[Profile] = []
        changes: dict[str, str] = {}
        for i, d in enumerate(self._drafts):
            if not d.url.strip():
                continue
            url = normalize_base_url(d.url)
            profiles.append(Profile(d.label(i), url, d.enabled))
            change = self._token_change(d)
            if change is not None:
                changes.setdefault(url, change)
        server_url = normalize_base_url(self.server.text())
        favourites = tuple(
            str(self.defaults.item(r).data(Qt.ItemDataRole.UserRole))
            for r in range(self.defaults.count())
            if self.defaults.item(r).checkState() == Qt.CheckState.Checked
        )
        return SettingsValues(
            server_url=server_url,
            token=changes.get(server_url),
            poll_interval_ms=int(self.poll.value() * 1000),
            vram_budget_gb=self.budget.value(),
            confirm_unload=self.confirm.isChecked(),
            hidden_poll_interval_ms=int(self.hidden_poll.value() * 1000),
            profiles=tuple(profiles),
            close_to_tray=self.close_to_tray.isChecked(),
            start_minimized=self.start_minimized.isChecked(),
            demo_traffic=self.demo_traffic.isChecked(),
            make_way=self.make_way.isChecked(),
            make_way_margin_gb=self.make_way_margin.value(),
            make_way_auto_restore=self.make_way_auto.isChecked(),
            start_on_login=self.start_on_login.isChecked(),
            notify={k: b.isChecked() for k, b in self.notify_boxes.items()},
            favourites=favourites,
            forget_defaults=tuple(self._forgotten),
            token_changes=tuple(changes.items()),
        )

    def _on_accepted(self) -> None:
        if self.validate():
            self.applied.emit(self.values())
            self.accept()


def _item_text(d: _Draft, index: int) -> str:
    """The profile's line in the profile list; a server not watched says so."""
    return d.label(index) if d.enabled else f"{d.label(index)} (not watched)"


def _describe(req: LoadRequest) -> str:
    bits = []
    if req.context_length:
        bits.append(f"context {req.context_length}")
    if req.gpu is not None:
        bits.append(f"GPU {req.gpu}")
    if req.ttl_seconds:
        bits.append(f"TTL {req.ttl_seconds // 60} min")
    if req.parallel:
        bits.append(f"parallel {req.parallel}")
    return ", ".join(bits) or "server defaults"
