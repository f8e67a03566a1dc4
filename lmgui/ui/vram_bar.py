"""The VRAM bar under the table: lmgui's estimate of what the loaded instances hold, against the
GPUs' measured total (NVML), else the user's VRAM budget, else the server's VRAM as LM Studio
surveyed it, and the measured figures when there are any.

The widget only shows figures it is given; reading NVML is the caller's job (once per poll).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from lmgui.api.records import ServerHardware
from lmgui.core.format import human_bytes
from lmgui.core.gpu import GpuMemory

__all__ = ["VramBar"]

_STEPS = 1000
"""The bar's range: per mille, so a few hundred MB still move it on a 24 GB card."""


class VramBar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Estimated VRAM in use")
        self.bar.setTextVisible(True)
        self.bar.setMinimumWidth(280)
        self.bar.setRange(0, _STEPS)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.gpu_label = QLabel()
        self.gpu_label.setTextFormat(Qt.TextFormat.PlainText)  # GPU names come from the driver
        self.gpu_label.setAccessibleName("Measured GPU memory")

        row = QHBoxLayout()
        self.title = QLabel("VRAM:")
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # names a server: the user's words
        row.addWidget(self.title)
        row.addWidget(self.bar, 1)
        row.addWidget(self.label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)  # the window's layout owns the margins
        layout.addLayout(row)
        layout.addWidget(self.gpu_label)

    def show_figures(
        self,
        estimated_bytes: int,
        budget_gb: float,
        gpus: list[GpuMemory] | None,
        server: ServerHardware | None = None,
    ) -> None:
        """The estimate against the GPUs' total when NVML measured them, else the budget, else
        the server's own VRAM (its hardware survey)."""
        surveyed = server is not None and not gpus and not budget_gb
        if gpus:
            total = sum(g.total_bytes for g in gpus)
        elif budget_gb:
            total = int(budget_gb * 1e9)
        else:
            total = server.vram_bytes if server is not None else 0
        self.bar.setValue(min(_STEPS, int(estimated_bytes / total * _STEPS)) if total else 0)
        self.bar.setFormat(
            f"{human_bytes(estimated_bytes)} estimated"
            + (f" of {human_bytes(total)}" if total else " (no VRAM budget set)")
        )
        if gpus:
            self.label.setText("estimate; measured below")
        elif budget_gb:
            self.label.setText("estimate, against your VRAM budget")
        elif surveyed:
            self.label.setText("estimate, against the server's VRAM")
        else:
            self.label.setText("estimate (set a budget in Settings)")
        if gpus:
            self.gpu_label.setText(
                "Measured (NVML): "
                + "; ".join(
                    f"{g.name}: {human_bytes(g.used_bytes)} of {human_bytes(g.total_bytes)} used"
                    for g in gpus
                )
            )
        elif surveyed and server is not None:
            each = "; ".join(f"{g.name}: {human_bytes(g.vram_bytes)}" for g in server.gpus)
            self.gpu_label.setText(
                "The server's GPUs (LM Studio's survey): "
                + (each or f"{human_bytes(server.vram_bytes)} of VRAM")
            )
        self.gpu_label.setVisible(bool(gpus) or surveyed)
