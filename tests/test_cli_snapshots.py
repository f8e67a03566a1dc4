"""`lmgui snapshot`, `free`, `restore` and `load --make-room` against the simulator, as a game
launcher's hooks or a user at a terminal would run them."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmgui.cli import main
from lmgui.core.paths import AppPaths
from lmgui.sim import Simulator
from tests.conftest import SimFactory

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LM_API_TOKEN", raising=False)
    monkeypatch.delenv("LMGUI_SERVER", raising=False)
    monkeypatch.setenv("LMGUI_LMS", "off")


def runner(sim: Simulator, tmp_path: Path) -> Run:
    def run(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--server", sim.url, *args], paths=AppPaths.under(tmp_path), out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    return run


def ids(run: Run) -> dict[str, Any]:
    code, out, _ = run("ps", "--json")
    assert code == 0
    listed = json.loads(out)
    return {i["id"]: (i["model_key"], i["context_length"], i["gpu_offload"]) for i in listed}


def test_free_and_restore_round_trip_from_a_terminal(sim: Simulator, tmp_path: Path) -> None:
    run = runner(sim, tmp_path)
    assert run("load", "qwen/qwen3-4b", "--identifier", "coder", "--gpu", "0.5")[0] == 0
    assert run("load", "google/gemma-3-270m", "--context", "8192")[0] == 0
    before = ids(run)

    code, out, _ = run("free", "--json")
    assert code == 0
    freed = json.loads(out)
    assert freed["snapshot"] == "before freeing" and sorted(freed["unloaded"]) == sorted(before)
    assert ids(run) == {}

    code, out, _ = run("restore")
    assert code == 0 and out.startswith('Restored "before freeing": loaded ')
    assert ids(run) == before

    code, out, _ = run("restore", "--json")  # again: all there already, nothing loaded twice
    assert code == 0 and json.loads(out)["loaded"] == []
    assert sorted(json.loads(out)["already_loaded"]) == sorted(before)


def test_named_snapshots_save_list_restore_and_forget(sim: Simulator, tmp_path: Path) -> None:
    run = runner(sim, tmp_path)
    assert run("snapshot", "ls")[2].startswith("No snapshots yet")
    run("load", "google/gemma-3-270m", "--context", "4096")
    code, out, _ = run("snapshot", "save", "small")
    assert (code, out) == (0, 'Saved 1 instance(s) as "small".\n')
    code, out, _ = run("snapshot", "ls", "--json")
    (listed,) = json.loads(out)
    assert listed["name"] == "small"
    assert listed["instances"][0]["identifier"] == "google/gemma-3-270m"
    assert listed["instances"][0]["context_length"] == 4096
    run("unload", "--all")
    assert run("snapshot", "restore", "small")[0] == 0
    assert set(ids(run)) == {"google/gemma-3-270m"}
    assert run("snapshot", "rm", "small")[1] == 'Forgot the snapshot "small".\n'
    code, _, err = run("snapshot", "restore", "small")
    assert code == 2 and 'There is no snapshot called "small"' in err


def test_free_asks_for_force_before_unloading_a_busy_instance(
    sim: Simulator, tmp_path: Path
) -> None:
    run = runner(sim, tmp_path)
    run("load", "qwen/qwen3-4b", "--identifier", "coder", "--gpu", "max")
    with sim.state.lock:
        sim.state.instances["coder"].generating += 1  # another app's answer in progress
    code, _, err = run("free")
    assert code == 2
    assert "coder is generating an answer: lmgui free --force unloads busy instances too" in err
    assert set(ids(run)) == {"coder"}  # nothing touched
    assert run("free", "--force")[0] == 0
    assert ids(run) == {}


def test_a_restore_that_partly_fails_says_so_and_exits_non_zero(
    sim: Simulator, tmp_path: Path
) -> None:
    run = runner(sim, tmp_path)
    run("load", "google/gemma-3-270m")
    run("load", "qwen/qwen3-4b", "--identifier", "coder")
    run("snapshot", "save", "both")
    run("unload", "--all")
    # The model was deleted on the server meanwhile (as if it had been another model).
    store = AppPaths.under(tmp_path).snapshots(sim.url)
    store.write_text(store.read_text().replace('"qwen/qwen3-4b"', '"gone/deleted-model"'))
    code, out, err = run("snapshot", "restore", "both")
    assert code == 1 and "1 of the snapshot's instances did not load" in err
    assert "loaded google/gemma-3-270m" in out and "failed: coder (" in out
    assert set(ids(run)) == {"google/gemma-3-270m"}


def test_load_make_room_unloads_the_least_recently_used_idle_instances(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = make_sim(vram_gb=11.0)  # three 2.8 GB instances fit, a 7 GB one does not
    run = runner(sim, tmp_path)
    for ident in ("first", "second", "third"):  # one after the other: used in this order
        assert run("load", "qwen/qwen3-4b", "--identifier", ident, "--context", "4096")[0] == 0
    run("chat", "first", "hello", "--no-store")  # now "second" is the least recently used
    with sim.state.lock:
        sim.state.instances["third"].generating += 1  # busy: never picked
    code, out, err = run("load", "qwen/qwen3.5-9b", "--context", "4096", "--make-room", "--json")
    assert code == 0, err
    unloaded = json.loads(out)["unloaded_to_make_room"]
    assert unloaded[0] == "second" and "third" not in unloaded
    assert "qwen/qwen3.5-9b" in ids(run)
    assert "third" in ids(run)
