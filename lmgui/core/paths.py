"""Where lmgui keeps its files (platformdirs: XDG on Linux, the usual places elsewhere), and
keeping them private.

The chat history (images included), the log with its tracebacks, ``chat --log`` files and the
state files say what a user asked and what came back: on POSIX they are created 0600 in folders
0700, and ``AppPaths.tighten()`` narrows files an older lmgui left wider, at every start. (On
Windows the per-user profile folders already keep other users out; ``chmod`` there only sets the
read-only flag, so nothing is changed.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import platformdirs

from lmgui.api.urls import normalize_base_url

__all__ = [
    "AppPaths",
    "PrivateRotatingFileHandler",
    "open_private",
    "private_dir",
    "private_file",
    "server_slug",
]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_POSIX = os.name == "posix"

log = logging.getLogger(__name__)


def server_slug(url: str) -> str:
    """A file-name-safe name of a server ("127-0-0-1-1234"), for the files kept per server."""
    return re.sub(r"[^A-Za-z0-9]+", "-", normalize_base_url(url).split("://", 1)[-1]).strip("-")


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (its parents are left as they are)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    if _POSIX:
        os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """``path`` exists, readable and writable by its owner only, in a private folder."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    os.close(fd)
    if _POSIX:
        os.chmod(path, PRIVATE_FILE)
    return path


def open_private(path: Path, mode: str = "a") -> IO[str]:
    """A text file opened for appending or writing, created (or narrowed to) 0600."""
    private_file(path)
    return path.open(mode, encoding="utf-8")


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log whose every file (the new one after each rollover too) is 0600."""

    def _open(self) -> io.TextIOWrapper:
        private_file(Path(self.baseFilename))
        return super()._open()


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

    def ledger(self, server_url: str) -> Path:
        """Where lmgui keeps what it knows of one server's instances (core/ledger.py)."""
        return self.state_dir / f"instances-{server_slug(server_url)}.json"

    def snapshots(self, server_url: str) -> Path:
        """Where lmgui keeps one server's saved loaded sets (core/saved_sets.py): user data."""
        return self.data_dir / f"snapshots-{server_slug(server_url)}.json"

    def tighten(self) -> None:
        """Narrow lmgui's existing folders to 0700 and files to 0600 (POSIX); never fails."""
        if not _POSIX:
            return
        for top in {self.config_dir, self.data_dir, self.state_dir, self.log_dir}:
            if not top.is_dir():
                continue
            for folder, _dirs, files in os.walk(top):
                with contextlib.suppress(OSError):
                    os.chmod(folder, PRIVATE_DIR)
                for name in files:
                    path = os.path.join(folder, name)
                    if os.path.islink(path):
                        continue
                    try:
                        os.chmod(path, PRIVATE_FILE)
                    except OSError as exc:
                        log.warning("cannot make %s private: %s", path, exc.strerror)
