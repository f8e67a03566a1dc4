"""The Settings dialog's server tab manages the fleet: every profile's name, address, whether lmgui
watches it, and its own token; what the user typed reaches the settings file and the keyring's
changes, and nothing else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox, QPushButton
from pytestqt.qtbot import QtBot

from lmgui.core.paths import AppPaths
from lmgui.core.profiles import SERVERS_FILE, Profile
from lmgui.core.settings import Settings, SettingsValues
from lmgui.ui.settings_dialog import SettingsDialog

DESK = Profile("Desk", "http://127.0.0.1:1234")
LAB = Profile("Lab", "http://10.0.0.5:1234", enabled=False)
BOX = Profile("GPU box", "http://box:4321")
STORED: dict[str, bool | None] = {DESK.url: True, BOX.url: False}
"""What the app knows of the keyring: Lab is switched off, its entry never read (None)."""

LAB_TOKEN = "sk-lm-lab:first-token"
BOX_TOKEN = "sk-lm-box:second-token"


def settings_dialog(
    qtbot: QtBot,
    *profiles: Profile,
    selected: str = DESK.url,
    stored: dict[str, bool | None] = STORED,
) -> SettingsDialog:
    values = SettingsValues(selected, None, 2000, 0.0, True, profiles=profiles or (DESK, LAB, BOX))
    d = SettingsDialog(values, has_token=stored.get, keyring_note=None)
    qtbot.addWidget(d)
    return d


def ok_button(d: SettingsDialog) -> QPushButton:
    return d.buttons.button(QDialogButtonBox.StandardButton.Ok)


def show(d: SettingsDialog, name: str) -> None:
    index = d.profile_box.findText(name)
    if index < 0:
        index = d.profile_box.findText(f"{name} (not watched)")
    assert index >= 0, name
    d.profile_box.setCurrentIndex(index)


def apply(qtbot: QtBot, d: SettingsDialog) -> SettingsValues:
    with qtbot.waitSignal(d.applied) as sig:
        ok_button(d).click()
    values: SettingsValues = sig.args[0]
    return values


def test_several_servers_with_their_tokens_and_flags_round_trip(
    qtbot: QtBot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    d = settings_dialog(qtbot)
    assert [d.profile_box.itemText(i) for i in range(3)] == [
        "Desk",
        "Lab (not watched)",
        "GPU box",
    ]
    # Lab: watched from now on, and given a token; Desk's token is left alone.
    show(d, "Lab")
    assert not d.watch.isChecked()
    d.watch.setChecked(True)
    d.token.setText(LAB_TOKEN)
    # GPU box: a token typed, thought over, typed again; and no longer watched.
    show(d, "GPU box")
    d.token.setText("sk-lm-box:draft")
    show(d, "Desk")
    show(d, "GPU box")
    d.token.setText(f"  {BOX_TOKEN}  ")
    d.watch.setChecked(False)
    show(d, "Desk")
    assert d.token.text() == "" and not d.clear_token.isChecked()

    v = apply(qtbot, d)
    assert v.server_url == DESK.url and v.token is None  # the selected server's token: unchanged
    assert v.profiles == (
        DESK,
        Profile("Lab", LAB.url, enabled=True),
        Profile("GPU box", BOX.url, enabled=False),
    )
    # Each changed server once, in profile order, with the last token typed.
    assert v.token_changes == ((LAB.url, LAB_TOKEN), (BOX.url, BOX_TOKEN))

    config = AppPaths.under(tmp_path).config_dir
    Settings(config / "lmgui.ini").store(v)
    again = Settings(config / "lmgui.ini")
    assert again.profiles == list(v.profiles)
    assert again.server_url == DESK.url
    reopened = again.values(again.server_url, start_on_login=False)
    assert reopened.profiles == v.profiles and reopened.token_changes == ()

    # Tokens go to the keyring only: never in a repr, a log line or a settings file.
    for token in (LAB_TOKEN, BOX_TOKEN, "sk-lm-box:draft"):
        assert token not in repr(v) and token not in caplog.text
        assert token not in (config / "lmgui.ini").read_text(encoding="utf-8")
        assert token not in (config / SERVERS_FILE).read_text(encoding="utf-8")


def test_a_reopened_dialog_shows_each_servers_watch_flag(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot, DESK, LAB, selected=LAB.url)
    assert d.profile_box.currentText() == "Lab (not watched)" and not d.watch.isChecked()
    show(d, "Desk")
    assert d.watch.isChecked() and d.watch.accessibleName() == "Watch this server"


def test_unwatching_every_server_is_refused(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot, DESK, LAB)
    applied: list[SettingsValues] = []
    d.applied.connect(applied.append)
    d.watch.setChecked(False)  # Desk; Lab was not watched already
    assert not ok_button(d).isEnabled()
    assert d.fleet_error.isVisibleTo(d)
    assert d.fleet_error.text() == "Watch at least one server, or lmgui has nothing to show."
    ok_button(d).click()
    assert applied == []
    show(d, "Lab")
    d.watch.setChecked(True)
    assert ok_button(d).isEnabled() and not d.fleet_error.isVisibleTo(d)
    assert [p.enabled for p in apply(qtbot, d).profiles] == [False, True]


def test_switching_the_shown_profile_keeps_each_ones_edits(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot)
    d.profile_name.setText("My desk")
    d.server.setText("127.0.0.1:1235")
    d.clear_token.setChecked(True)
    assert not d.token.isEnabled()  # removing: nothing to type
    show(d, "Lab")
    assert (d.profile_name.text(), d.server.text()) == ("Lab", LAB.url)
    assert d.token.text() == "" and not d.clear_token.isChecked() and d.token.isEnabled()
    d.token.setText(LAB_TOKEN)
    d.watch.setChecked(True)
    show(d, "GPU box")
    d.watch.setChecked(False)
    show(d, "My desk")
    assert (d.profile_name.text(), d.server.text()) == ("My desk", "127.0.0.1:1235")
    assert d.clear_token.isChecked() and d.watch.isChecked()
    show(d, "Lab")
    assert d.token.text() == LAB_TOKEN and d.watch.isChecked()
    show(d, "GPU box")
    assert not d.watch.isChecked()
    assert d.profile_box.currentText() == "GPU box (not watched)"

    v = apply(qtbot, d)  # applied with GPU box shown: it is the selected server
    assert v.server_url == BOX.url and v.token is None
    assert v.profiles == (
        Profile("My desk", "http://127.0.0.1:1235"),
        Profile("Lab", LAB.url, enabled=True),
        Profile("GPU box", BOX.url, enabled=False),
    )
    # The removal goes with the profile, to its new address (whose token is not known).
    assert v.token_changes == (("http://127.0.0.1:1235", ""), (LAB.url, LAB_TOKEN))


def test_removing_the_stored_token_of_one_server(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot)
    show(d, "Lab")
    d.clear_token.setChecked(True)
    show(d, "Desk")
    d.clear_token.setChecked(True)
    v = apply(qtbot, d)
    assert v.token == "" and v.token_changes == ((DESK.url, ""), (LAB.url, ""))


def test_the_token_field_says_what_is_stored_for_the_shown_server(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot)
    assert d.token.placeholderText() == "a token is stored; type to replace it"
    assert d.clear_token.isVisibleTo(d)
    show(d, "Lab")  # switched off, its keyring entry never read: not known
    assert d.token.placeholderText() == "type a token to store one for this server"
    assert d.clear_token.isVisibleTo(d)  # removing is offered anyway
    show(d, "GPU box")
    assert d.token.placeholderText() == "sk-lm-… (only if the server requires one)"
    assert not d.clear_token.isVisibleTo(d)
    d.server.setText(DESK.url.replace("127.0.0.1", "localhost"))
    assert d.token.placeholderText() == "type a token to store one for this server"


def test_a_new_address_without_a_stored_token_has_nothing_to_remove(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot, stored={DESK.url: True, "http://box:1": False})
    d.clear_token.setChecked(True)
    d.server.setText("box:1")
    assert not d.clear_token.isVisibleTo(d) and not d.clear_token.isChecked()
    assert d.token.isEnabled()
    v = apply(qtbot, d)
    assert v.server_url == "http://box:1" and v.token is None and v.token_changes == ()


def test_a_bad_token_on_a_profile_not_shown_keeps_ok_disabled(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot)
    show(d, "Lab")
    d.token.setText("sk-lm-läb:token")
    assert not ok_button(d).isEnabled() and d.token_error.isVisibleTo(d)
    show(d, "Desk")
    assert not ok_button(d).isEnabled() and not d.token_error.isVisibleTo(d)
    assert d.fleet_error.text().startswith("Lab: The API token contains a non-ASCII character")
    assert "läb" not in d.fleet_error.text()
    show(d, "Lab")
    d.clear_token.setChecked(True)  # removing it instead: what was typed does not count
    assert ok_button(d).isEnabled()


def test_a_profile_without_a_usable_address_is_named(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot)
    d.add_profile.click()
    assert d.profile_box.currentText() == "Server 4" and not ok_button(d).isEnabled()
    show(d, "Desk")
    assert (
        d.fleet_error.text() == "Server 4: Enter the server's address, e.g. http://127.0.0.1:1234."
    )
    show(d, "Server 4")
    d.remove_profile.click()
    assert d.profile_box.count() == 3 and ok_button(d).isEnabled()
    # The profile before it is shown, with its own fields.
    assert (d.profile_box.currentText(), d.profile_name.text()) == ("GPU box", "GPU box")
    assert d.server.text() == BOX.url


def test_two_profiles_for_one_server_are_refused(qtbot: QtBot) -> None:
    d = settings_dialog(qtbot)
    show(d, "GPU box")
    d.server.setText("10.0.0.5:1234/api/v1")  # Lab's server, pasted differently
    assert not ok_button(d).isEnabled()
    assert d.fleet_error.text() == "Lab and GPU box are the same server: keep one of them."
    d.server.setText(BOX.url)
    assert ok_button(d).isEnabled() and not d.fleet_error.isVisibleTo(d)
