"""The executable lookup, the Exec quoting and ``lmgui desktop-entry``, in this process.

tests/test_install.py does the same with an installed wheel, from outside the checkout."""

from __future__ import annotations

import io
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmgui.cli import main
from lmgui.core.launcher import DesktopEntry, exec_line, lmgui_command, xdg_desktop
from lmgui.core.package_data import resource_path
from lmgui.core.paths import AppPaths
from tests.xdg import parse_exec, read_entry

ROOT = Path(__file__).resolve().parent.parent

ARGS = st.lists(
    st.text(
        st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from(" \t\n\"'\\$`%=;#~"),
        max_size=12,
    ),
    min_size=1,
    max_size=4,
)


@given(ARGS)
def test_a_desktop_runs_exactly_the_arguments_written(argv: list[str]) -> None:
    assert parse_exec(exec_line(argv)) == argv


def test_exec_quoting_of_a_path_with_spaces() -> None:
    line = exec_line(["/opt/my apps/bin/lmgui", "--minimized"])
    assert line == '"/opt/my apps/bin/lmgui" --minimized'
    assert exec_line(["/home/u/a\\b $x"]) == '"/home/u/a\\\\\\\\b \\\\$x"'  # four backslashes


def test_the_command_is_this_installations_lmgui_script() -> None:
    # The test venv has lmgui installed (editable): its recorded script beside this interpreter.
    script = Path(sysconfig.get_path("scripts")) / "lmgui"
    assert lmgui_command() == [str(script.resolve())]


def test_the_command_without_a_recorded_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    script = Path(sysconfig.get_path("scripts")) / "lmgui"
    assert lmgui_command() == [str(script.resolve())]  # the one beside the interpreter
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    assert lmgui_command()[1:] == ["-m", "lmgui"]  # none at all: this interpreter runs it


def test_desktop_entries_are_for_xdg_desktops_only() -> None:
    assert xdg_desktop("linux") and xdg_desktop("freebsd14")
    assert not xdg_desktop("win32") and not xdg_desktop("darwin")


def test_the_launcher_runs_lmgui_by_its_absolute_path(tmp_path: Path) -> None:
    script = tmp_path / "my apps" / "bin" / "lmgui"  # a space, as in many home folders
    entry = DesktopEntry(tmp_path / "share")
    entry.install([str(script)])
    keys = read_entry(tmp_path / "share" / "applications" / "lmgui.desktop")
    assert parse_exec(keys["Exec"]) == [str(script)]
    assert keys["TryExec"] == str(script)
    assert keys["Icon"] == "lmgui" and keys["Type"] == "Application" and keys["Name"] == "lmgui"
    template = read_entry(ROOT / "resources" / "lmgui.desktop")
    assert {k: v for k, v in keys.items() if "Exec" not in k} == {
        k: v for k, v in template.items() if "Exec" not in k
    }
    icon = tmp_path / "share" / "icons" / "hicolor" / "scalable" / "apps" / "lmgui.svg"
    assert icon.read_bytes() == (ROOT / "resources" / "icons" / "app.svg").read_bytes()
    assert sorted(p.name for p in (tmp_path / "share").rglob("*") if p.is_file()) == [
        "lmgui.desktop",
        "lmgui.svg",
    ]  # no partial file left behind
    assert entry.remove() == [entry.launcher, entry.icon]
    assert not entry.launcher.exists() and not entry.icon.exists()
    assert entry.remove() == []


def run(*argv: str, tmp_path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), paths=AppPaths.under(tmp_path), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_desktop_entry_install_then_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    launcher_file = tmp_path / "data" / "applications" / "lmgui.desktop"
    icon = tmp_path / "data" / "icons" / "hicolor" / "scalable" / "apps" / "lmgui.svg"
    code, out, err = run("desktop-entry", "install", tmp_path=tmp_path)
    assert (code, err) == (0, "")
    assert out == (
        f"Installed the launcher {launcher_file} (it runs {lmgui_command()[0]}) "
        f"and its icon {icon}.\n"
    )
    assert parse_exec(read_entry(launcher_file)["Exec"]) == lmgui_command()
    code, out, err = run("desktop-entry", "remove", tmp_path=tmp_path)
    assert (code, out, err) == (0, f"Removed {launcher_file} and {icon}.\n", "")
    code, out, err = run("desktop-entry", "remove", tmp_path=tmp_path)
    assert (code, out) == (0, f"No lmgui launcher was installed in {tmp_path / 'data'}.\n")


def test_desktop_entry_elsewhere_says_it_is_for_linux_and_bsd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("lmgui.cli.xdg_desktop", lambda: False)
    code, out, err = run("desktop-entry", "install", tmp_path=tmp_path)
    assert (code, out) == (2, "")
    assert err == (
        "lmgui: desktop-entry writes a freedesktop.org launcher, which only Linux and BSD "
        "desktops read; start lmgui from its command here (Settings can start it on login).\n"
    )
    assert not (tmp_path / "data").exists()


def test_a_missing_resource_is_an_error_not_a_stand_in() -> None:
    with pytest.raises(
        FileNotFoundError, match=r"lmgui is installed without its file icons/x\.svg"
    ):
        resource_path("icons", "x.svg")
    assert resource_path("icons", "app.svg") == ROOT / "resources" / "icons" / "app.svg"
