"""Server profiles in servers.json (core/profiles.py), and the settings that read them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from lmgui.core.paths import AppPaths
from lmgui.core.profiles import SERVERS_FILE, Profile, ProfileStore
from lmgui.core.settings import Settings

POSIX = os.name == "posix"


def store_in(tmp_path: Path) -> ProfileStore:
    return ProfileStore(AppPaths.under(tmp_path).config_dir / SERVERS_FILE)


def test_round_trip_keeps_order_names_urls_and_the_enabled_flag(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    assert store.all() == [] and not store.exists()
    profiles = [
        Profile("Desk", "http://127.0.0.1:1234"),
        Profile("GPU box", "http://10.0.0.5:1234", enabled=False),
        Profile("Lab", "http://lab:1234"),
    ]
    store.save(profiles)
    again = store_in(tmp_path)
    assert again.all() == profiles
    assert again.enabled() == [profiles[0], profiles[2]]
    body = json.loads(again.path.read_text(encoding="utf-8"))
    assert body["servers"][1] == {
        "name": "GPU box",
        "url": "http://10.0.0.5:1234",
        "enabled": False,
    }
    store.save(profiles[:1])  # replaced whole
    assert again.all() == profiles[:1]
    assert [p.name for p in again.path.parent.iterdir()] == [SERVERS_FILE]  # no temporary left


@pytest.mark.skipif(not POSIX, reason="file modes are POSIX")
def test_the_file_is_private(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.save([Profile("Desk", "http://127.0.0.1:1234")])
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_urls_are_normalized_as_typed_elsewhere(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(
        json.dumps({"servers": [{"name": " Lab ", "url": "lab:1234/api/v1/"}]}), encoding="utf-8"
    )
    assert store.all() == [Profile("Lab", "http://lab:1234")]


def test_find_by_name_any_case_or_by_url(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    desk = Profile("Desk", "http://127.0.0.1:1234")
    box = Profile("GPU box", "http://10.0.0.5:1234", enabled=False)
    store.save([desk, box])
    assert store.find("desk") is not None and store.find("DESK") == desk
    assert store.find("gpu BOX") == box
    assert store.find("10.0.0.5:1234") == box
    assert store.find("http://10.0.0.5:1234/api/v1") == box
    assert store.find("http://10.0.0.6:1234") is None
    assert store.find("nobody") is None
    assert store.find("") is None and store.find("http://[::1") is None


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"servers": "none"}),
        json.dumps({"servers": [{"name": "Desk", "url": "http://127.0.0.1:1234"}, {"url": 5}]}),
    ],
)
def test_an_unreadable_file_is_moved_aside_never_overwritten(tmp_path: Path, body: str) -> None:
    store = store_in(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(body, encoding="utf-8")
    readable = store.all()
    assert readable in ([], [Profile("Desk", "http://127.0.0.1:1234")])
    store.save([Profile("New", "http://127.0.0.1:4321")])
    assert store.all() == [Profile("New", "http://127.0.0.1:4321")]
    aside = [p for p in store.path.parent.iterdir() if p.name != SERVERS_FILE]
    assert len(aside) == 1 and aside[0].name.startswith("servers.unreadable-")
    assert aside[0].read_text(encoding="utf-8") == body


# ----------------------------------------------------------------------------- through Settings


def test_settings_profiles_live_in_servers_json(tmp_path: Path, qapp: object) -> None:
    config = AppPaths.under(tmp_path).config_dir
    s = Settings(config / "lmgui.ini")
    s.profiles = [
        Profile("Home", "127.0.0.1:1234"),
        Profile(" Lab ", "http://lab:1234/api/v1", enabled=False),
        Profile("", "box:1"),
        Profile("Blank", "  "),  # a profile without an address is not kept
    ]
    expected = [
        Profile("Home", "http://127.0.0.1:1234"),
        Profile("Lab", "http://lab:1234", enabled=False),
        Profile("http://box:1", "http://box:1"),  # never a profile without a name
    ]
    assert ProfileStore(config / SERVERS_FILE).all() == expected
    assert Settings(config / "lmgui.ini").profiles == expected


def test_the_watch_flag_is_what_the_dialog_says(tmp_path: Path, qapp: object) -> None:
    config = AppPaths.under(tmp_path).config_dir
    store = ProfileStore(config / SERVERS_FILE)
    store.save([Profile("Home", "http://127.0.0.1:1234"), Profile("Lab", "http://lab:1234", False)])
    s = Settings(config / "lmgui.ini")
    s.profiles = [
        Profile("Home", "http://127.0.0.1:1234", enabled=False),
        Profile("Lab renamed", "http://lab:1234", enabled=True),
    ]
    assert store.all() == [
        Profile("Home", "http://127.0.0.1:1234", enabled=False),
        Profile("Lab renamed", "http://lab:1234", enabled=True),
    ]
    assert [p.enabled for p in Settings(config / "lmgui.ini").profiles] == [False, True]


def test_the_dialog_opens_with_every_profile_and_its_flag(tmp_path: Path, qapp: object) -> None:
    config = AppPaths.under(tmp_path).config_dir
    s = Settings(config / "lmgui.ini")
    s.profiles = [Profile("Home", "http://127.0.0.1:1234"), Profile("Lab", "http://lab:1", False)]
    values = s.values("http://lab:1", start_on_login=False)
    assert values.profiles == (
        Profile("Home", "http://127.0.0.1:1234"),
        Profile("Lab", "http://lab:1", enabled=False),
    )
    assert values.token is None and values.token_changes == ()
    # The server in use is always among them, watched.
    elsewhere = s.values("http://other:9", start_on_login=False)
    assert elsewhere.profiles[-1] == Profile("Current", "http://other:9")
    assert elsewhere.profiles[:-1] == values.profiles


def test_the_old_settings_value_is_migrated_once(tmp_path: Path, qapp: object) -> None:
    config = AppPaths.under(tmp_path).config_dir
    old = Settings(config / "lmgui.ini")
    old.set_value("server/profiles", json.dumps([["Home", "127.0.0.1:1234"], ["Lab", "lab:1"]]))
    old.sync()
    store = ProfileStore(config / SERVERS_FILE)
    assert not store.exists()

    s = Settings(config / "lmgui.ini")
    s.server_url = "http://127.0.0.1:1234"  # the one in use: watched; the others switched off
    migrated = [
        Profile("Home", "http://127.0.0.1:1234"),
        Profile("Lab", "http://lab:1", enabled=False),
    ]
    assert s.profiles == migrated
    assert store.all() == migrated
    # From now on servers.json is the truth: the old value is not read again.
    s.profiles = [Profile("Lab", "http://lab:1")]
    assert Settings(config / "lmgui.ini").profiles == [Profile("Lab", "http://lab:1")]


def test_no_profiles_anywhere_reads_as_the_current_server(tmp_path: Path, qapp: object) -> None:
    config = AppPaths.under(tmp_path).config_dir
    s = Settings(config / "lmgui.ini")
    s.server_url = "127.0.0.1:5555"
    assert s.profiles == [Profile("Local", "http://127.0.0.1:5555")]
    assert not (config / SERVERS_FILE).exists()


def test_profiles_from_before_the_fleet_watch_only_the_server_in_use(
    tmp_path: Path, qapp: object
) -> None:
    """A version 1 file (profiles were servers to switch to, every flag true): after the
    upgrade lmgui watches the server it was using, as before, not every profile at once."""
    config = AppPaths.under(tmp_path).config_dir
    config.mkdir(parents=True, exist_ok=True)
    (config / SERVERS_FILE).write_text(
        json.dumps(
            {
                "version": 1,
                "servers": [
                    {"name": "Home", "url": "http://127.0.0.1:1234", "enabled": True},
                    {"name": "Lab", "url": "http://lab:1", "enabled": True},
                ],
            }
        )
    )
    s = Settings(config / "lmgui.ini")
    s.server_url = "http://lab:1"
    assert s.profiles == [
        Profile("Home", "http://127.0.0.1:1234", enabled=False),
        Profile("Lab", "http://lab:1"),
    ]
    # Once: the file is version 2 now, and a flag the user sets later stays.
    assert ProfileStore(config / SERVERS_FILE).version() == 2
    s.profiles = [Profile("Home", "http://127.0.0.1:1234"), Profile("Lab", "http://lab:1")]
    assert all(p.enabled for p in Settings(config / "lmgui.ini").profiles)
