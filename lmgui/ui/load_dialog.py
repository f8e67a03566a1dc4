"""The load dialog: settings for one load, a live VRAM estimate, and the load's progress.

It never holds the client: "Load" emits ``load_requested(LoadRequest)``; the window runs it
through ``Actions`` and reports back with ``show_started`` / ``show_finished`` / ``show_failed``.
Closing the dialog does not cancel the load. Where the server estimates a load itself (LM Studio's
SDK channel), ``set_estimator`` gives the dialog a way to ask; its answer shows beside lmgui's
formula, asked again a moment after the settings stop changing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lmgui.api.records import LoadResult, Model, ServerEstimate
from lmgui.core.actions import LoadRequest
from lmgui.core.format import human_bytes, human_count
from lmgui.core.messages import not_applied_sentence
from lmgui.core.saved_sets import RoomPlan
from lmgui.core.vram import estimate_instance
from lmgui.ui.widgets import ERROR, WARNING, plain_label

__all__ = ["LoadDialog", "VramContext", "is_moe"]

Estimator = Callable[[LoadRequest, bool], Awaitable[ServerEstimate | None]]
RoomPlanner = Callable[[int, int], RoomPlan]
"""``planner(needed_bytes, free_bytes)``: the idle instances to unload so a load fits."""
"""Asks the server's own estimate of a load request (``embedding`` second)."""
ESTIMATE_DELAY_MS = 300
"""How long the settings must rest before the server is asked (typing a context length...)."""

CONTEXT_PRESETS = (2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)
IDENTIFIER = re.compile(r"^[A-Za-z0-9._/@:-]+$")


@dataclass(frozen=True)
class VramContext:
    """What the fit check compares against."""

    total_bytes: int | None
    used_bytes: int
    source: Literal["nvml", "budget", "server", "none"]

    @property
    def free_bytes(self) -> int | None:
        return None if self.total_bytes is None else max(0, self.total_bytes - self.used_bytes)


def is_moe(model: Model) -> bool:
    """Mixture-of-experts, from "26B-A4B"-style parameter strings or a known architecture."""
    params = model.params_string or ""
    return bool(re.search(r"-A\d", params)) or (model.architecture or "") in {
        "gpt-oss",
        "qwen3moe",
        "mixtral",
        "deepseek2",
        "llama4",
    }


def _buddy(text: str, widget: QWidget) -> QLabel:
    """A form label whose &-mnemonic focuses ``widget`` (rows holding a layout get none)."""
    label = QLabel(text)
    label.setBuddy(widget)
    return label


class LoadDialog(QDialog):
    load_requested = Signal(object)
    """LoadRequest"""
    use_loaded = Signal(str)
    server_changed = Signal(str)
    """The user picked another server (its URL): the dialog wants that server's models and
    VRAM (``set_models(..., replace=True)``, ``set_vram``)."""
    make_room_requested = Signal(object, list)
    """(LoadRequest, the instance ids to unload first): "Unload them and load" was pressed."""
    """instance id of the already loaded instance the user chose to use instead"""

    def __init__(
        self,
        models: list[Model],
        selected_key: str,
        vram: VramContext,
        *,
        defaults: dict[str, LoadRequest] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Load model")
        self.setModal(False)
        self._models = {m.key: m for m in models}
        self._defaults = defaults or {}
        self._vram = vram
        self._started: float | None = None
        self._busy = False
        self._estimator: Estimator | None = None
        self._estimate_task: asyncio.Task[None] | None = None
        self._estimated: LoadRequest | None = None
        """The request the shown server estimate is for (ttl and identifier cleared)."""
        self._armed: LoadRequest | None = None
        """The request the estimate timer was last started for: polls refresh the dialog
        without changing it, and must not keep pushing the question back."""

        self.server_box = QComboBox()
        self.server_box.setAccessibleName("Server")
        self.server_box.setToolTip("The server to load on, with its free VRAM as lmgui sees it")
        self._server_label = _buddy("&Server:", self.server_box)
        self._server = ""
        self.model_box = QComboBox()
        self.model_box.setAccessibleName("Model")
        for m in models:
            self.model_box.addItem(f"{m.display_name}  ({m.key})", m.key)
        self.model_box.setCurrentIndex(max(0, self.model_box.findData(selected_key)))

        self.gpu_mode = QComboBox()
        self.gpu_mode.setAccessibleName("GPU offload")
        self.gpu_mode.addItem("Server default (LM Studio decides)", None)
        self.gpu_mode.addItem("Max: every layer on the GPU", "max")
        self.gpu_mode.addItem("Off: CPU only", "off")
        self.gpu_mode.addItem("A fraction of the layers", "fraction")
        self.gpu_fraction = QDoubleSpinBox()
        self.gpu_fraction.setRange(0.0, 1.0)
        self.gpu_fraction.setSingleStep(0.05)
        self.gpu_fraction.setValue(0.5)
        self.gpu_fraction.setAccessibleName("GPU offload fraction")
        self.gpu_fraction.setToolTip("Share of the layers to put on the GPU, 0 to 1")
        gpu_row = QHBoxLayout()
        gpu_row.addWidget(self.gpu_mode, 1)
        gpu_row.addWidget(self.gpu_fraction)

        self.context = QSpinBox()
        self.context.setAccessibleName("Context length")
        self.context.setRange(256, 262144)
        self.context.setSingleStep(1024)
        self.context.setSuffix(" tokens")
        self.context_presets = QComboBox()
        self.context_presets.setAccessibleName("Context length presets")
        self.context_presets.setToolTip("Common context lengths")
        ctx_row = QHBoxLayout()
        ctx_row.addWidget(self.context, 1)
        ctx_row.addWidget(self.context_presets)

        self.ttl_on = QCheckBox("Unload when idle for")
        self.ttl_value = QSpinBox()
        self.ttl_value.setRange(1, 10_000)
        self.ttl_value.setValue(60)
        self.ttl_value.setAccessibleName("Idle time before unloading")
        self.ttl_unit = QComboBox()
        self.ttl_unit.addItem("minutes", 60)
        self.ttl_unit.addItem("hours", 3600)
        self.ttl_unit.setAccessibleName("Idle time unit")
        ttl_row = QHBoxLayout()
        ttl_row.addWidget(self.ttl_on)
        ttl_row.addWidget(self.ttl_value)
        ttl_row.addWidget(self.ttl_unit)
        ttl_row.addStretch(1)

        self.identifier = QLineEdit()
        self.identifier.setAccessibleName("Identifier")
        self.identifier.setPlaceholderText("optional: the instance id to use")

        self.flash = self._tristate("Flash attention")
        self.kv_gpu = self._tristate("KV cache on GPU")
        self.batch = self._optional_int("Evaluation batch size", 1, 65536, 512)
        self.experts = self._optional_int("Experts", 1, 256, 4)
        self.parallel = self._optional_int("Parallel requests", 1, 64, 4)

        self.gpu_error = plain_label(colour=ERROR, hidden=True)
        self.context_error = plain_label(colour=ERROR, hidden=True)
        self.ttl_error = plain_label(colour=ERROR, hidden=True)
        self.identifier_error = plain_label(colour=ERROR, hidden=True)

        form = QFormLayout()
        form.addRow(self._server_label, self.server_box)
        self._server_label.hide()
        self.server_box.hide()  # one server: nothing to pick
        form.addRow("&Model:", self.model_box)
        form.addRow(_buddy("&GPU offload:", self.gpu_mode), gpu_row)
        form.addRow("", self.gpu_error)
        form.addRow(_buddy("&Context length:", self.context), ctx_row)
        form.addRow("", self.context_error)
        form.addRow(_buddy("&TTL:", self.ttl_on), ttl_row)
        form.addRow("", self.ttl_error)
        form.addRow("&Identifier:", self.identifier)
        form.addRow("", self.identifier_error)
        form.addRow("&Flash attention:", self.flash)
        form.addRow("&KV cache on GPU:", self.kv_gpu)
        form.addRow("Evaluation &batch size:", self.batch)
        self._experts_label = QLabel("E&xperts:")
        self._experts_label.setBuddy(self.experts)
        form.addRow(self._experts_label, self.experts)
        form.addRow("&Parallel requests:", self.parallel)

        # Already loaded: warn, and make "use the loaded one" the default.
        self.loaded_box = QWidget()
        loaded_layout = QVBoxLayout(self.loaded_box)
        loaded_layout.setContentsMargins(0, 0, 0, 0)
        self.loaded_note = plain_label(colour=WARNING)
        self.use_existing = QRadioButton("Use the loaded instance")
        self.load_another = QRadioButton("Load another instance")
        group = QButtonGroup(self)
        group.addButton(self.use_existing)
        group.addButton(self.load_another)
        loaded_layout.addWidget(self.loaded_note)
        loaded_layout.addWidget(self.use_existing)
        loaded_layout.addWidget(self.load_another)

        self.estimate = plain_label()
        self.estimate.setAccessibleName("VRAM estimate")
        self.fit = plain_label()
        self.room = plain_label()
        self.room.setAccessibleName("Make room")
        self.room.hide()
        self.make_room_button = QPushButton("Unload them and load")
        self.make_room_button.setToolTip(
            "Unload the instances named above (idle, least recently used first), then load"
        )
        self.make_room_button.hide()
        self.make_room_button.clicked.connect(self._on_make_room_clicked)
        self._plan: RoomPlan | None = None
        self._planner: RoomPlanner | None = None
        self._server_estimate: tuple[LoadRequest, ServerEstimate] | None = None
        self.server_estimate = plain_label()
        self.server_estimate.setAccessibleName("LM Studio's estimate")
        self.server_estimate.hide()
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self._on_estimate_timer_timeout)

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setAccessibleName("Load progress")
        self.progress.hide()
        self.status = plain_label()
        self.status.setAccessibleName("Load status")

        self.buttons = QDialogButtonBox()
        self.load_button = QPushButton("&Load")
        self.load_button.setDefault(True)
        self.buttons.addButton(self.load_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.close_button.setToolTip("Close this dialog; a load in progress goes on")
        self.load_button.clicked.connect(self._on_load_clicked)
        self.close_button.clicked.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.loaded_box)
        layout.addWidget(self.estimate)
        layout.addWidget(self.server_estimate)
        layout.addWidget(self.fit)
        room_row = QHBoxLayout()
        room_row.addWidget(self.room, 1)
        room_row.addWidget(self.make_room_button)
        layout.addLayout(room_row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)

        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._on_tick_timeout)

        self.model_box.currentIndexChanged.connect(self._on_model_changed)
        self.server_box.activated.connect(self._on_server_box_activated)
        self.context_presets.activated.connect(self._on_preset_activated)
        self.context.valueChanged.connect(self._on_context_changed)
        for w in (self.gpu_mode, self.ttl_unit):
            w.currentIndexChanged.connect(self._refresh)
        for s in (self.context, self.ttl_value, self.experts):
            s.valueChanged.connect(self._refresh)
        self.gpu_fraction.valueChanged.connect(self._refresh)
        self.kv_gpu.currentIndexChanged.connect(self._refresh)
        self.ttl_on.toggled.connect(self._refresh)
        self.identifier.textChanged.connect(self._refresh)
        self.use_existing.toggled.connect(self._refresh)
        self._on_model_changed()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _tristate(name: str) -> QComboBox:
        box = QComboBox()
        box.setAccessibleName(name)
        box.addItem("Server default", None)
        box.addItem("On", True)
        box.addItem("Off", False)
        return box

    @staticmethod
    def _optional_int(name: str, low: int, high: int, typical: int) -> QSpinBox:
        spin = QSpinBox()
        spin.setAccessibleName(name)
        spin.setRange(low - 1, high)
        spin.setSpecialValueText("Server default")  # shown at the minimum, which means "unset"
        spin.setValue(low - 1)
        spin.setToolTip(f"Leave at 'Server default', or set a value (typical: {typical})")
        return spin

    @property
    def model(self) -> Model:
        return self._models[str(self.model_box.currentData())]

    def set_vram(self, vram: VramContext) -> None:
        self._vram = vram
        self._refresh()

    def set_room_planner(self, planner: RoomPlanner | None) -> None:
        """How to find instances to unload when the load would not fit (None: never offer)."""
        self._planner = planner
        self._refresh()

    def set_estimator(self, estimator: Estimator | None) -> None:
        """How to ask the server's own estimate (None: the server gives none)."""
        self._estimator = estimator
        self._estimated = self._armed = None
        self._refresh()

    @property
    def server(self) -> str:
        """The server the load goes to ("": the window's current one)."""
        return self._server

    def set_servers(self, servers: list[tuple[str, str]], current: str) -> None:
        """The servers to pick from ((URL, label with its free VRAM), in order) and the one
        picked; shown only with more than one."""
        if servers and current not in [url for url, _ in servers]:
            current = servers[0][0]  # the picker and the load never name different servers
        self._server = current
        box = self.server_box
        if [box.itemData(i) for i in range(box.count())] == [url for url, _ in servers]:
            for i, (_, label) in enumerate(servers):  # after a poll: the free VRAM moved
                if box.itemText(i) != label:
                    box.setItemText(i, label)
            return
        self.server_box.blockSignals(True)
        self.server_box.clear()
        for url, label in servers:
            self.server_box.addItem(label, url)
        self.server_box.setCurrentIndex(max(0, self.server_box.findData(current)))
        self.server_box.blockSignals(False)
        several = len(servers) > 1
        self.server_box.setVisible(several)
        self._server_label.setVisible(several)

    def _on_server_box_activated(self, _index: int) -> None:
        url = str(self.server_box.currentData() or "")
        if url and url != self._server:
            self._server = url
            self._estimated = self._armed = None  # the other server's estimate is not this one's
            self.server_changed.emit(url)

    def set_models(self, models: list[Model], *, replace: bool = False) -> None:
        """Fresh server state (instances come and go while the dialog is open); ``replace``:
        another server's models (the picked model stays picked where that server has it)."""
        self._models = {m.key: m for m in models}
        if replace and models:
            key = str(self.model_box.currentData())
            self.model_box.blockSignals(True)
            self.model_box.clear()
            for m in models:
                self.model_box.addItem(f"{m.display_name}  ({m.key})", m.key)
            self.model_box.setCurrentIndex(max(0, self.model_box.findData(key)))
            self.model_box.blockSignals(False)
            self._on_model_changed()
            return
        if str(self.model_box.currentData()) in self._models:
            self._refresh_loaded()
            self._refresh()

    # ------------------------------------------------------------------ reacting to input

    def _on_model_changed(self) -> None:
        m = self.model
        max_ctx = m.max_context_length or 262144
        self.context.setMaximum(max_ctx)
        self.context_presets.clear()
        for n in CONTEXT_PRESETS:
            if n <= max_ctx:
                self.context_presets.addItem(human_count(n), n)
        if max_ctx not in CONTEXT_PRESETS:
            self.context_presets.addItem(f"max ({human_count(max_ctx)})", max_ctx)
        self.context_presets.setPlaceholderText("presets")
        moe = is_moe(m)
        self.experts.setVisible(moe)
        self._experts_label.setVisible(moe)
        self._apply_defaults(self._defaults.get(m.key), m)
        self._refresh_loaded()
        self._refresh()

    def _apply_defaults(self, d: LoadRequest | None, m: Model) -> None:
        self.context.setValue(
            (d.context_length if d else None) or min(4096, self.context.maximum())
        )
        gpu = d.gpu if d else None
        if isinstance(gpu, float):
            self.gpu_mode.setCurrentIndex(self.gpu_mode.findData("fraction"))
            self.gpu_fraction.setValue(gpu)
        else:
            self.gpu_mode.setCurrentIndex(max(0, self.gpu_mode.findData(gpu)))
        self.ttl_on.setChecked(bool(d and d.ttl_seconds))
        if d and d.ttl_seconds:
            hours = d.ttl_seconds % 3600 == 0
            self.ttl_unit.setCurrentIndex(1 if hours else 0)
            self.ttl_value.setValue(d.ttl_seconds // (3600 if hours else 60) or 1)
        for box, value in (
            (self.flash, d.flash_attention if d else None),
            (self.kv_gpu, d.offload_kv_cache_to_gpu if d else None),
        ):
            box.setCurrentIndex(max(0, box.findData(value)) if value is not None else 0)
        for spin, ivalue in (
            (self.batch, d.eval_batch_size if d else None),
            (self.experts, d.num_experts if d else None),
            (self.parallel, d.parallel if d else None),
        ):
            spin.setValue(ivalue if ivalue is not None else spin.minimum())
        self.identifier.clear()

    def _refresh_loaded(self) -> None:
        instances = self.model.instances
        self.loaded_box.setVisible(bool(instances))
        if instances:
            ids = ", ".join(i.id for i in instances)
            n = len(instances)
            self.loaded_note.setText(
                f"{self.model.key} is already loaded ({n} instance{'s' if n > 1 else ''}: {ids}). "
                "Loading it again adds another instance, with an id like "
                f"{self.model.key}:{n + 1}, and uses that much memory again."
            )
            if not (self.use_existing.isChecked() or self.load_another.isChecked()):
                self.use_existing.setChecked(True)

    def _offers_loaded(self) -> bool:
        """The model is loaded and the user keeps "use the loaded instance"."""
        return bool(self.model.instances) and self.use_existing.isChecked()

    def _on_context_changed(self, value: int) -> None:
        self.context_presets.setCurrentIndex(self.context_presets.findData(value))

    def _on_preset_activated(self, index: int) -> None:
        self.context.setValue(int(self.context_presets.itemData(index)))

    def _on_tick_timeout(self) -> None:
        if self._started is not None:
            self.status.setText(
                f"Loading {self._loading_key}… {time.monotonic() - self._started:.0f} s "
                "(you can close this dialog; the load goes on)"
            )

    def _gpu_choice(self) -> Literal["max", "off"] | float | None:
        mode = self.gpu_mode.currentData()
        if mode == "fraction":
            return round(self.gpu_fraction.value(), 3)
        if mode in ("max", "off"):
            return "max" if mode == "max" else "off"
        return None

    def _refresh(self) -> None:
        self.gpu_fraction.setEnabled(self.gpu_mode.currentData() == "fraction")
        for w in (self.ttl_value, self.ttl_unit):
            w.setEnabled(self.ttl_on.isChecked())
        using_existing = self._offers_loaded()
        self.load_button.setText("&Use loaded" if using_existing else "&Load")
        gpu = self._gpu_choice()
        fraction = 1.0 if gpu is None else {"max": 1.0, "off": 0.0}.get(str(gpu), gpu)
        assert isinstance(fraction, float)
        kv = self.kv_gpu.currentData()
        est = estimate_instance(
            self.model, context_length=self.context.value(), gpu_fraction=fraction, kv_on_gpu=kv
        )
        self.estimate.setText(
            f"Estimated memory: {human_bytes(est.vram_bytes)} of VRAM"
            + (f" and {human_bytes(est.ram_bytes)} of RAM" if est.ram_bytes else "")
            + f" (weights {human_bytes(est.weights_gpu_bytes)},"
            + f" KV cache {human_bytes(est.kv_bytes)})."
        )
        free = self._vram.free_bytes
        if free is None:
            self.fit.setStyleSheet("color: palette(mid);")
            self.fit.setText("Free VRAM is unknown: set a VRAM budget in Settings for a fit check.")
        else:
            where = {
                "nvml": "measured by NVML",
                "server": "of the server's VRAM, as LM Studio surveyed it",
            }.get(self._vram.source, "of your VRAM budget")
            if est.vram_bytes > free:
                self.fit.setStyleSheet("color: #b00020;")
                self.fit.setText(
                    f"This may not fit: about {human_bytes(free)} is free ({where}). Lower the "
                    "context or the GPU offload, or unload something first."
                )
            else:
                self.fit.setStyleSheet("color: #1b6e20;")
                self.fit.setText(f"Fits: about {human_bytes(free)} is free ({where}).")
        self._offer_room(est.vram_bytes, free)
        if self._estimator is not None:
            request = self._estimate_request()
            if request != self._armed:
                self._armed = request
                self._estimate_timer.start()  # again: asked once the settings rest
        self.validate()

    # ------------------------------------------------------------------ making room

    def _offer_room(self, lmgui_bytes: int, free: int | None) -> None:
        """When the load would not fit, name the idle instances whose unloading makes room."""
        needed = lmgui_bytes
        if self._server_estimate is not None and self._server_estimate[0] == (
            self._estimate_request()
        ):
            needed = self._server_estimate[1].vram_bytes  # LM Studio's own figure wins
        plan = None
        if self._planner is not None and free is not None and needed > free:
            plan = self._planner(needed, free)
        self._plan = plan if plan is not None and plan.unload and plan.enough else None
        if plan is None or self._offers_loaded():
            self.room.hide()
            self.make_room_button.hide()
            return
        if self._plan is None:
            self.room.setText(
                "Unloading every idle, unpinned instance would not free enough for this load."
            )
            self.make_room_button.hide()
        else:
            names = ", ".join(f"{c.instance_id} ({human_bytes(c.vram_bytes)})" for c in plan.unload)
            self.room.setText(
                f"To make room, unload {names}: frees about {human_bytes(plan.freed_bytes)}, "
                f"then about {human_bytes(plan.free_bytes + plan.freed_bytes)} is free."
            )
            self.make_room_button.show()
            self.make_room_button.setEnabled(not self._busy)
        self.room.show()

    def _on_make_room_clicked(self) -> None:
        if self._plan is None or not self.validate():
            return
        self.make_room_requested.emit(self.request(), [c.instance_id for c in self._plan.unload])

    # ------------------------------------------------------------------ the server's estimate

    def _estimate_request(self) -> LoadRequest:
        return replace(self.request(), ttl_seconds=None, identifier=None)

    def _on_estimate_timer_timeout(self) -> None:
        request = self._estimate_request()
        if self._estimator is None or request == self._estimated:
            return
        if self._estimate_task is not None:
            self._estimate_task.cancel()
        self._estimate_task = asyncio.ensure_future(self._ask_estimate(self._estimator, request))

    async def _ask_estimate(self, estimator: Estimator, request: LoadRequest) -> None:
        estimate = await estimator(request, self.model.type == "embedding")
        if request != self._estimate_request():
            return  # the settings changed meanwhile: the next answer is the one to show
        self._estimated = request
        self._server_estimate = (request, estimate) if estimate is not None else None
        self._show_server_estimate(estimate)
        self._refresh()  # the fit and the room offer follow LM Studio's own figure

    def _show_server_estimate(self, estimate: ServerEstimate | None) -> None:
        if estimate is None:
            self.server_estimate.hide()
            return
        text = f"LM Studio's own estimate: {human_bytes(estimate.vram_bytes)} of VRAM"
        if estimate.passes_guardrails is False:
            self.server_estimate.setStyleSheet("color: #b00020;")
            text += "; its guardrails would refuse this load."
        else:
            self.server_estimate.setStyleSheet("")
            text += "; within its guardrails." if estimate.passes_guardrails else "."
        self.server_estimate.setText(text)
        self.server_estimate.show()

    def done(self, result: int) -> None:
        if self._estimate_task is not None:
            self._estimate_task.cancel()
        self._estimate_timer.stop()
        super().done(result)

    # ------------------------------------------------------------------ validation and result

    def validate(self) -> bool:
        """Check every field; show each problem beside its field. True when all is well."""
        problems: dict[QLabel, str] = {}
        max_ctx = self.model.max_context_length
        if max_ctx and self.context.value() > max_ctx:
            problems[self.context_error] = f"At most {max_ctx} for this model."
        if self.ttl_on.isChecked() and self.ttl_value.value() < 1:
            problems[self.ttl_error] = "Give an idle time of at least one minute."
        ident = self.identifier.text().strip()
        taken = {i.id for m in self._models.values() for i in m.instances}
        if ident and not IDENTIFIER.match(ident):
            problems[self.identifier_error] = (
                "Use letters, digits and . _ - / @ : only, without spaces."
            )
        elif ident and ident in taken:
            problems[self.identifier_error] = f"An instance called {ident} is already loaded."
        for label in (self.gpu_error, self.context_error, self.ttl_error, self.identifier_error):
            text = problems.get(label)
            label.setText(text or "")
            label.setVisible(bool(text))
        ok = not problems
        self.load_button.setEnabled(ok and not self._busy)
        return ok

    def request(self) -> LoadRequest:
        def opt(spin: QSpinBox) -> int | None:
            return None if spin.value() == spin.minimum() else spin.value()

        ttl = (
            self.ttl_value.value() * int(self.ttl_unit.currentData())
            if self.ttl_on.isChecked()
            else None
        )
        return LoadRequest(
            model_key=self.model.key,
            context_length=self.context.value(),
            gpu=self._gpu_choice(),
            ttl_seconds=ttl,
            identifier=self.identifier.text().strip() or None,
            flash_attention=self.flash.currentData(),
            eval_batch_size=opt(self.batch),
            num_experts=opt(self.experts) if is_moe(self.model) else None,
            offload_kv_cache_to_gpu=self.kv_gpu.currentData(),
            parallel=opt(self.parallel),
            server=self._server,
        )

    def _on_load_clicked(self) -> None:
        if not self.validate():
            return
        if self._offers_loaded():
            self.use_loaded.emit(self.model.instances[0].id)
            self.accept()
            return
        self.load_requested.emit(self.request())

    # ------------------------------------------------------------------ progress from the window

    def show_started(self, request: LoadRequest) -> None:
        self._busy = True
        self._loading_key = request.model_key
        self._started = time.monotonic()
        self.progress.show()
        self.status.setStyleSheet("")
        self._on_tick_timeout()
        self._tick.start()
        self.validate()

    def show_progress(self, fraction: float) -> None:
        """The server's own progress of the load (0..1), where it reports one: the bar stops
        being a busy indicator and shows how far it is."""
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1000)
        self.progress.setValue(round(min(max(fraction, 0.0), 1.0) * 1000))
        self.progress.setFormat(f"{fraction:.0%}")

    def show_finished(self, result: LoadResult) -> None:
        self._stop()
        if result.not_applied:
            self.status.setStyleSheet("color: #8a5a00;")
            self.status.setText(
                f"Loaded as {result.instance_id}. {not_applied_sentence(result, ttl_enforced=True)}"
            )
        else:
            self.accept()

    def show_failed(self, message: str) -> None:
        self._stop()
        self.status.setStyleSheet("color: #b00020;")
        self.status.setText(message)

    def _stop(self) -> None:
        self._busy = False
        self._started = None
        self._tick.stop()
        self.progress.hide()
        self.progress.setRange(0, 0)  # the next load starts as a busy indicator again
        self.validate()
