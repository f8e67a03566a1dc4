"""The command line over several servers: ``--server`` repeated or naming a profile, ``--all``."""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import lmgui.cli
from lmgui.api import with_retries
from lmgui.cli import main
from lmgui.core.paths import AppPaths
from lmgui.core.profiles import SERVERS_FILE, Profile, ProfileStore
from lmgui.sim import Simulator
from tests.conftest import SimFactory


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> list[dict[str, object]]:
        data = json.loads(self.out)
        assert isinstance(data, list)
        return data


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LM_API_TOKEN", raising=False)
    monkeypatch.delenv("LMGUI_SERVER", raising=False)
    # A dead server is retried as always, without the waits between tries.
    monkeypatch.setattr(lmgui.cli, "with_retries", functools.partial(with_retries, first_delay=0))


def run(tmp_path: Path, *args: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), paths=AppPaths.under(tmp_path), out=out, err=err)
    return Run(code, out.getvalue(), err.getvalue())


def profiles(tmp_path: Path, *entries: Profile) -> None:
    ProfileStore(AppPaths.under(tmp_path).config_dir / SERVERS_FILE).save(entries)


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def asked(sim: Simulator) -> list[str]:
    return [r.path for r in sim.requests if r.path.startswith("/api/v1/models")]


@pytest.fixture
def two(make_sim: SimFactory, tmp_path: Path) -> tuple[Simulator, Simulator]:
    a, b = make_sim(), make_sim(vram_gb=48.0)
    assert run(tmp_path, "--server", a.url, "load", "qwen/qwen3-4b").code == 0
    assert run(tmp_path, "--server", b.url, "load", "google/gemma-3-270m").code == 0
    assert run(tmp_path, "--server", b.url, "load", "qwen/qwen3-4b").code == 0
    return a, b


def test_ps_on_two_servers_names_each_line_s_server(
    two: tuple[Simulator, Simulator], tmp_path: Path
) -> None:
    a, b = two
    r = run(tmp_path, "--server", a.url, "ps", "--server", b.url)
    assert r.code == 0, r.err
    table = rows(r.out)
    assert table[0][:3] == ["SERVER", "IDENTIFIER", "MODEL"]
    assert sorted((row[0], row[1]) for row in table[1:]) == sorted(
        [(a.url, "qwen/qwen3-4b"), (b.url, "google/gemma-3-270m"), (b.url, "qwen/qwen3-4b")]
    )  # the ports are random: compare as sets of lines
    assert "3 instance(s) on 2 server(s)" in r.err

    r = run(tmp_path, "ps", "--server", a.url, "--server", b.url, "--json")
    assert r.code == 0
    assert sorted((x["server"], x["id"]) for x in r.json()) == sorted(
        [(a.url, "qwen/qwen3-4b"), (b.url, "google/gemma-3-270m"), (b.url, "qwen/qwen3-4b")]
    )
    assert all(x["server_url"] == x["server"] for x in r.json())


def test_ls_on_two_servers(two: tuple[Simulator, Simulator], tmp_path: Path) -> None:
    a, b = two
    r = run(tmp_path, "ls", "--server", a.url, "--server", b.url, "--json")
    assert r.code == 0
    records = r.json()
    assert {x["server"] for x in records} == {a.url, b.url}
    single = json.loads(run(tmp_path, "ls", "--server", a.url, "--json").out)
    assert len(records) == 2 * len(single) and "server" not in single[0]
    r = run(tmp_path, "ls", "--server", a.url, "--server", b.url)
    assert rows(r.out)[0][:2] == ["SERVER", "KEY"]


def test_a_dead_server_is_named_and_the_others_still_listed(
    two: tuple[Simulator, Simulator], make_sim: SimFactory, tmp_path: Path
) -> None:
    a, b = two
    dead = make_sim()
    dead.stop()
    r = run(tmp_path, "ps", "--server", a.url, "--server", dead.url, "--server", b.url)
    assert r.code == 1
    assert {row[0] for row in rows(r.out)[1:]} == {a.url, b.url}
    said = [line for line in r.err.splitlines() if line.startswith("lmgui: ")]
    assert len(said) == 1 and said[0].startswith(f"lmgui: {dead.url}: ")
    assert "Traceback" not in r.err

    r = run(tmp_path, "ps", "--server", a.url, "--server", dead.url, "--json")
    assert r.code == 1 and {x["server"] for x in r.json()} == {a.url}
    assert r.err.count(f"lmgui: {dead.url}: ") == 1


def test_ps_all_asks_every_enabled_profile_and_names_them(
    two: tuple[Simulator, Simulator], make_sim: SimFactory, tmp_path: Path
) -> None:
    a, b = two
    off = make_sim()
    profiles(
        tmp_path,
        Profile("Desk", a.url),
        Profile("Spare", off.url, enabled=False),
        Profile("GPU box", b.url),
    )
    r = run(tmp_path, "ps", "--all")
    assert r.code == 0, r.err
    assert sorted(line.split("  ")[0] for line in r.out.splitlines()[1:]) == [
        "Desk",
        "GPU box",
        "GPU box",
    ]
    assert asked(off) == []  # a switched-off server is not asked

    records = run(tmp_path, "ps", "--all", "--json").json()
    assert {(x["server"], x["server_url"]) for x in records} == {
        ("Desk", a.url),
        ("GPU box", b.url),
    }
    assert {x["server"] for x in run(tmp_path, "ls", "--all", "--json").json()} == {
        "Desk",
        "GPU box",
    }
    assert asked(off) == []


def test_ps_all_without_profiles_says_what_to_do(tmp_path: Path) -> None:
    r = run(tmp_path, "ps", "--all")
    assert r.code == 2 and r.out == ""
    assert r.err.startswith("lmgui: No server profile is switched on in ")


def test_a_profile_name_is_a_server(two: tuple[Simulator, Simulator], tmp_path: Path) -> None:
    a, b = two
    profiles(tmp_path, Profile("Desk", a.url), Profile("GPU box", b.url, enabled=False))
    # One profile: exactly what one --server URL gives.
    by_name = run(tmp_path, "ps", "--server", "desk", "--json")
    by_url = run(tmp_path, "ps", "--server", a.url, "--json")
    assert by_name.code == 0 and by_name.json() == by_url.json()
    # A switched-off profile can still be named; a name and a URL mix.
    r = run(tmp_path, "ps", "--server", "GPU box", "--server", a.url)
    assert r.code == 0
    assert sorted({row[0] for row in rows(r.out)[1:]}) == ["Desk", "GPU"]  # "GPU box"
    # The same server twice is one server: asked once, listed as one --server lists it.
    r = run(tmp_path, "ps", "--server", "Desk", "--server", a.url, "--json")
    assert r.code == 0 and r.json() == by_url.json()


def test_each_server_gets_its_own_keyring_token(
    make_sim: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_sim(token="token-of-a"), make_sim(token="token-of-b")
    keyring = {a.url: "token-of-a", b.url: "token-of-b"}

    class Keyring:
        def get(self, url: str) -> str | None:
            return keyring.get(url)

    monkeypatch.setattr(lmgui.cli, "TokenStore", Keyring)
    r = run(tmp_path, "ls", "--server", a.url, "--server", b.url, "--json")
    assert r.code == 0, r.err
    assert {x["server"] for x in r.json()} == {a.url, b.url}
    # --token applies to every server: the one it does not fit says so, the other answers.
    r = run(tmp_path, "ls", "--server", a.url, "--server", b.url, "--token", "token-of-a")
    assert r.code == 1
    assert {row[0] for row in rows(r.out)[1:]} == {a.url}
    assert r.err.startswith(f"lmgui: {b.url}: ") and r.err.count("\n") == 1


@pytest.mark.parametrize(
    "command",
    [("load", "qwen/qwen3-4b"), ("unload", "--all"), ("chat", "qwen/qwen3-4b", "hi")],
)
def test_commands_for_one_server_refuse_several(
    make_sim: SimFactory, tmp_path: Path, command: tuple[str, ...]
) -> None:
    a, b = make_sim(), make_sim()
    r = run(tmp_path, "--server", a.url, "--server", b.url, *command)
    assert r.code == 2 and r.out == ""
    assert r.err == (
        f"lmgui: lmgui {command[0]} works on one server at a time: give --server once "
        "(only ls and ps ask several).\n"
    )
    assert [r.method for r in a.requests] == [] and [r.method for r in b.requests] == []


def test_the_window_takes_one_server(tmp_path: Path) -> None:
    r = run(tmp_path, "--server", "http://127.0.0.1:1", "--server", "http://127.0.0.1:2")
    assert r.code == 2 and r.err == (
        "lmgui: The window shows one server at a time: give --server once.\n"
    )
