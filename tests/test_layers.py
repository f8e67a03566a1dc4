"""Architecture and toolchain guards: the import arrows, and the PySide6 6.12 refcount bug."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import importlib, sys
for name in {modules!r}:
    importlib.import_module(name)
forbidden = {forbidden!r}
hits = [m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden)]
print(",".join(sorted(hits)))
"""


def imported(modules: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """What importing ``modules`` in a fresh interpreter pulls in from ``forbidden``.

    A fresh interpreter, because this test process has Qt loaded already through pytest-qt.
    """
    code = CHECK.format(modules=modules, forbidden=forbidden)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    return out.split(",") if out else []


QT = ("PySide6", "shiboken6", "qasync")


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (("lmgui.api", "lmgui.api.client", "lmgui.api.lms"), (*QT, "lmgui.core", "lmgui.sim")),
        (("lmgui.sim", "lmgui.sim.__main__"), (*QT, "lmgui.core")),
        (
            (
                "lmgui.core.vram",
                "lmgui.core.paths",
                "lmgui.core.secrets",
                "lmgui.core.responses",
                "lmgui.core.requests",
                "lmgui.core.format",
                "lmgui.core.chat_store",
                "lmgui.core.chat_export",
                "lmgui.core.autostart",
            ),
            QT,
        ),
        (
            (
                "lmgui.core.poller",
                "lmgui.core.actions",
                "lmgui.core.ledger",
                "lmgui.core.settings",
                "lmgui.core.snapshot",
                "lmgui.core.gpu",
            ),
            ("PySide6.QtWidgets", "PySide6.QtGui", "lmgui.qtmodels", "lmgui.ui", "lmgui.app"),
        ),
        (("lmgui.qtmodels.model_tree",), ("PySide6.QtWidgets", "lmgui.ui", "lmgui.app")),
        (("lmgui.cli",), QT),
    ],
)
def test_lower_layers_import_nothing_above_them(
    modules: tuple[str, ...], forbidden: tuple[str, ...]
) -> None:
    assert imported(modules, forbidden) == []


def test_the_import_probe_sees_a_violation() -> None:
    assert "PySide6.QtCore" in imported(("PySide6.QtCore",), QT)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="True is immortal from Python 3.12 on")
def test_signal_emit_keeps_the_refcount_of_true(qapp: object) -> None:
    """PySide6 6.12.0 drops a reference to True on every emit and aborts 3.11 (toolchain.md)."""
    from PySide6.QtCore import QObject, Signal

    class Source(QObject):
        sig = Signal(int)

    s = Source()
    before = sys.getrefcount(True)
    for i in range(200):
        s.sig.emit(i)
    assert sys.getrefcount(True) - before >= 0
