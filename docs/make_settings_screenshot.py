"""Render docs/settings-servers.png: the Settings dialog's Server tab with three server profiles
(one switched off), the second shown with its stored token.

    python docs/make_settings_screenshot.py      # offscreen, no server needed
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication

from lmgui.core.profiles import Profile
from lmgui.core.settings import SettingsValues
from lmgui.ui.settings_dialog import SettingsDialog

DOCS = Path(__file__).resolve().parent


def has_token(url: str) -> bool | None:
    """The GPU box has a token stored, the workstation none, the laptop's was never read."""
    if "192.168.1.20" in url:
        return True
    return False if "127.0.0.1" in url else None


def main() -> None:
    app = QApplication.instance() or QApplication([])
    values = SettingsValues(
        "http://127.0.0.1:1234",
        None,
        2000,
        0.0,
        True,
        profiles=(
            Profile("Workstation", "http://127.0.0.1:1234"),
            Profile("GPU box", "http://192.168.1.20:1234"),
            Profile("Laptop", "http://192.168.1.31:1234", enabled=False),
        ),
    )
    dialog = SettingsDialog(values, has_token=has_token, keyring_note=None)
    dialog.profile_box.setCurrentIndex(1)
    dialog.show()
    app.processEvents()
    dialog.grab().save(str(DOCS / "settings-servers.png"))
    print("wrote", DOCS / "settings-servers.png")


if __name__ == "__main__":
    main()
