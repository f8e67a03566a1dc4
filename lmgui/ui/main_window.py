"""The main window: every model and its loaded instances, VRAM, and the load/unload actions.

It reads state (the tree model, the poller's status, the ledger) and turns user intents into calls
on ``Actions`` and the poller; it never talks HTTP itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QByteArray, QModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QGuiApplication,
    QHideEvent,
    QIcon,
    QKeySequence,
    QPalette,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QSplitter,
    QToolBar,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.records import Instance, LoadResult, Model
from lmgui.core.actions import Actions, LoadRequest
from lmgui.core.format import UNREADABLE_TIP, capabilities, field_text, human_bytes, human_count
from lmgui.core.gpu import GpuMemory
from lmgui.core.messages import not_applied_sentence
from lmgui.core.poller import ConnectionState, Poller, PollStatus
from lmgui.core.settings import Settings
from lmgui.qtmodels.model_tree import Column, ModelFilterProxy, ModelTreeModel, Role, RowKind
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.icons import app_icon, state_icon
from lmgui.ui.load_dialog import LoadDialog, VramContext
from lmgui.ui.unload_dialog import UnloadDialog

__all__ = ["MainWindow"]

STATE_TEXT = {
    ConnectionState.CONNECTING: "Connecting…",
    ConnectionState.CONNECTED: "Connected",
    ConnectionState.SLOW: "Slow to answer",
    ConnectionState.TOKEN_NEEDED: "Token needed",
    ConnectionState.TOKEN_REJECTED: "Token rejected",
    ConnectionState.UNREACHABLE: "Unreachable",
    ConnectionState.UNSUPPORTED: "Not an LM Studio 0.4 server",
    ConnectionState.FAILING: "Server error",
}


COLUMN_WIDTHS = {
    Column.NAME: 250,
    Column.TYPE: 72,
    Column.PARAMS: 76,
    Column.QUANT: 70,
    Column.FORMAT: 52,
    Column.SIZE: 72,
    Column.CONTEXT: 62,
    Column.STATE: 150,
    Column.CAPS: 140,
    Column.PARALLEL: 58,
    Column.FLASH: 66,
    Column.KV_GPU: 72,
    Column.VRAM: 76,
    Column.TTL: 90,
}


class MainWindow(QMainWindow):
    closing = Signal()
    """The window closed for good: the app quits."""
    hidden_to_tray = Signal()
    """The close button hid the window; lmgui goes on in the tray."""
    visibility_changed = Signal(bool)
    quit_requested = Signal()
    settings_requested = Signal()

    def __init__(
        self,
        tree: ModelTreeModel,
        poller: Poller,
        actions: Actions,
        settings: Settings,
        *,
        server_url: Callable[[], str],
        gpus: Callable[[], list[GpuMemory] | None] = lambda: None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.tree = tree
        self.poller = poller
        self.runner = actions
        self.settings = settings
        self._server_url = server_url
        self._gpus = gpus
        self._load_dialogs: list[LoadDialog] = []
        self.setWindowTitle("lmgui")
        self.setWindowIcon(app_icon())

        self.proxy = ModelFilterProxy(self)
        self.proxy.setSourceModel(tree)
        self.view = QTreeView()
        self.view.setModel(self.proxy)
        self._normal_palette = QPalette(self.view.palette())
        self.view.setAccessibleName("Models and loaded instances")
        self.view.setSortingEnabled(True)
        # Loaded models first: what a monitor is for. Any header click changes it (and is kept).
        self.view.sortByColumn(Column.STATE, Qt.SortOrder.DescendingOrder)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._on_view_context_menu)
        self.view.doubleClicked.connect(self._on_view_double_clicked)
        self.view.header().setStretchLastSection(True)
        for col, width in COLUMN_WIDTHS.items():
            self.view.setColumnWidth(col, width)

        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)  # plain text by construction: nothing from a server renders
        self.details.setAccessibleName("Details of the selected row")
        self.details.setPlaceholderText("Select a model or an instance to see its details.")

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 5)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([520, 130])

        self.vram_bar = QProgressBar()
        self.vram_bar.setAccessibleName("Estimated VRAM in use")
        self.vram_bar.setTextVisible(True)
        self.vram_bar.setMinimumWidth(280)
        self.vram_label = QLabel()
        self.vram_label.setTextFormat(Qt.TextFormat.PlainText)
        self.gpu_label = QLabel()
        self.gpu_label.setTextFormat(Qt.TextFormat.PlainText)
        self.gpu_label.setAccessibleName("Measured GPU memory")
        vram_row = QHBoxLayout()
        vram_row.addWidget(QLabel("VRAM:"))
        vram_row.addWidget(self.vram_bar, 1)
        vram_row.addWidget(self.vram_label)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(vram_row)
        layout.addWidget(self.gpu_label)
        self.setCentralWidget(central)

        self._build_actions()
        self._build_status_bar()

        self.proxy.rowsInserted.connect(self._on_proxy_rows_inserted)
        self.proxy.modelReset.connect(self._on_proxy_model_reset)
        tree.dimmed_changed.connect(self._on_tree_dimmed_changed)
        self.view.selectionModel().selectionChanged.connect(self._on_selection_changed)
        poller.status_changed.connect(self._on_poller_status_changed)
        poller.poll_finished.connect(self._on_poller_poll_finished)
        actions.load_started.connect(self._on_actions_load_started)
        actions.load_finished.connect(self._on_actions_load_finished)
        actions.load_failed.connect(self._on_actions_load_failed)
        actions.unload_failed.connect(self._on_actions_unload_failed)
        actions.unload_finished.connect(self._on_actions_unload_finished)
        actions.ttl_expired.connect(self._on_actions_ttl_expired)
        actions.pending_changed.connect(self._on_actions_pending_changed)

        self._age_timer = QTimer(self)
        self._age_timer.setInterval(1000)
        self._age_timer.timeout.connect(self._update_age)
        self._age_timer.start()
        self.restore_layout()
        self._on_poller_status_changed(poller.status)
        self._update_selection_actions()
        self._update_vram()

    # ------------------------------------------------------------------ building

    def _action(
        self,
        text: str,
        slot: Callable[[], object],
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
        tip: str = "",
        icon: QIcon | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(icon)
        if shortcut is not None:
            action.setShortcut(
                shortcut if isinstance(shortcut, QKeySequence) else QKeySequence(shortcut)
            )
        action.setToolTip(tip or text.replace("&", "").rstrip("…"))
        action.setStatusTip(action.toolTip())
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.refresh_action = self._action(
            "&Refresh",
            self.poller.poke,
            QKeySequence.StandardKey.Refresh,
            "Refresh now (F5)",
            state_icon("refresh"),
        )
        self.refresh_action.setShortcuts([QKeySequence("F5"), QKeySequence("Ctrl+R")])
        self.load_action = self._action(
            "&Load…",
            self.open_load_dialog,
            "Ctrl+L",
            "Load the selected model (Ctrl+L)",
            state_icon("load"),
        )
        self.unload_action = self._action(
            "&Unload…",
            self.open_unload_dialog,
            QKeySequence.StandardKey.Delete,
            "Unload the selected instances (Del)",
            state_icon("unload"),
        )
        self.unload_all_action = self._action(
            "Unload &all instances of all models…",
            self.unload_everything,
            None,
            "Unload every loaded instance on the server",
        )
        self.settings_action = self._action(
            "&Settings…",
            self.settings_requested.emit,
            "Ctrl+,",
            "Settings (Ctrl+,)",
        )
        self.quit_action = self._action("&Quit", self.quit_requested.emit, "Ctrl+Q", "Quit lmgui")
        self.chat_action = self._action(
            "&Chat", self.open_chat, "Ctrl+T", "Chat with the selected model or instance (Ctrl+T)"
        )
        self.copy_key_action = self._action(
            "Copy model &key",
            self._copy_key,
            QKeySequence.StandardKey.Copy,
            "Copy the selected model's key, or the instance id (Ctrl+C)",
        )
        self.filter_box = QLineEdit()
        self.filter_box.setPlaceholderText("Filter by name, key or publisher")
        self.filter_box.setAccessibleName("Filter")
        self.filter_box.setToolTip("Filter by name, key or publisher (Ctrl+F)")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.setMaximumWidth(320)
        self.filter_box.textChanged.connect(self._on_filter_changed)
        self._action(
            "&Filter", self._focus_filter, QKeySequence.StandardKey.Find, "Filter (Ctrl+F)"
        )

        self.toggles: dict[str, QAction] = {}
        for name, text, tip in (
            ("loaded", "Loaded", "Show only loaded models"),
            ("llm", "LLM", "Show LLMs"),
            ("embedding", "Embedding", "Show embedding models"),
            ("vision", "Vision", "Show only vision models"),
            ("tools", "Tools", "Show only models trained for tool use"),
        ):
            act = QAction(text, self)
            act.setCheckable(True)
            act.setToolTip(tip)
            act.toggled.connect(self._on_filter_changed)
            self.toggles[name] = act

        bar = QToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for act in (self.refresh_action, self.load_action, self.unload_action):
            bar.addAction(act)
        bar.addSeparator()
        bar.addWidget(self.filter_box)
        for act in self.toggles.values():
            bar.addAction(act)
        self.addToolBar(bar)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        models_menu = menu.addMenu("&Models")
        for act in (self.refresh_action, self.load_action, self.unload_action):
            models_menu.addAction(act)
        models_menu.addAction(self.chat_action)
        models_menu.addSeparator()
        models_menu.addAction(self.unload_all_action)
        models_menu.addSeparator()
        models_menu.addAction(self.copy_key_action)
        self.view_menu = menu.addMenu("&View")
        for act in self.toggles.values():
            self.view_menu.addAction(act)

    def _build_status_bar(self) -> None:
        self.server_label = QLabel()
        self.server_label.setTextFormat(Qt.TextFormat.PlainText)
        self.state_label = QLabel()
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)
        self.state_label.setAccessibleName("Connection state")
        self.age_label = QLabel()
        self.age_label.setTextFormat(Qt.TextFormat.PlainText)
        bar = self.statusBar()
        bar.addPermanentWidget(self.server_label)
        bar.addPermanentWidget(self.state_label)
        bar.addPermanentWidget(self.age_label)

    # ------------------------------------------------------------------ chat

    def set_chat_pane(self, pane: ChatPane) -> None:
        self.chat_pane = pane
        self.chat_dock = QDockWidget("Chat", self)
        self.chat_dock.setObjectName("chat-dock")
        self.chat_dock.setWidget(pane)
        self.chat_dock.setAllowedAreas(
            Qt.DockWidgetArea.RightDockWidgetArea | Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.chat_dock)
        self.chat_dock.hide()
        pane.status.connect(lambda text: self.statusBar().showMessage(text, 15000))
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)  # the dock's place and visibility from last time
        self._chat_toggle = self.chat_dock.toggleViewAction()
        self._chat_toggle.setText("Chat &pane")
        self.view_menu.addSeparator()
        self.view_menu.addAction(self._chat_toggle)

    def open_chat(self) -> None:
        """A new thread with the selected instance (or model), in the chat pane."""
        pane = getattr(self, "chat_pane", None)
        if pane is None:
            return
        rows = self._rows()
        target: str | None = None
        if rows:
            rec = rows[0].data(Role.RECORD)
            if isinstance(rec, Instance):
                target = rec.id
            elif isinstance(rec, Model) and rec.is_llm:
                target = rec.instances[0].id if rec.instances else rec.key
        self.chat_dock.show()
        self.chat_dock.raise_()
        pane.refresh_models()
        pane._spawn(pane.new_thread(target))

    # ------------------------------------------------------------------ selection helpers

    def _rows(self) -> list[QModelIndex]:
        return [self.proxy.mapToSource(i) for i in self.view.selectionModel().selectedRows()]

    def selected_models(self) -> list[Model]:
        out: dict[str, Model] = {}
        for idx in self._rows():
            m = idx.data(Role.MODEL)
            if isinstance(m, Model):
                out[m.key] = m
        return list(out.values())

    def selected_instances(self) -> list[Instance]:
        """Selected instance rows, or every instance of the selected model rows."""
        out: dict[str, Instance] = {}
        for idx in self._rows():
            rec = idx.data(Role.RECORD)
            if isinstance(rec, Instance) and idx.data(Role.MARK) != "vanished":
                out[rec.id] = rec
            elif isinstance(rec, Model):
                out.update({i.id: i for i in rec.instances})
        return list(out.values())

    def select_instance(self, instance_id: str) -> None:
        idx = self.proxy.mapFromSource(self.tree.instance_index(instance_id))
        if idx.isValid():
            self.view.expand(idx.parent())
            self.view.setCurrentIndex(idx)

    def _update_selection_actions(self) -> None:
        models = self.selected_models()
        self.load_action.setEnabled(bool(models) or bool(self.tree.models()))
        self.unload_action.setEnabled(bool(self.selected_instances()))
        self.copy_key_action.setEnabled(bool(self._rows()))

    # ------------------------------------------------------------------ slots

    def _on_selection_changed(self) -> None:
        self._update_selection_actions()
        self._show_details()

    def _on_tree_changed(self) -> None:
        self._update_selection_actions()
        self._update_vram()
        self._show_details()

    def _on_tree_dimmed_changed(self, dimmed: bool) -> None:
        """Offline: the last known table stays visible, greyed (one palette change, no cells)."""
        palette = QPalette(self._normal_palette)
        if dimmed:
            grey = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
            palette.setColor(QPalette.ColorRole.Text, grey)
        self.view.setPalette(palette)

    def _on_proxy_model_reset(self) -> None:
        """The first fill (or a new server): show every loaded model's instances."""
        self._on_proxy_rows_inserted(QModelIndex(), 0, self.proxy.rowCount() - 1)

    def _on_proxy_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        """Show new instances: expand their model when instances appear under it."""
        if parent.isValid():
            self.view.expand(parent)
        else:
            for row in range(first, last + 1):
                idx = self.proxy.index(row, 0)
                if self.proxy.rowCount(idx):
                    self.view.expand(idx)

    def _show_details(self) -> None:
        rows = self._rows()
        if not rows:
            self.details.setPlainText("")
            return
        rec = rows[0].data(Role.RECORD)
        model = rows[0].data(Role.MODEL)
        lines: list[str] = []
        if isinstance(rec, Model):
            q = rec.quantization
            lines += [
                rec.display_name,
                f"key: {rec.key}",
                f"type: {rec.type}",
                f"publisher: {rec.publisher or '-'}",
                f"architecture: {rec.architecture or '-'}",
                f"format: {rec.format or '-'}",
                f"quantization: {(q.name if q else None) or '-'}"
                + (f" ({q.bits_per_weight:g} bits/weight)" if q and q.bits_per_weight else ""),
                f"parameters: {rec.params_string or '-'}",
                f"size on disk: {field_text(rec, 'size_bytes', human_bytes)}",
                f"max context: {field_text(rec, 'max_context_length', human_count)}",
                f"capabilities: {', '.join(capabilities(rec)) or '-'}",
            ]
            if rec.reasoning_options:
                lines.append(f"reasoning options: {', '.join(rec.reasoning_options)}")
            if rec.malformed:
                lines.append(f"? {UNREADABLE_TIP} ({', '.join(rec.malformed)})")
            if rec.variants:
                lines.append("variants: " + ", ".join(rec.variants))
            if rec.description:
                lines += ["", rec.description]
            lines += ["", f"loaded instances: {len(rec.instances)}"]
            lines += [f"  {i.id}" for i in rec.instances]
        elif isinstance(rec, Instance) and isinstance(model, Model):
            lines += [f"instance: {rec.id}", f"model: {model.key}", "", "config:"]
            lines += [f"  {k}: {v}" for k, v in sorted(rec.config.items())]
        self.details.setPlainText("\n".join(lines))

    def _on_view_double_clicked(self, index: QModelIndex) -> None:
        if self.proxy.mapToSource(index).siblingAtColumn(0).data(Role.KIND) == RowKind.MODEL:
            self.open_load_dialog()

    def _on_view_context_menu(self, pos: QPoint) -> None:
        menu = QMenu(self)
        menu.addAction(self.load_action)
        menu.addAction(self.unload_action)
        menu.addAction(self.chat_action)
        menu.addSeparator()
        menu.addAction(self.copy_key_action)
        menu.addAction(self.refresh_action)
        menu.popup(self.view.viewport().mapToGlobal(pos))

    def _copy_key(self) -> None:
        rows = self._rows()
        if rows:
            rec = rows[0].data(Role.RECORD)
            text = rec.key if isinstance(rec, Model) else rec.id
            QGuiApplication.clipboard().setText(text)
            self.statusBar().showMessage(f"Copied {text}", 3000)

    def _focus_filter(self) -> None:
        self.filter_box.setFocus()
        self.filter_box.selectAll()

    def _on_filter_changed(self) -> None:
        self.proxy.set_text(self.filter_box.text())
        t = self.toggles
        types = {n for n in ("llm", "embedding") if t[n].isChecked()}
        self.proxy.set_toggles(
            loaded_only=t["loaded"].isChecked(),
            types=types,
            vision_only=t["vision"].isChecked(),
            tools_only=t["tools"].isChecked(),
        )

    def _on_poller_status_changed(self, status: PollStatus) -> None:
        self.server_label.setText(self._server_url())
        text = STATE_TEXT[status.state]
        if status.state is ConnectionState.UNREACHABLE:
            text = f"Unreachable since {time.strftime('%H:%M', time.localtime(status.since))}"
        self.state_label.setText(text)
        self.state_label.setToolTip(status.message or text)
        self.tree.set_dimmed(
            not status.state.online and status.state is not ConnectionState.CONNECTING
        )
        if status.message:
            self.statusBar().showMessage(status.message, 15000)
        self._update_age()

    def _on_poller_poll_finished(self) -> None:
        # Once per poll, not once per changed cell: the tree may change in many places at once.
        self._update_age()
        self._on_tree_changed()

    def _update_age(self) -> None:
        last = self.poller.status.last_success
        if last is None:
            self.age_label.setText("not refreshed yet")
            return
        age = max(0, int(time.time() - last))
        self.age_label.setText("refreshed just now" if age < 2 else f"refreshed {age} s ago")

    # ------------------------------------------------------------------ VRAM

    def vram_context(self, gpus: list[GpuMemory] | None = None) -> VramContext:
        used = self.tree.total_vram()
        gpus = gpus if gpus is not None else self._gpus()
        if gpus:
            total = sum(g.total_bytes for g in gpus)
            return VramContext(total, sum(g.used_bytes for g in gpus), "nvml")
        budget = self.settings.vram_budget_gb
        if budget > 0:
            return VramContext(int(budget * 1e9), used, "budget")
        return VramContext(None, used, "none")

    def _update_vram(self) -> None:
        used = self.tree.total_vram()
        budget = self.settings.vram_budget_gb
        gpus = self._gpus()
        total = sum(g.total_bytes for g in gpus) if gpus else int(budget * 1e9) if budget else 0
        self.vram_bar.setRange(0, 1000)
        self.vram_bar.setValue(min(1000, int(used / total * 1000)) if total else 0)
        self.vram_bar.setFormat(
            f"{human_bytes(used)} estimated"
            + (f" of {human_bytes(total)}" if total else " (no VRAM budget set)")
        )
        self.vram_label.setText(
            "estimate; measured below"
            if gpus
            else "estimate (set a budget in Settings)"
            if not budget
            else "estimate, against your VRAM budget"
        )
        if gpus:
            self.gpu_label.setText(
                "Measured (NVML): "
                + "; ".join(
                    f"{g.name}: {human_bytes(g.used_bytes)} of {human_bytes(g.total_bytes)} used"
                    for g in gpus
                )
            )
            self.gpu_label.show()
        else:
            self.gpu_label.hide()
        for dialog in self._load_dialogs:
            dialog.set_vram(self.vram_context(gpus))
            dialog.set_models(self.tree.models())

    # ------------------------------------------------------------------ load

    def open_load_dialog(self, model_key: str | None = None) -> LoadDialog | None:
        models = self.tree.models()
        if not models:
            self.statusBar().showMessage(
                "No models to load yet: the server has not answered.", 5000
            )
            return None
        selected = self.selected_models()
        key = model_key or (selected[0].key if selected else models[0].key)
        llms_first = sorted(models, key=lambda m: (m.type != "llm", m.display_name.casefold()))
        dialog = LoadDialog(
            llms_first,
            key,
            self.vram_context(),
            defaults=self.settings.load_defaults(),
            parent=self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.load_requested.connect(self._on_dialog_load_requested)
        dialog.use_loaded.connect(self.select_instance)
        dialog.finished.connect(lambda _=0, d=dialog: self._forget_dialog(d))
        self._load_dialogs.append(dialog)
        dialog.show()
        return dialog

    def _forget_dialog(self, dialog: LoadDialog) -> None:
        if dialog in self._load_dialogs:
            self._load_dialogs.remove(dialog)

    def _on_dialog_load_requested(self, request: LoadRequest) -> None:
        self.settings.remember_load(request)
        self.runner.load(request)

    def _dialogs_for(self, key: str) -> list[LoadDialog]:
        return [d for d in self._load_dialogs if d.model.key == key]

    def _on_actions_load_started(self, request: LoadRequest) -> None:
        for d in self._dialogs_for(request.model_key):
            d.show_started(request)
        self.statusBar().showMessage(f"Loading {request.model_key}…")

    def _on_actions_load_finished(self, request: LoadRequest, result: LoadResult) -> None:
        for d in self._dialogs_for(request.model_key):
            d.show_finished(result)
        msg = f"Loaded {request.model_key} as {result.instance_id}"
        if result.load_time_seconds:
            msg += f" in {result.load_time_seconds:.1f} s"
        msg += "."
        if result.not_applied:
            msg += " " + not_applied_sentence(result, ttl_enforced=True)
        self.statusBar().showMessage(msg, 15000)
        self.tree.set_instance_info(self.runner.ledger.infos())

    def _on_actions_load_failed(self, request: LoadRequest, message: str) -> None:
        dialogs = self._dialogs_for(request.model_key)
        for d in dialogs:
            d.show_failed(message)
        self.statusBar().showMessage(message, 20000)
        if not dialogs:
            self._error(message)

    # ------------------------------------------------------------------ unload

    def open_unload_dialog(self) -> UnloadDialog | None:
        instances = self.selected_instances()
        if not instances:
            return None
        return self._unload(instances, {i.id for i in instances})

    def unload_everything(self) -> UnloadDialog | None:
        everything = [i for m in self.tree.models() for i in m.instances]
        if not everything:
            self.statusBar().showMessage("Nothing is loaded.", 4000)
            return None
        return self._unload(everything, {i.id for i in everything}, "Unload all instances")

    def _unload(
        self, instances: list[Instance], chosen: set[str], title: str = "Unload instances"
    ) -> UnloadDialog | None:
        if not self.settings.confirm_unload:
            self.runner.unload(sorted(chosen))
            return None
        model_keys = {i.model_key for i in instances}
        pool = [i for m in self.tree.models() if m.key in model_keys for i in m.instances]
        dialog = UnloadDialog(
            pool if title == "Unload instances" else instances,
            preselected=chosen,
            title=title,
            parent=self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.unload_requested.connect(self._on_dialog_unload_requested)
        dialog.show()
        return dialog

    def _on_dialog_unload_requested(self, ids: list[str], dont_ask: bool) -> None:
        if dont_ask:
            self.settings.confirm_unload = False
        self.runner.unload(ids)
        self.statusBar().showMessage(f"Unloading {', '.join(ids)}…")

    def _on_actions_unload_finished(self, instance_id: str) -> None:
        self.statusBar().showMessage(f"Unloaded {instance_id}.", 8000)
        self.tree.set_instance_info(self.runner.ledger.infos())

    def _on_actions_unload_failed(self, instance_id: str, message: str) -> None:
        self.statusBar().showMessage(message, 20000)
        self._error(message)

    def _on_actions_ttl_expired(self, instance_id: str) -> None:
        self.statusBar().showMessage(
            f"Unloading {instance_id}: idle longer than its TTL (enforced by lmgui).", 10000
        )

    def _on_actions_pending_changed(self) -> None:
        self.tree.set_pending(self.runner.pending())

    def _error(self, message: str) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Warning, "lmgui", message, QMessageBox.StandardButton.Ok, self
        )
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ------------------------------------------------------------------ layout persistence

    def save_layout(self) -> None:
        s = self.settings
        s.set_value("window/geometry", self.saveGeometry())
        s.set_value("window/state", self.saveState())
        s.set_value("window/splitter", self.splitter.saveState())
        s.set_value("window/header", self.view.header().saveState())
        s.set_value("window/filter", self.filter_box.text())
        s.set_value("window/toggles", ",".join(n for n, a in self.toggles.items() if a.isChecked()))
        s.sync()

    def restore_layout(self) -> None:
        s = self.settings
        for key, restore in (
            ("window/geometry", self.restoreGeometry),
            ("window/state", self.restoreState),
            ("window/splitter", self.splitter.restoreState),
            ("window/header", self.view.header().restoreState),
        ):
            data = s.value(key)
            if isinstance(data, QByteArray):
                restore(data)
        if not isinstance(s.value("window/geometry"), QByteArray):
            self.resize(1400, 720)
        self.filter_box.setText(str(s.value("window/filter", "") or ""))
        on = set(str(s.value("window/toggles", "") or "").split(","))
        for name, act in self.toggles.items():
            act.setChecked(name in on)
        # restoreState of the header brings back the sort column; apply it to the proxy too.
        header = self.view.header()
        self.view.sortByColumn(header.sortIndicatorSection(), header.sortIndicatorOrder())

    hide_on_close = False
    """Set by the app where a system tray exists and the user wants closing to hide."""

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        if self.hide_on_close:
            event.ignore()
            self.hide()
            self.hidden_to_tray.emit()
            return
        self.closing.emit()
        super().closeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.visibility_changed.emit(True)

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.visibility_changed.emit(False)
