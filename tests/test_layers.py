"""Architecture and toolchain guards: the import arrows, and the PySide6 6.12 refcount bug."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
        # At run time too: the static check below reads only module-level imports, and the
        # command line must stay Qt-free even when run.
        (("lmgui.api",), (*QT, "lmgui.core", "lmgui.sim")),
        (("lmgui.sim", "lmgui.sim.__main__"), (*QT, "lmgui.core")),
        (("lmgui.cli",), QT),
    ],
)
def test_lower_layers_import_nothing_above_them(
    modules: tuple[str, ...], forbidden: tuple[str, ...]
) -> None:
    assert imported(modules, forbidden) == []


def test_the_import_probe_sees_a_violation() -> None:
    assert "PySide6.QtCore" in imported(("PySide6.QtCore",), QT)


# ----------------------------------------------------------------------------- every module

ROOT = Path(__file__).resolve().parent.parent

QTCORE_IN_CORE = {
    "lmgui.core.actions",
    "lmgui.core.chat",
    "lmgui.core.connection",
    "lmgui.core.event_log",
    "lmgui.core.fleet",
    "lmgui.core.notify",
    "lmgui.core.poller",
    "lmgui.core.settings",
    "lmgui.core.snapshot_actions",
}
"""The core modules that may use QtCore (signals, timers, QSettings). Every other core module is
Qt-free: a new one is checked the day it is added, without touching this test."""

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("lmgui.api", (*QT, "lmgui.core", "lmgui.sim", "lmgui.qtmodels", "lmgui.ui", "lmgui.app")),
    ("lmgui.sim", (*QT, "lmgui.core", "lmgui.qtmodels", "lmgui.ui", "lmgui.app", "lmgui.cli")),
    (
        "lmgui.core",
        ("PySide6.QtWidgets", "PySide6.QtGui", "lmgui.qtmodels", "lmgui.ui", "lmgui.app"),
    ),
    ("lmgui.qtmodels", ("PySide6.QtWidgets", "lmgui.ui", "lmgui.app", "lmgui.cli")),
    ("lmgui.ui", ("lmgui.app", "lmgui.cli")),
]


def module_imports(path: Path, name: str) -> set[str]:
    """What a module imports when it is imported: module-level statements only (an import inside
    a function, such as the CLI's lazy one of the window, runs later, if ever), and not what
    ``if TYPE_CHECKING:`` guards."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.finalbody)

    visit(tree.body)
    return found


def lmgui_modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "lmgui").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def closure(name: str, graph: dict[str, set[str]], modules: dict[str, Path]) -> set[str]:
    """Every module importing ``name`` brings in, through lmgui's own modules."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        for imp in graph.get(current, ()):
            if imp in seen:
                continue
            seen.add(imp)
            # Importing a.b.c imports the packages a and a.b too.
            parts = imp.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in modules and prefix not in seen | {current}:
                    seen.add(prefix)
                    todo.append(prefix)
            if imp in modules:
                todo.append(imp)
    return seen


def _hits(imports: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(i for i in imports if any(i == f or i.startswith(f + ".") for f in forbidden))


def test_every_module_of_each_layer_imports_nothing_above_it() -> None:
    modules = lmgui_modules()
    graph = {name: module_imports(path, name) for name, path in modules.items()}
    problems = []
    for name in modules:
        reach = closure(name, graph, modules)
        for layer, forbidden in LAYERS:
            if name == layer or name.startswith(layer + "."):
                problems += [f"{name} -> {hit}" for hit in _hits(reach, forbidden)]
        if name.startswith("lmgui.core.") and name not in QTCORE_IN_CORE:
            problems += [f"{name} (Qt-free) -> {hit}" for hit in _hits(reach, QT)]
    assert problems == []


def test_the_static_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from PySide6.QtWidgets import QWidget\nif TYPE_CHECKING:\n    import qasync\n")
    assert module_imports(bad, "lmgui.core.bad") >= {"PySide6.QtWidgets"}
    assert "qasync" not in module_imports(bad, "lmgui.core.bad")


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
