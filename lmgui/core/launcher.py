"""How lmgui is started from outside: the installed ``lmgui`` executable, and the XDG launcher
(``lmgui desktop-entry install``) that a desktop's application menu shows.

The login entries (core/autostart.py) use the same executable lookup and the same quoting, so a
launcher and an autostart entry written by a pipx or ``uv tool`` installation both run that
installation's ``lmgui`` by its absolute path: a desktop session's PATH often lacks ~/.local/bin.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lmgui.core.package_data import resource_path

__all__ = [
    "APP_ID",
    "DesktopEntry",
    "desktop_string",
    "exec_line",
    "lmgui_command",
    "xdg_desktop",
]

APP_ID = "lmgui"
"""The desktop file id (lmgui.desktop, also QGuiApplication.desktopFileName) and the icon name."""

SCRIPT = "lmgui.exe" if os.name == "nt" else "lmgui"

# The Desktop Entry Specification's reserved characters: an Exec argument holding one is quoted.
_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")


def xdg_desktop(platform: str = sys.platform) -> bool:
    """Whether this system's desktops read freedesktop.org (XDG) desktop entries."""
    return platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _recorded_script() -> Path | None:
    """The console script the installer recorded for the lmgui distribution being run."""
    try:
        dist = metadata.distribution("lmgui")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == SCRIPT and file.parent.name in ("bin", "Scripts"):
            path = Path(str(dist.locate_file(file))).resolve()
            if _runnable(path):
                return path
    return None


def lmgui_command() -> list[str]:
    """The absolute command that starts this installation of lmgui.

    The console script its installer recorded (pip, pipx and uv write it into RECORD: the venv's
    bin/lmgui, or ~/.local/bin/lmgui for a user install), else the one beside this interpreter,
    else this interpreter running the package (a checkout run without installing).
    """
    script = _recorded_script()
    if script is None:
        beside = Path(sysconfig.get_path("scripts")) / SCRIPT
        script = beside.resolve() if _runnable(beside) else None
    return [str(script)] if script is not None else [sys.executable, "-m", "lmgui"]


def desktop_string(value: str) -> str:
    """A value of type string in a desktop entry: backslash and control characters escaped."""
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    )


def _exec_arg(arg: str) -> str:
    arg = arg.replace("%", "%%")  # a lone % would start a field code
    if any(c in _RESERVED for c in arg) or not arg:
        arg = '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'
    return arg


def exec_line(argv: Sequence[str]) -> str:
    """An Exec value that runs ``argv``: each argument quoted as the specification asks, then the
    string escapes on top (so a backslash in a quoted argument is written as four)."""
    return desktop_string(" ".join(_exec_arg(a) for a in argv))


@dataclass(frozen=True)
class DesktopEntry:
    """lmgui's launcher and its icon under one XDG data folder ($XDG_DATA_HOME)."""

    data_home: Path

    @classmethod
    def default(cls) -> DesktopEntry:
        # The specification ignores a relative $XDG_DATA_HOME.
        value = os.environ.get("XDG_DATA_HOME", "")
        home = Path(value) if os.path.isabs(value) else Path.home() / ".local" / "share"
        return cls(home)

    @property
    def launcher(self) -> Path:
        return self.data_home / "applications" / f"{APP_ID}.desktop"

    @property
    def icon(self) -> Path:
        return self.data_home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"

    def text(self, command: Sequence[str]) -> str:
        """The shipped resources/lmgui.desktop, running ``command`` by its absolute path."""
        lines = []
        for line in resource_path(f"{APP_ID}.desktop").read_text(encoding="utf-8").splitlines():
            if line.startswith("Exec="):
                # TryExec: a launcher whose lmgui was uninstalled is hidden, not left broken.
                lines.append(f"TryExec={desktop_string(command[0])}")
                lines.append(f"Exec={exec_line(command)}")
            elif not line.startswith("TryExec="):
                lines.append(line)
        return "\n".join(lines) + "\n"

    def install(self, command: Sequence[str]) -> None:
        _write(self.icon, resource_path("icons", "app.svg").read_bytes())
        _write(self.launcher, self.text(command).encode("utf-8"))

    def remove(self) -> list[Path]:
        """Remove the launcher and the icon; the ones that were there."""
        removed = []
        for path in (self.launcher, self.icon):
            if path.exists():
                path.unlink()
                removed.append(path)
        return removed


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole: a desktop scanning the folder never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
