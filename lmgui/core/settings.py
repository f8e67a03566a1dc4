"""lmgui's settings, typed, over QSettings (an INI file in the user's config folder).

QtCore only. Window layout (geometry, splitter, columns, sort, filter) is stored by the window
under its own keys through ``value``/``set_value``; everything else has a typed property here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from lmgui.api.client import DEFAULT_BASE_URL, normalize_base_url
from lmgui.core.notify import KINDS
from lmgui.core.paths import private_dir
from lmgui.core.profiles import SERVERS_FILE, Profile, ProfileStore
from lmgui.core.requests import LoadRequest

__all__ = ["Settings", "SettingsValues"]

log = logging.getLogger(__name__)

_OLD_PROFILES_KEY = "server/profiles"
"""Where lmgui kept the server profiles before ``servers.json`` (read once, to migrate)."""


@dataclass(frozen=True)
class SettingsValues:
    server_url: str
    """The profile selected when the dialog was applied: the window's and the CLI's server."""
    token: str | None = field(repr=False)
    """The token change of ``server_url``'s server: None leaves the stored token as it is; ""
    removes it. The same change is in ``token_changes`` too."""
    poll_interval_ms: int
    vram_budget_gb: float
    confirm_unload: bool
    hidden_poll_interval_ms: int = 5000
    profiles: tuple[Profile, ...] = ()
    """Every server profile with its enabled flag ("Watch this server"), in the dialog's order;
    empty leaves the stored profiles as they are."""
    close_to_tray: bool = True
    start_minimized: bool = False
    start_on_login: bool = False
    demo_traffic: bool = True
    """``lmgui --demo`` simulates other apps using the demo server."""
    make_way: bool = False
    """Unload idle instances when another program needs the GPU (a local NVIDIA GPU)."""
    make_way_margin_gb: float = 2.0
    make_way_auto_restore: bool = True
    notify: dict[str, bool] = field(default_factory=dict)
    favourites: tuple[str, ...] = ()
    forget_defaults: tuple[str, ...] = ()
    token_changes: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """(normalized URL, new token or "" to remove it) for every server whose token the user
    changed, once per server, in profile order. Tokens: never in a repr or a log line."""


class Settings:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self.path = path
        self.q = QSettings(str(path), QSettings.Format.IniFormat)

    def value(self, key: str, default: Any = None) -> Any:
        return self.q.value(key, default)

    def set_value(self, key: str, value: Any) -> None:
        self.q.setValue(key, value)

    def _get(self, key: str, default: Any, kind: type) -> Any:
        raw = self.q.value(key, default)
        if kind is bool and isinstance(raw, str):
            return raw.lower() in ("1", "true", "yes")
        try:
            return kind(raw)
        except (TypeError, ValueError):
            return default

    @property
    def server_url(self) -> str:
        return normalize_base_url(str(self._get("server/url", DEFAULT_BASE_URL, str)))

    @server_url.setter
    def server_url(self, url: str) -> None:
        self.q.setValue("server/url", normalize_base_url(url))

    @property
    def poll_interval_ms(self) -> int:
        return max(500, int(self._get("poll/interval_ms", 2000, int)))

    @poll_interval_ms.setter
    def poll_interval_ms(self, ms: int) -> None:
        self.q.setValue("poll/interval_ms", int(ms))

    @property
    def vram_budget_gb(self) -> float:
        """The VRAM the fit check counts on when NVML is not available; 0 means unknown."""
        return max(0.0, float(self._get("vram/budget_gb", 0.0, float)))

    @vram_budget_gb.setter
    def vram_budget_gb(self, gb: float) -> None:
        self.q.setValue("vram/budget_gb", float(gb))

    @property
    def confirm_unload(self) -> bool:
        return bool(self._get("unload/confirm", True, bool))

    @confirm_unload.setter
    def confirm_unload(self, on: bool) -> None:
        self.q.setValue("unload/confirm", bool(on))

    # ------------------------------------------------------------------ tray and background

    @property
    def hidden_poll_interval_ms(self) -> int:
        """Polling while the window is hidden (the tray only)."""
        return max(500, int(self._get("poll/hidden_interval_ms", 5000, int)))

    @hidden_poll_interval_ms.setter
    def hidden_poll_interval_ms(self, ms: int) -> None:
        self.q.setValue("poll/hidden_interval_ms", int(ms))

    @property
    def close_to_tray(self) -> bool:
        return bool(self._get("tray/close_to_tray", True, bool))

    @close_to_tray.setter
    def close_to_tray(self, on: bool) -> None:
        self.q.setValue("tray/close_to_tray", bool(on))

    @property
    def close_to_tray_explained(self) -> bool:
        """Whether the user was told once that closing the window keeps lmgui in the tray."""
        return bool(self._get("tray/close_explained", False, bool))

    @close_to_tray_explained.setter
    def close_to_tray_explained(self, on: bool) -> None:
        self.q.setValue("tray/close_explained", bool(on))

    @property
    def make_way(self) -> bool:
        """Make way for other GPU apps: off until the user turns it on."""
        return bool(self._get("make_way/enabled", False, bool))

    @make_way.setter
    def make_way(self, on: bool) -> None:
        self.q.setValue("make_way/enabled", bool(on))

    @property
    def make_way_margin_gb(self) -> float:
        """Free VRAM kept for other programs while making way."""
        return min(256.0, max(0.1, float(self._get("make_way/margin_gb", 2.0, float))))

    @make_way_margin_gb.setter
    def make_way_margin_gb(self, gb: float) -> None:
        self.q.setValue("make_way/margin_gb", float(gb))

    @property
    def make_way_auto_restore(self) -> bool:
        return bool(self._get("make_way/auto_restore", True, bool))

    @make_way_auto_restore.setter
    def make_way_auto_restore(self, on: bool) -> None:
        self.q.setValue("make_way/auto_restore", bool(on))

    @property
    def make_way_offered(self) -> bool:
        """The one-time offer to make way was shown."""
        return bool(self._get("make_way/offered", False, bool))

    @make_way_offered.setter
    def make_way_offered(self, on: bool) -> None:
        self.q.setValue("make_way/offered", bool(on))

    @property
    def demo_traffic(self) -> bool:
        """The demo's simulated other apps (JIT loads, busy instances), on until turned off."""
        return bool(self._get("demo/traffic", True, bool))

    @demo_traffic.setter
    def demo_traffic(self, on: bool) -> None:
        self.q.setValue("demo/traffic", bool(on))

    @property
    def start_minimized(self) -> bool:
        return bool(self._get("tray/start_minimized", False, bool))

    @start_minimized.setter
    def start_minimized(self, on: bool) -> None:
        self.q.setValue("tray/start_minimized", bool(on))

    def notify(self, kind: str) -> bool:
        """Whether notifications of this kind are on (all are, until turned off)."""
        return bool(self._get(f"notify/{kind}", True, bool))

    def set_notify(self, kind: str, on: bool) -> None:
        self.q.setValue(f"notify/{kind}", bool(on))

    @property
    def favourites(self) -> list[str]:
        raw = self.q.value("load/favourites", "[]")
        try:
            data = json.loads(str(raw))
        except ValueError:
            return []
        return [k for k in data if isinstance(k, str)] if isinstance(data, list) else []

    @favourites.setter
    def favourites(self, keys: list[str]) -> None:
        self.q.setValue("load/favourites", json.dumps(list(dict.fromkeys(keys))))

    @property
    def recent(self) -> list[str]:
        """Models lmgui loaded, most recent first."""
        raw = self.q.value("load/recent", "[]")
        try:
            data = json.loads(str(raw))
        except ValueError:
            return []
        return [k for k in data if isinstance(k, str)] if isinstance(data, list) else []

    def forget_load_defaults(self, model_key: str) -> None:
        data = {k: v.to_dict() for k, v in self.load_defaults().items() if k != model_key}
        self.q.setValue("load/last_used", json.dumps(data))

    @property
    def profiles_path(self) -> Path:
        """The server profiles' file (``servers.json``), beside this settings file."""
        return self.path.parent / SERVERS_FILE

    @property
    def profiles(self) -> list[Profile]:
        """Server profiles (name, URL, enabled), kept in ``servers.json`` (``core/profiles.py``,
        which the command line reads too). The token of each lives in the keyring, by URL."""
        store = ProfileStore(self.profiles_path)
        if not store.exists():
            self._migrate_profiles(store)
        elif store.version() == 1:
            self._watch_only_the_server_in_use(store)
        return store.all() or [Profile("Local", self.server_url)]

    @profiles.setter
    def profiles(self, profiles: list[Profile]) -> None:
        store = ProfileStore(self.profiles_path)
        kept = []
        for p in profiles:
            if not p.url.strip():
                continue
            url = normalize_base_url(p.url)
            name = p.name.strip() or url  # a profile is found by its name: never an empty one
            kept.append(Profile(name, url, p.enabled))
        try:
            store.save(kept)
        except OSError as exc:
            log.warning("cannot save the server profiles to %s: %s", store.path, exc)

    def _watch_only_the_server_in_use(self, store: ProfileStore) -> None:
        """Profiles from before the fleet were servers to switch to, not to watch together:
        after the upgrade lmgui watches the one it was using, as before, and the others are
        switched off until the user ticks them (once; the file is then saved as version 2)."""
        in_use = normalize_base_url(self.server_url)
        profiles = [dataclasses.replace(p, enabled=p.url == in_use) for p in store.all()]
        try:
            store.save(profiles)
        except OSError as exc:
            log.warning("cannot save the server profiles to %s: %s", store.path, exc)

    def _migrate_profiles(self, store: ProfileStore) -> None:
        """An older lmgui kept the profiles in this INI file (``server/profiles``): copy them to
        ``servers.json`` once. The INI value is left for an older lmgui to read."""
        raw = self.q.value(_OLD_PROFILES_KEY, "")
        try:
            data = json.loads(str(raw)) if raw else []
        except ValueError:
            data = []
        in_use = normalize_base_url(self.server_url)
        old = [
            Profile(
                str(p[0]).strip(),
                url := normalize_base_url(str(p[1])),
                enabled=url == in_use,  # servers to switch to then: watch the one in use
            )
            for p in (data if isinstance(data, list) else [])
            if isinstance(p, list) and len(p) == 2 and str(p[0]).strip() and str(p[1]).strip()
        ]
        if not old:
            return
        try:
            store.save(old)
        except OSError as exc:
            log.warning("cannot move the server profiles to %s: %s", store.path, exc)

    def load_defaults(self) -> dict[str, LoadRequest]:
        """The settings last used to load each model (prefill the load dialog)."""
        raw = self.q.value("load/last_used", "{}")
        try:
            data = json.loads(str(raw))
            return {k: LoadRequest.from_dict(v) for k, v in data.items() if isinstance(v, dict)}
        except (ValueError, TypeError):
            return {}

    def remember_load(self, request: LoadRequest) -> None:
        data = {k: v.to_dict() for k, v in self.load_defaults().items()}
        # An identifier names one instance; it is no default for the next load.
        data[request.model_key] = {k: v for k, v in request.to_dict().items() if k != "identifier"}
        self.q.setValue("load/last_used", json.dumps(data))
        recent = [request.model_key] + [k for k in self.recent if k != request.model_key]
        self.q.setValue("load/recent", json.dumps(recent[:8]))

    def sync(self) -> None:
        self.q.sync()

    def store(self, values: SettingsValues) -> None:
        """Keep what the Settings dialog says (the tokens and start on login are not settings:
        the keyring and the OS keep them)."""
        self.poll_interval_ms = values.poll_interval_ms
        self.hidden_poll_interval_ms = values.hidden_poll_interval_ms
        self.vram_budget_gb = values.vram_budget_gb
        self.confirm_unload = values.confirm_unload
        if values.profiles:
            self.profiles = list(values.profiles)
        self.close_to_tray = values.close_to_tray
        self.start_minimized = values.start_minimized
        self.demo_traffic = values.demo_traffic
        self.make_way = values.make_way
        self.make_way_margin_gb = values.make_way_margin_gb
        self.make_way_auto_restore = values.make_way_auto_restore
        for kind, on in values.notify.items():
            self.set_notify(kind, on)
        self.favourites = list(values.favourites)
        for key in values.forget_defaults:
            self.forget_load_defaults(key)
        self.server_url = values.server_url
        self.sync()

    def values(self, server_url: str, *, start_on_login: bool) -> SettingsValues:
        """What the Settings dialog opens with (the server in use is always among the profiles)."""
        profiles = self.profiles
        if not any(p.url == server_url for p in profiles):
            profiles = [*profiles, Profile("Current", server_url)]
        return SettingsValues(
            server_url,
            None,
            self.poll_interval_ms,
            self.vram_budget_gb,
            self.confirm_unload,
            hidden_poll_interval_ms=self.hidden_poll_interval_ms,
            profiles=tuple(profiles),
            close_to_tray=self.close_to_tray,
            start_minimized=self.start_minimized,
            start_on_login=start_on_login,
            demo_traffic=self.demo_traffic,
            make_way=self.make_way,
            make_way_margin_gb=self.make_way_margin_gb,
            make_way_auto_restore=self.make_way_auto_restore,
            notify={k: self.notify(k) for k in KINDS},
            favourites=tuple(self.favourites),
        )
