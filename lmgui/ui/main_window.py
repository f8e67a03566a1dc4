"""The main window: every model and its loaded instances, their details, the VRAM bar and the
connection's status; it keeps its layout and hides to the tray on close.

With several servers, each has a row holding its models; the selected row's server is the
window's current one (``server_focused``): its status, VRAM bar and the default of the load
dialog follow it, and every row action goes to the row's own server. The status bar also shows
the fleet's totals.

It reads state (the tree model, the poller's status) and turns user intents into calls on the
poller and, through ``DialogWiring``, on ``Actions``; it never talks HTTP itself. Its parts:
``WindowActions`` (toolbar, menus, shortcuts), ``VramBar`` and ``DialogWiring`` (load/unload).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QByteArray, QModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QHideEvent, QPalette, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QSplitter,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.records import Instance, Model, ServerHardware
from lmgui.core.actions import Actions
from lmgui.core.format import (
    UNREADABLE_TIP,
    capabilities,
    field_text,
    gpu_offload_text,
    human_bytes,
    human_count,
    human_duration,
    local_time,
    status_words,
    waiting_requests,
)
from lmgui.core.gpu import GpuMemory
from lmgui.core.instances import InstanceInfo
from lmgui.core.messages import quantization_label, state_text
from lmgui.core.poller import ConnectionState, Poller, PollStatus
from lmgui.core.settings import Settings
from lmgui.qtmodels.model_tree import (
    Column,
    ModelFilterProxy,
    ModelTreeModel,
    Role,
    RowKind,
    ServerRecord,
)
from lmgui.ui.chat_pane import ChatPane
from lmgui.ui.dialog_wiring import DialogWiring, UnloadScope
from lmgui.ui.icons import app_icon
from lmgui.ui.load_dialog import LoadDialog
from lmgui.ui.unload_dialog import UnloadDialog
from lmgui.ui.vram_bar import VramBar
from lmgui.ui.window_actions import WindowActions

__all__ = ["MainWindow"]


COLUMN_WIDTHS = {
    Column.NAME: 220,
    Column.TYPE: 72,
    Column.PARAMS: 76,
    Column.QUANT: 70,
    Column.FORMAT: 52,
    Column.SIZE: 72,
    Column.CONTEXT: 62,
    Column.STATE: 106,
    Column.CAPS: 120,
    Column.PARALLEL: 58,
    Column.FLASH: 66,
    Column.KV_GPU: 72,
    Column.VRAM: 76,
    Column.TTL: 84,
    Column.GPU: 52,
    Column.STATUS: 110,
}


class MainWindow(QMainWindow):
    closing = Signal()
    """The window closed for good: the app quits."""
    hidden_to_tray = Signal()
    """The close button hid the window; lmgui goes on in the tray."""
    visibility_changed = Signal(bool)
    quit_requested = Signal()
    settings_requested = Signal()
    pin_toggled = Signal(str, bool, str)
    """(instance id, pinned, server URL) from the Pinned action on the selected instance"""
    server_focused = Signal(str)
    """The selection moved to another server's row (its URL): the window's current server."""

    hide_on_close = False
    """Set by the app where a system tray exists and the user wants closing to hide."""

    def __init__(
        self,
        tree: ModelTreeModel,
        poller: Poller,
        actions: Actions,
        settings: Settings,
        *,
        server_url: Callable[[], str],
        gpus: Callable[[str], list[GpuMemory] | None] = lambda url: None,
        hardware: Callable[[str], ServerHardware | None] = lambda url: None,
        instance_infos: Callable[[str], dict[str, InstanceInfo]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """``gpus`` reads the GPU memory (NVML), once per poll; ``hardware`` gives the server's
        VRAM as LM Studio surveyed it, the budget when the user set none. ``instance_infos``
        gives the ledger's facts per instance (offload, TTL), shown as soon as a load or unload
        finishes; without it they show at the tree's next change. Each takes a server's URL;
        ``server_url()`` is the current server's."""
        super().__init__(parent)
        self.tree = tree
        self.poller = poller
        self.settings = settings
        self._server_url = server_url
        self._gpus = gpus
        self._hardware = hardware
        self._focused = ""
        """The server of the selected row, once one was selected (several servers)."""
        self.last_gpus: list[GpuMemory] | None = gpus(server_url())
        """GPU memory as NVML measured it at the last poll (None: no reader, or no GPU).

        ``gpus`` is called here and once per poll, never on a paint or a tick. The window's
        slot is connected before the app connects the tray's, so on each poll the tray can show
        this same reading instead of reading the driver again."""
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
        self.view.header().sortIndicatorChanged.connect(self._on_sort_indicator_changed)
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

        self.vram = VramBar()
        self.vram_bar: QProgressBar = self.vram.bar  # the bar itself, as tests and tools find it

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.vram)
        self.setCentralWidget(central)

        self.commands = WindowActions(
            self,
            on_refresh=lambda: self.poller.poke(),  # the poller of the moment: see set_poller
            on_load=self.open_load_dialog,
            on_unload=self.open_unload_dialog,
            on_unload_all=self.unload_everything,
            on_settings=self.settings_requested.emit,
            on_quit=self.quit_requested.emit,
            on_chat=self.open_chat,
            on_copy_key=self._copy_key,
            on_pin=self._on_pin_triggered,
        )
        self.pinned: Callable[[], set[str]] = set
        """The pinned instances (the app's snapshot store); read when the selection changes."""
        # The window's public names for its actions and filter (tests and the app use them).
        self.refresh_action = self.commands.refresh_action
        self.load_action = self.commands.load_action
        self.unload_action = self.commands.unload_action
        self.unload_all_action = self.commands.unload_all_action
        self.settings_action = self.commands.settings_action
        self.quit_action = self.commands.quit_action
        self.chat_action = self.commands.chat_action
        self.copy_key_action = self.commands.copy_key_action
        self.filter_box = self.commands.filter_box
        self.toggles = self.commands.toggles
        self.commands.filter_changed.connect(self._on_filter_changed)

        # Not `self.actions`: that would hide QWidget.actions(), the window's list of QActions.
        self.dialogs = DialogWiring(
            self,
            tree,
            actions,
            settings,
            gpus=lambda url: self.last_gpus if url == self._server_url() else self._gpus(url),
            hardware=hardware,
            instance_infos=instance_infos,
            server=server_url,
        )
        self.dialogs.instance_chosen.connect(self.select_instance)  # (id, its server)
        self._build_status_bar()

        self.proxy.rowsInserted.connect(self._on_proxy_rows_inserted)
        self.proxy.modelReset.connect(self._on_proxy_model_reset)
        tree.dimmed_changed.connect(self._on_tree_dimmed_changed)
        self.view.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self._connect_poller(poller)

        self._age_timer = QTimer(self)
        self._age_timer.setInterval(1000)
        self._age_timer.timeout.connect(self._update_age)
        self._age_timer.start()
        self.restore_layout()
        self._on_poller_status_changed(poller.status)
        self._update_selection_actions()
        self.refresh_vram()

    def _connect_poller(self, poller: Poller) -> None:
        poller.status_changed.connect(self._on_poller_status_changed)
        poller.poll_finished.connect(self._on_poller_poll_finished)

    def set_poller(self, poller: Poller) -> None:
        """Follow another server's poller (the app switched servers)."""
        old, self.poller = self.poller, poller
        old.status_changed.disconnect(self._on_poller_status_changed)
        old.poll_finished.disconnect(self._on_poller_poll_finished)
        self._connect_poller(poller)
        # The old server's GPU reading is not this one's; `gpus` now answers for the new server.
        self.last_gpus = self._gpus(self._server_url())
        self._on_poller_status_changed(poller.status)
        self.refresh_vram()

    def _build_status_bar(self) -> None:
        self.server_label = QLabel()
        self.server_label.setTextFormat(Qt.TextFormat.PlainText)
        self.state_label = QLabel()
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)
        self.state_label.setAccessibleName("Connection state")
        self.age_label = QLabel()
        self.age_label.setTextFormat(Qt.TextFormat.PlainText)
        self.fleet_label = QLabel()
        self.fleet_label.setTextFormat(Qt.TextFormat.PlainText)
        self.fleet_label.setAccessibleName("Fleet totals")
        self.fleet_label.hide()
        bar = self.statusBar()
        bar.addPermanentWidget(self.fleet_label)
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
        self.commands.view_menu.addSeparator()
        self.commands.view_menu.addAction(self._chat_toggle)

    def show_chat(self) -> None:
        """The window shown normally (from the tray, or minimized), with the chat pane open."""
        self.showNormal()
        if getattr(self, "chat_pane", None) is not None:
            self.chat_dock.show()

    def open_chat(self) -> None:
        """A new thread with the selected instance (or model), in the chat pane."""
        pane = getattr(self, "chat_pane", None)
        if pane is None:
            return
        rows = self._rows()
        target: str | None = None
        server = self.selected_server()
        if rows:
            rec = rows[0].data(Role.RECORD)
            if isinstance(rec, Instance):
                target = rec.id
            elif isinstance(rec, Model) and rec.is_llm:
                target = rec.instances[0].id if rec.instances else rec.key
        self.chat_dock.show()
        self.chat_dock.raise_()
        pane.chat_with(target, server or None)

    # ------------------------------------------------------------------ load and unload

    def open_load_dialog(self, model_key: str | None = None) -> LoadDialog | None:
        return self.dialogs.open_load_dialog(
            model_key, self.selected_models(), self.selected_server()
        )

    def open_unload_dialog(self) -> UnloadDialog | None:
        """Unload the selected instances (or those of the selected models), on their server
        (a selection across servers: a dialog per server)."""
        by_server: dict[str, list[Instance]] = {}
        for url, inst in self._selected_instances():
            by_server.setdefault(url, []).append(inst)
        dialog = None
        for url, instances in by_server.items():
            dialog = self.dialogs.unload(instances, UnloadScope.SELECTED, url) or dialog
        return dialog

    def unload_everything(self) -> UnloadDialog | None:
        """Every instance on the current server (the selected row's)."""
        return self.dialogs.unload_everything(self.selected_server())

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
        return [inst for _, inst in self._selected_instances()]

    def _selected_instances(self) -> list[tuple[str, Instance]]:
        """(server URL, instance) of the selected instance rows and of the selected models."""
        out: dict[tuple[str, str], Instance] = {}
        for idx in self._rows():
            rec = idx.data(Role.RECORD)
            url = str(idx.data(Role.SERVER) or "")
            if isinstance(rec, Instance) and idx.data(Role.MARK) != "vanished":
                out[(url, rec.id)] = rec
            elif isinstance(rec, Model):
                out.update({(url, i.id): i for i in rec.instances})
        return [(url, inst) for (url, _), inst in out.items()]

    def selected_server(self) -> str:
        """The server of the selected row, else the current one ("" when never told)."""
        rows = self._rows()
        if rows:
            return str(rows[0].data(Role.SERVER) or "")
        if self._focused and any(s.url == self._focused for s in self.tree.servers()):
            return self._focused
        return self._server_url()  # the selected server went (removed or switched off)

    def select_instance(self, instance_id: str, server: str | None = None) -> None:
        idx = self.proxy.mapFromSource(self.tree.instance_index(instance_id, server or None))
        if idx.isValid():
            self.view.expand(idx.parent())
            self.view.setCurrentIndex(idx)

    def refresh_status(self) -> None:
        """The status bar and the table's dimming again (the servers changed: one or several,
        a server renamed)."""
        self._on_poller_status_changed(self.poller.status)

    def set_fleet_line(self, text: str) -> None:
        """The fleet's totals in the status bar ("" hides them: one server)."""
        self.fleet_label.setText(text)
        self.fleet_label.setVisible(bool(text))

    def _update_selection_actions(self) -> None:
        models = self.selected_models()
        self.load_action.setEnabled(
            bool(models) or any(self.tree.models(s.url) for s in self.tree.servers())
        )
        self.unload_action.setEnabled(bool(self.selected_instances()))
        self.copy_key_action.setEnabled(bool(self._rows()))
        pin = self.commands.pin_action
        one = self._one_instance()
        pin.setEnabled(one is not None)
        pin.setChecked(one is not None and one in self.pinned())

    def _one_instance(self) -> str | None:
        """The id of the one selected instance row, else None."""
        rows = [i for i in self._rows() if isinstance(i.data(Role.RECORD), Instance)]
        if len(rows) != 1 or len(self._rows()) != 1:
            return None
        rec = rows[0].data(Role.RECORD)
        return rec.id if isinstance(rec, Instance) else None

    def _on_pin_triggered(self, checked: bool) -> None:
        one = self._one_instance()
        if one is not None:
            self.pin_toggled.emit(one, checked, self.selected_server())

    # ------------------------------------------------------------------ slots

    def _on_selection_changed(self) -> None:
        rows = self._rows()
        url = str(rows[0].data(Role.SERVER) or "") if rows else ""
        if url and url != self._focused:
            self._focused = url
            if url != self._server_url():
                self.server_focused.emit(url)  # the app makes it current, then set_poller
        self._update_selection_actions()
        self._show_details()

    def _on_tree_changed(self) -> None:
        self._update_selection_actions()
        self.refresh_vram()
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
        """Show new instances: expand their model when instances appear under it (and a
        server's row, with its loaded models, when it is filled)."""
        kind = parent.siblingAtColumn(0).data(Role.KIND) if parent.isValid() else None
        if kind == RowKind.MODEL:
            self.view.expand(parent)
            return
        for row in range(first, last + 1):
            idx = self.proxy.index(row, 0, parent)
            if not self.proxy.rowCount(idx):
                continue
            if idx.data(Role.KIND) == RowKind.SERVER:
                self.view.expand(idx)
                self._on_proxy_rows_inserted(idx, 0, self.proxy.rowCount(idx) - 1)
            else:
                self.view.expand(idx)

    def _show_details(self) -> None:
        rows = self._rows()
        if not rows:
            self.details.setPlainText("")
            return
        rec = rows[0].data(Role.RECORD)
        model = rows[0].data(Role.MODEL)
        lines: list[str] = []
        if isinstance(rec, ServerRecord):
            index = self.tree.server_index(rec.url)
            lines += [rec.name, f"address: {rec.url}"]
            for col, label in (
                (Column.STATE, "state"),
                (Column.SIZE, "models"),
                (Column.VRAM, "VRAM (estimated)"),
                (Column.STATUS, "instances"),
            ):
                text = index.siblingAtColumn(col).data()
                if text:
                    lines.append(f"{label}: {text}")
        elif isinstance(rec, Model):
            lines += [
                rec.display_name,
                f"key: {rec.key}",
                f"type: {rec.type}",
                f"publisher: {rec.publisher or '-'}",
                f"architecture: {rec.architecture or '-'}",
                f"format: {rec.format or '-'}",
                f"quantization: {quantization_label(rec.quantization, bits=True) or '-'}",
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
            lines += [f"instance: {rec.id}", f"model: {model.key}"]
            lines += _server_facts(rec, time.time())
            lines += ["", "config:"]
            lines += [f"  {k}: {v}" for k, v in sorted(rec.config.items())]
        self.details.setPlainText("\n".join(lines))

    def _on_sort_indicator_changed(self, _column: int, order: Qt.SortOrder) -> None:
        self.tree.set_sort_descending(order == Qt.SortOrder.DescendingOrder)

    def _on_view_double_clicked(self, index: QModelIndex) -> None:
        if self.proxy.mapToSource(index).siblingAtColumn(0).data(Role.KIND) == RowKind.MODEL:
            self.open_load_dialog()

    def _on_view_context_menu(self, pos: QPoint) -> None:
        self.commands.context_menu(self).popup(self.view.viewport().mapToGlobal(pos))

    def _copy_key(self) -> None:
        rows = self._rows()
        if rows:
            rec = rows[0].data(Role.RECORD)
            if isinstance(rec, ServerRecord):
                text = rec.url
            else:
                text = rec.key if isinstance(rec, Model) else rec.id
            QGuiApplication.clipboard().setText(text)
            self.statusBar().showMessage(f"Copied {text}", 3000)

    def _on_filter_changed(self) -> None:
        self.proxy.set_text(self.filter_box.text())
        on = self.commands.checked_toggles()
        self.proxy.set_toggles(
            loaded_only="loaded" in on,
            types=on & {"llm", "embedding"},
            vision_only="vision" in on,
            tools_only="tools" in on,
        )

    def _on_poller_status_changed(self, status: PollStatus) -> None:
        url = self._server_url()
        servers = self.tree.servers()
        name = next((s.name for s in servers if s.url == url), "") if len(servers) > 1 else ""
        self.server_label.setText(f"{name}: {url}" if name else url)
        text = state_text(status)
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
        # NVML is read here and nowhere else, so the window and the tray share one reading.
        self.last_gpus = self._gpus(self._server_url())
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

    def refresh_vram(self) -> None:
        """Show the VRAM figures again (after the budget changed, say) from the tree's estimate
        and the last NVML reading; reads no GPU itself."""
        url = self._server_url()
        servers = self.tree.servers()
        known = any(s.url == url for s in servers)
        name = next((s.name for s in servers if s.url == url), "") if len(servers) > 1 else ""
        self.vram.title.setText(f"VRAM ({name}):" if name else "VRAM:")
        self.vram.show_figures(
            self.tree.total_vram(url if known else None),
            self.settings.vram_budget_gb,
            self.last_gpus,
            self._hardware(url),
        )
        self.dialogs.refresh()

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
        self._on_sort_indicator_changed(header.sortIndicatorSection(), header.sortIndicatorOrder())

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


def _server_facts(inst: Instance, now: float) -> list[str]:
    """What only LM Studio's SDK channel reports of an instance, for the details pane: a line
    for each fact the server gave (none for a server without that channel)."""
    lines: list[str] = []
    if inst.gpu_offload is not None:
        lines.append(f"GPU offload: {gpu_offload_text(inst.gpu_offload)}")
    if inst.ttl_seconds is not None:
        left = inst.ttl_left(now)
        if inst.busy:
            when = " (counts down once it is idle)"
        else:
            when = f" (unloads in {human_duration(left)} if idle)" if left is not None else ""
        lines.append(f"server TTL: {human_duration(inst.ttl_seconds)}{when}")
    if inst.last_used is not None:
        lines.append(f"last used: {local_time(inst.last_used, now)}")
    words = status_words(inst.status)
    if words is not None:
        lines.append(f"status: {words}")
    if inst.queued is not None:
        # LM Studio counts the request in progress among the queued ones.
        waiting = waiting_requests(inst.status, inst.queued)
        lines.append(
            f"queued requests: {inst.queued}"
            + (f" (the one in progress and {waiting} waiting)" if waiting != inst.queued else "")
        )
    return lines
