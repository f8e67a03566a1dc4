"""Where lmgui keeps its files (platformdirs: XDG on Linux, the usual places elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

__all__ = ["AppPaths"]

APP_NAME = "lmgui"


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    state_dir: Path
    log_dir: Path

    @classmethod
    def default(cls) -> AppPaths:
        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            state_dir=Path(platformdirs.user_state_dir(APP_NAME, appauthor=False)),
            log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        )

    @classmethod
    def under(cls, root: Path) -> AppPaths:
        """Everything below one folder (tests, portable installs)."""
        return cls(root / "config", root / "data", root / "state", root / "log")
