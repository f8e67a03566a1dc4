"""Server profiles: the servers a user named (name, URL, enabled or not), in a private JSON file
in the config folder (``servers.json``). Qt-free, so the command line reads the same list as the
window.

Tokens are not here: each lives in the OS keyring under its server's URL (``core/secrets.py``).
The file is replaced whole (a temporary file, then ``os.replace``), created 0600 in a 0700
folder; a file lmgui cannot read is read as no profiles and moved aside on the next save, never
overwritten.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmgui.api.errors import InvalidServerUrl
from lmgui.api.urls import check_base_url, normalize_base_url
from lmgui.core.paths import PRIVATE_FILE, private_dir

__all__ = ["SERVERS_FILE", "Profile", "ProfileStore"]

log = logging.getLogger(__name__)

SERVERS_FILE = "servers.json"
"""The profiles' file name in the config folder."""

_VERSION = 2
"""2: the enabled flag means "watch this server" (lmgui watches every enabled server at once).
In a version 1 file (lmgui before the fleet, where a profile was only a server to switch to)
the flag meant nothing: ``Settings.profiles`` turns it into "watch only the server in use"."""


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    """Normalized (``normalize_base_url``): the keyring's key for the server's token."""
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "enabled": self.enabled}

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """``ValueError`` when ``data`` is not a profile."""
        if not isinstance(data, dict):
            raise ValueError("a profile is not an object")
        name, url, enabled = data.get("name"), data.get("url"), data.get("enabled", True)
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a profile has no name")
        if not isinstance(url, str) or not url.strip():
            raise ValueError(f"the profile {name!r} has no URL")
        if not isinstance(enabled, bool):
            raise ValueError(f"the profile {name!r} has an enabled flag that is not true or false")
        return cls(name.strip(), normalize_base_url(url), enabled)


class ProfileStore:
    """The server profiles in ``path`` (``config_dir/servers.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def version(self) -> int | None:
        """The file's format version (None: no file, or none readable)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        version = raw.get("version") if isinstance(raw, dict) else None
        return version if isinstance(version, int) and not isinstance(version, bool) else None

    def all(self) -> list[Profile]:
        """Every profile in the file's order; what lmgui cannot read is left out (and logged)."""
        return self._read()[0]

    def enabled(self) -> list[Profile]:
        return [p for p in self.all() if p.enabled]

    def find(self, name_or_url: str) -> Profile | None:
        """The profile of this name (case-insensitive), else the one at this URL, else None."""
        wanted = name_or_url.strip()
        if not wanted:
            return None
        profiles = self.all()
        folded = wanted.casefold()
        for p in profiles:
            if p.name.casefold() == folded:
                return p
        try:
            url = check_base_url(wanted)
        except InvalidServerUrl:
            return None
        return next((p for p in profiles if p.url == url), None)

    def save(self, profiles: Iterable[Profile]) -> None:
        """Keep exactly ``profiles``. ``OSError`` when it cannot (the old file is then intact)."""
        body = {"version": _VERSION, "servers": [p.to_dict() for p in profiles]}
        if self._read()[1]:
            # Never overwrite a file lmgui could not read (a newer lmgui's, a hand edit): keep it
            # beside, for the user.
            aside = self.path.with_suffix(f".unreadable-{int(time.time())}.json")
            self.path.replace(aside)
            log.warning("kept the unreadable server profiles %s as %s", self.path, aside)
        private_dir(self.path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".servers-")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, indent=1, ensure_ascii=False)
            if os.name == "posix":
                os.chmod(tmp, PRIVATE_FILE)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _read(self) -> tuple[list[Profile], bool]:
        """The profiles lmgui can read, and whether anything in the file was unreadable."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return [], False
        except (OSError, ValueError) as exc:
            log.warning("cannot read the server profiles in %s: %s", self.path, exc)
            return [], True
        servers = raw.get("servers") if isinstance(raw, dict) else None
        if not isinstance(servers, list):
            log.warning("cannot read the server profiles in %s: no list of servers", self.path)
            return [], True
        out: list[Profile] = []
        unreadable = False
        for entry in servers:
            try:
                out.append(Profile.from_dict(entry))
            except ValueError as exc:
                log.warning("skipping a server profile in %s: %s", self.path, exc)
                unreadable = True
        return out, unreadable
