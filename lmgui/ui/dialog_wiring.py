"""The main window's load and unload dialogs: opening them, handing what they ask for to
``Actions``, and routing what ``Actions`` reports back to the open dialogs, the status bar and
the tree's marks.

Several servers: a load dialog picks its server (the selected row's by default, each listed
with its free VRAM) and checks the fit against that server's VRAM; an unload goes to the server
of the instances' rows.

A load dialog stays open while its model loads and shows the progress and the outcome, so the
dialogs are kept here (by model key) until they close; closing one does not cancel its load.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMainWindow, QMessageBox

from lmgui.api.records import Instance, LoadResult, Model, ServerEstimate, ServerHardware
from lmgui.core.actions import Actions, LoadRequest
from lmgui.core.format import human_bytes
from lmgui.core.gpu import GpuMemory
from lmgui.core.instances import InstanceInfo
from lmgui.core.messages import loaded_sentence, not_applied_sentence
from lmgui.core.saved_sets import RoomPlan, plan_room, room_candidates
from lmgui.core.settings import Settings
from lmgui.qtmodels.model_tree import ModelTreeModel
from lmgui.ui.load_dialog import LoadDialog, VramContext
from lmgui.ui.unload_dialog import UnloadDialog

__all__ = ["DialogWiring", "UnloadScope"]


class UnloadScope(Enum):
    """Which instances an unload dialog offers (and so its title)."""

    SELECTED = "selected"
    """The chosen instances, offered among every instance of their models."""
    EVERYTHING = "everything"
    """Every loaded instance on the server, all chosen."""

    @property
    def title(self) -> str:
        return "Unload all instances" if self is UnloadScope.EVERYTHING else "Unload instances"


class DialogWiring(QObject):
    instance_chosen = Signal(str, str)
    """A load dialog's "use loaded" picked this instance (id, its server's URL) instead of
    loading another copy."""

    def __init__(
        self,
        window: QMainWindow,
        tree: ModelTreeModel,
        actions: Actions,
        settings: Settings,
        *,
        gpus: Callable[[str], list[GpuMemory] | None],
        hardware: Callable[[str], ServerHardware | None] = lambda url: None,
        instance_infos: Callable[[str], dict[str, InstanceInfo]] | None = None,
        server: Callable[[], str] = lambda: "",
    ) -> None:
        """``hardware``: the server's VRAM as LM Studio surveyed it, the fit check's total when
        NVML measured nothing and the user set no budget. ``instance_infos``: the ledger's facts
        per instance (GPU offload, TTL deadline), shown in the tree as soon as a load or unload
        finishes rather than at the next change. Each takes a server's URL ("": the current
        one); ``server()`` is the current server (the selected row's)."""
        super().__init__(window)
        self._window = window
        self.tree = tree
        self.actions = actions
        self.settings = settings
        self._gpus = gpus
        self._hardware = hardware
        self._instance_infos = instance_infos
        self._server = server
        self.pinned: Callable[[str], set[str]] = lambda url: set()
        """The pinned instances (never offered to make room); the app sets it."""
        self.load_dialogs: list[LoadDialog] = []
        actions.load_started.connect(self._on_actions_load_started)
        actions.load_progress.connect(self._on_actions_load_progress)
        actions.load_finished.connect(self._on_actions_load_finished)
        actions.load_failed.connect(self._on_actions_load_failed)
        actions.unload_failed.connect(self._on_actions_unload_failed)
        actions.unload_finished.connect(self._on_actions_unload_finished)
        actions.ttl_expired.connect(self._on_actions_ttl_expired)
        actions.pending_changed.connect(self._on_actions_pending_changed)

    def _say(self, text: str, timeout_ms: int = 0) -> None:
        self._window.statusBar().showMessage(text, timeout_ms)

    # ------------------------------------------------------------------ VRAM

    def _url(self, server: str) -> str:
        return server or self._server()

    def _tree_url(self, server: str) -> str | None:
        """The tree's key for ``server``: None only for a tree never told its servers (its one
        section); a server the tree does not show has no models there, never another's."""
        servers = self.tree.servers()
        if len(servers) == 1 and not servers[0].url:
            return None
        return self._url(server)

    def vram_context(self, server: str = "") -> VramContext:
        """What a load dialog's fit check compares against, for ``server`` ("": the current
        one): measured when NVML read its GPUs, else the estimate against the user's budget,
        else against the server's own VRAM."""
        url = self._url(server)
        used = self.tree.total_vram(self._tree_url(server))
        gpus = self._gpus(url)
        if gpus:
            total = sum(g.total_bytes for g in gpus)
            return VramContext(total, sum(g.used_bytes for g in gpus), "nvml")
        budget = self.settings.vram_budget_gb
        if budget > 0:
            return VramContext(int(budget * 1e9), used, "budget")
        hardware = self._hardware(url)
        if hardware is not None:
            return VramContext(hardware.vram_bytes, used, "server")
        return VramContext(None, used, "none")

    def refresh(self) -> None:
        """Fresh server state for every open load dialog (once per poll)."""
        shown = {s.url for s in self.tree.servers()}
        for dialog in self.load_dialogs:
            if dialog.server and dialog.server not in shown:  # switched off while it was open
                gone, dialog_url = dialog.server, self._url("")
                dialog.set_servers(self._server_choices(dialog_url), dialog_url)
                self._on_dialog_server_changed(dialog, dialog_url)
                self._say(f"lmgui no longer watches {gone}: the load dialog shows another.", 8000)
            dialog.set_servers(self._server_choices(dialog.server), dialog.server)
            dialog.set_vram(self.vram_context(dialog.server))
            dialog.set_models(self.tree.models(self._tree_url(dialog.server)))

    # ------------------------------------------------------------------ load

    def _server_choices(self, keep: str = "") -> list[tuple[str, str]]:
        """(URL, "name: 12 GB free of 24 GB") for each server that listed its models (and
        ``keep``, the one a dialog has picked)."""
        out = []
        for rec in self.tree.servers():
            if not rec.url or (rec.url != keep and not self.tree.models(rec.url)):
                continue
            vram = self.vram_context(rec.url)
            free = vram.free_bytes
            label = rec.name
            if free is not None and vram.total_bytes:
                label += f": {human_bytes(free)} free of {human_bytes(vram.total_bytes)}"
            out.append((rec.url, label))
        return out

    def open_load_dialog(
        self, model_key: str | None, selected: list[Model], server: str = ""
    ) -> LoadDialog | None:
        """A load dialog on ``model_key``, else the first selected model, else the first
        model, on ``server`` ("": the current one)."""
        url = self._url(server)
        models = self.tree.models(self._tree_url(server))
        if not models:
            self._say("No models to load yet: the server has not answered.", 5000)
            return None
        key = model_key or (selected[0].key if selected else models[0].key)
        dialog = LoadDialog(
            _llms_first(models),
            key,
            self.vram_context(url),
            defaults=self.settings.load_defaults(),
            parent=self._window,
        )
        dialog.set_servers(self._server_choices(url), url)
        dialog.server_changed.connect(lambda u, d=dialog: self._on_dialog_server_changed(d, u))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.set_estimator(self._estimate)
        dialog.load_requested.connect(self._on_dialog_load_requested)
        dialog.make_room_requested.connect(self._on_dialog_make_room_requested)
        dialog.use_loaded.connect(
            lambda iid, d=dialog: self.instance_chosen.emit(iid, self._url(d.server))
        )
        dialog.finished.connect(lambda _=0, d=dialog: self._forget_dialog(d))
        self.load_dialogs.append(dialog)
        dialog.set_room_planner(functools.partial(self._plan_room, dialog))
        dialog.show()
        return dialog

    def _on_dialog_server_changed(self, dialog: LoadDialog, url: str) -> None:
        dialog.set_vram(self.vram_context(url))
        dialog.set_models(_llms_first(self.tree.models(self._tree_url(url))), replace=True)

    def _plan_room(self, dialog: LoadDialog, needed: int, free: int) -> RoomPlan:
        url = self._url(dialog.server)
        infos = self._instance_infos(url) if self._instance_infos is not None else {}
        models = self.tree.models(self._tree_url(url))
        return plan_room(needed, free, room_candidates(models, infos, self.pinned(url)))

    def _on_dialog_make_room_requested(self, request: LoadRequest, ids: list[str]) -> None:
        """Unload what the dialog proposed, then load once they are confirmed gone."""
        self.settings.remember_load(request)
        self._say(f"Making room for {request.model_key}: unloading {', '.join(ids)}…")
        unloading = self.actions.unload(ids, request.server)

        async def then() -> None:
            gone = await unloading
            if set(gone) >= set(ids):
                self.actions.load(request)
                return
            left = ", ".join(i for i in ids if i not in gone)
            for d in self._dialogs_for(request):
                d.show_failed(f"Could not make room: {left} is still loaded; nothing was loaded.")

        self.actions.tasks.spawn(then(), f"Making room for {request.model_key}")

    async def _estimate(self, request: LoadRequest, embedding: bool) -> ServerEstimate | None:
        return await self.actions.estimate(request, embedding=embedding)

    def _forget_dialog(self, dialog: LoadDialog) -> None:
        if dialog in self.load_dialogs:
            self.load_dialogs.remove(dialog)

    def _dialogs_for(self, request: LoadRequest) -> list[LoadDialog]:
        url = self._url(request.server)
        return [
            d
            for d in self.load_dialogs
            if d.model.key == request.model_key and self._url(d.server) == url
        ]

    def _on_dialog_load_requested(self, request: LoadRequest) -> None:
        self.settings.remember_load(request)
        self.actions.load(request)

    def _on_actions_load_started(self, request: LoadRequest) -> None:
        for d in self._dialogs_for(request):
            d.show_started(request)
        self._say(f"Loading {request.model_key}…")

    def _on_actions_load_progress(self, request: LoadRequest, fraction: float) -> None:
        for d in self._dialogs_for(request):
            d.show_progress(fraction)

    def _on_actions_load_finished(self, request: LoadRequest, result: LoadResult) -> None:
        for d in self._dialogs_for(request):
            d.show_finished(result)
        msg = loaded_sentence(request.model_key, result)
        if result.not_applied:
            msg += " " + not_applied_sentence(result, ttl_enforced=True)
        self._say(msg, 15000)
        self._show_instance_infos(request.server)

    def _on_actions_load_failed(self, request: LoadRequest, message: str) -> None:
        dialogs = self._dialogs_for(request)
        for d in dialogs:
            d.show_failed(message)
        self._say(message, 20000)
        if not dialogs:  # an open dialog already shows it; otherwise it must not go unseen
            self._error(message)

    # ------------------------------------------------------------------ unload

    def unload_everything(self, server: str = "") -> UnloadDialog | None:
        """Every instance on ``server`` ("": the current one)."""
        url = self._url(server)
        everything = [i for m in self.tree.models(self._tree_url(url)) for i in m.instances]
        if not everything:
            self._say("Nothing is loaded.", 4000)
            return None
        return self.unload(everything, UnloadScope.EVERYTHING, url)

    def unload(
        self, instances: list[Instance], scope: UnloadScope, server: str = ""
    ) -> UnloadDialog | None:
        """Unload ``instances`` of ``server``: at once when the user said not to ask, else
        through a dialog.

        One answering right now (the server says it is generating, reading a prompt or has
        requests waiting) is always asked about, even with confirmation turned off: unloading
        it cuts an answer off, maybe another client's."""
        chosen = {i.id for i in instances}
        busy = any(i.busy for i in instances)
        url = self._url(server)
        if not self.settings.confirm_unload and not busy:
            self.actions.unload(sorted(chosen), url)
            return None
        if scope is UnloadScope.SELECTED:
            # The model's other instances are offered too, unticked: the user may want them gone.
            model_keys = {i.model_key for i in instances}
            offered = [
                i
                for m in self.tree.models(self._tree_url(url))
                if m.key in model_keys
                for i in m.instances
            ]
        else:
            offered = instances
        dialog = UnloadDialog(
            offered,
            preselected=chosen,
            title=scope.title,
            offer_dont_ask=self.settings.confirm_unload,
            parent=self._window,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.unload_requested.connect(
            lambda ids, dont_ask: self._on_dialog_unload_requested(ids, dont_ask, url)
        )
        dialog.show()
        return dialog

    def _on_dialog_unload_requested(self, ids: list[str], dont_ask: bool, server: str) -> None:
        if dont_ask:
            self.settings.confirm_unload = False
        self.actions.unload(ids, server)
        self._say(f"Unloading {', '.join(ids)}…")

    def _on_actions_unload_finished(self, instance_id: str, server: str) -> None:
        self._say(f"Unloaded {instance_id}.", 8000)
        self._show_instance_infos(server)

    def _on_actions_unload_failed(self, instance_id: str, message: str, server: str) -> None:
        self._say(message, 20000)
        self._error(message)

    def _on_actions_ttl_expired(self, instance_id: str, server: str) -> None:
        self._say(f"Unloading {instance_id}: idle longer than its TTL (enforced by lmgui).", 10000)

    def _show_instance_infos(self, server: str) -> None:
        if self._instance_infos is not None:
            url = self._url(server)
            self.tree.set_instance_info(self._instance_infos(url), self._tree_url(url))

    def _on_actions_pending_changed(self) -> None:
        servers = self.tree.servers()
        if len(servers) <= 1:
            self.tree.set_pending(self.actions.pending())
            return
        for rec in servers:
            self.tree.set_pending(self.actions.pending(rec.url), rec.url)

    def _error(self, message: str) -> None:
        # Plain text: the message may quote the server, and nothing from a server renders.
        box = QMessageBox(
            QMessageBox.Icon.Warning, "lmgui", message, QMessageBox.StandardButton.Ok, self._window
        )
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()


def _llms_first(models: list[Model]) -> list[Model]:
    return sorted(models, key=lambda m: (m.type != "llm", m.display_name.casefold()))
