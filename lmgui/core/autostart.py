"""Start lmgui on login: an XDG autostart entry on Linux, the Run key on Windows, a LaunchAgent
on macOS. Written with the standard library only."""

from __future__ import annotations

import os
import plistlib
import sys
from pathlib import Path

from lmgui.core.launcher import desktop_string, exec_line, lmgui_command

__all__ = ["Autostart"]

APP = "lmgui"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


if sys.platform == "win32":
    import winreg

    def _win_set(value: str) -> None:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as k:
            winreg.SetValueEx(k, APP, 0, winreg.REG_SZ, value)

    def _win_get() -> str | None:
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as k:
                return str(winreg.QueryValueEx(k, APP)[0])
        except FileNotFoundError:
            return None

    def _win_delete() -> None:
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as k:
                winreg.DeleteValue(k, APP)
        except FileNotFoundError:
            pass

else:

    def _win_set(value: str) -> None:
        raise OSError("The Windows registry exists only on Windows.")

    def _win_get() -> str | None:
        return None

    def _win_delete() -> None:
        return None


def _command() -> list[str]:
    """How to start this lmgui, minimized to the tray: its own executable, by absolute path
    (a pipx or uv tool install's lmgui is not on a login session's PATH)."""
    return [*lmgui_command(), "--minimized"]


class Autostart:
    def __init__(self, platform: str = sys.platform, home: Path | None = None) -> None:
        self.platform = platform
        self.home = home or Path.home()

    @property
    def supported(self) -> bool:
        return self.platform.startswith(("linux", "freebsd", "win", "darwin"))

    def _xdg_path(self) -> Path:
        base = os.environ.get("XDG_CONFIG_HOME") or str(self.home / ".config")
        return Path(base) / "autostart" / f"{APP}.desktop"

    def _mac_path(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"io.github.{APP}.plist"

    @property
    def path(self) -> Path | None:
        if self.platform == "darwin":
            return self._mac_path()
        if self.platform.startswith(("linux", "freebsd")):
            return self._xdg_path()
        return None

    def is_enabled(self) -> bool:
        if self.platform.startswith("win"):
            return _win_get() is not None
        path = self.path
        return path is not None and path.exists()

    def enable(self) -> None:
        cmd = _command()
        if self.platform.startswith("win"):
            _win_set(" ".join(f'"{c}"' for c in cmd))
            return
        path = self.path
        if path is None:
            raise OSError("Starting on login is not supported on this system.")
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.platform == "darwin":
            plist = {"Label": f"io.github.{APP}", "ProgramArguments": cmd, "RunAtLoad": True}
            path.write_bytes(plistlib.dumps(plist))
            return
        path.write_text(
            "[Desktop Entry]\n"
            "Type=Application\n"
            f"Name={APP}\n"
            "Comment=LM Studio model manager, in the tray\n"
            f"TryExec={desktop_string(cmd[0])}\n"
            f"Exec={exec_line(cmd)}\n"
            "Icon=lmgui\n"
            "Terminal=false\n"
            "X-GNOME-Autostart-enabled=true\n",
            encoding="utf-8",
        )

    def disable(self) -> None:
        if self.platform.startswith("win"):
            _win_delete()
            return
        path = self.path
        if path is not None:
            path.unlink(missing_ok=True)
