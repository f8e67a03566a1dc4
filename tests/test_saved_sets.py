"""Snapshots of the loaded set (core/saved_sets.py) against the simulator over real sockets: free
the GPU and restore it as it was, restore around what is there and what fails, the store, and
the make-room planner's rule."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lmgui.api import LMStudioClient
from lmgui.core.saved_sets import (
    FREEING,
    RoomCandidate,
    SavedInstance,
    SavedSet,
    SavedSetStore,
    check_name,
    free,
    plan_room,
    restore,
    saved_set_of,
)
from lmgui.sim import Simulator
from tests.conftest import SimFactory

TOKEN = "sk-lm-Zq8Xb2Rt:Vw9Lp4Km7Nh3Jd6FAbCd"


def loaded(sim: Simulator) -> dict[str, tuple[str, int | None, float | None]]:
    """Identifier -> (model key, context length, GPU offload) as the server holds them."""
    with sim.state.lock:
        return {
            iid: (i.model_key, i.config.get("context_length"), i.config.get("gpu"))
            for iid, i in sim.state.instances.items()
        }


async def test_free_then_restore_brings_back_the_same_instances(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = make_sim(token=TOKEN)
    store = SavedSetStore(tmp_path / "snapshots.json")
    async with (
        LMStudioClient(sim.url, TOKEN, lms=None) as ide,
        LMStudioClient(sim.url, TOKEN, lms=None, sdk=False) as script,
        LMStudioClient(sim.url, TOKEN, lms=None) as lmgui,
    ):
        # Three apps loaded three instances their own way.
        await ide.load("qwen/qwen3-4b", identifier="coder", context_length=16384, gpu=0.5, ttl=900)
        await script.load("google/gemma-3-270m", context_length=8192)
        await script.load("google/gemma-3-270m", context_length=2048)
        before = loaded(sim)
        assert set(before) == {"coder", "google/gemma-3-270m", "google/gemma-3-270m:2"}

        freed = await free(lmgui, store)
        assert sorted(freed.unloaded) == sorted(before) and not freed.failed
        assert loaded(sim) == {}
        assert freed.sentence().startswith('Unloaded 3 instance(s) and saved them as "before')
        saved = store.get(FREEING)
        assert saved is not None and [i.identifier for i in saved.instances] == [
            i.identifier for i in freed.saved.instances
        ]
        coder = next(i for i in saved.instances if i.identifier == "coder")
        assert (coder.context_length, coder.gpu_offload, coder.ttl_seconds) == (16384, 0.5, 900)

        steps: list[str] = []
        summary = await restore(lmgui, saved, on_step=lambda n, t, e: steps.append(e.identifier))
    assert summary.ok and len(summary.loaded) == 3 and not summary.already
    assert loaded(sim) == before  # identifiers, contexts and GPU offload exactly
    assert sim.state.instances["coder"].ttl == 900
    assert steps == [i.identifier for i in saved.instances]
    assert summary.sentence().startswith(f'Restored "{FREEING}": loaded ')


async def test_restore_skips_what_is_loaded_and_goes_on_past_a_failure(
    sim: Simulator, tmp_path: Path
) -> None:
    saved = SavedSet(
        "work",
        sim.url,
        0.0,
        (
            SavedInstance("google/gemma-3-270m", "google/gemma-3-270m", context_length=4096),
            SavedInstance("gone/deleted-model", "old-one", context_length=4096),
            SavedInstance("qwen/qwen3-4b", "helper", context_length=8192),
        ),
    )
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("google/gemma-3-270m", context_length=4096)
        summary = await restore(c, saved)
    assert [e.identifier for e in summary.already] == ["google/gemma-3-270m"]
    assert [e.identifier for e, _ in summary.loaded] == ["helper"]
    ((failed, why),) = summary.failed
    assert failed.identifier == "old-one" and "gone/deleted-model" in why
    assert "helper" in loaded(sim) and loaded(sim)["helper"][1] == 8192
    text = summary.sentence()
    assert "loaded helper" in text and "already loaded: google/gemma-3-270m" in text
    assert "failed: old-one (" in text and not summary.ok


async def test_freeing_an_empty_server_saves_nothing(sim: Simulator, tmp_path: Path) -> None:
    store = SavedSetStore(tmp_path / "snapshots.json")
    async with LMStudioClient(sim.url, lms=None) as c:
        summary = await free(c, store)
    assert summary.sentence() == (
        "Nothing was loaded: the GPU is already free of LM Studio's models."
    )
    assert store.all() == []  # the last real "before freeing" is not overwritten by nothing


async def test_pinned_instances_stay_when_the_gpu_is_freed(sim: Simulator, tmp_path: Path) -> None:
    store = SavedSetStore(tmp_path / "snapshots.json")
    async with LMStudioClient(sim.url, lms=None) as c:
        await c.load("google/gemma-3-270m")
        await c.load("qwen/qwen3-4b")
        summary = await free(c, store, keep={"qwen/qwen3-4b"})
    assert summary.unloaded == ["google/gemma-3-270m"]
    assert set(loaded(sim)) == {"qwen/qwen3-4b"}


def test_the_store_keeps_snapshots_privately_and_replaces_by_name(tmp_path: Path) -> None:
    store = SavedSetStore(tmp_path / "data" / "snapshots.json")
    one = SavedSet("evening", "http://a", 1.0, (SavedInstance("a/b", "x", 4096),))
    two = SavedSet("morning", "http://a", 2.0, ())
    store.save(one)
    store.save(two)
    assert [s.name for s in store.all()] == ["morning", "evening"]  # newest first
    store.save(SavedSet("evening", "http://a", 3.0, ()))
    assert [s.name for s in store.all()] == ["evening", "morning"]
    assert store.get("evening") == SavedSet("evening", "http://a", 3.0, ())
    assert SavedSetStore(store.path).get("morning") == two  # survives a restart
    store.set_pinned("x", True)
    store.save(SavedSet("night", "http://a", 4.0, ()))
    assert store.pinned() == {"x"}  # pins survive saving snapshots
    assert store.remove("morning") and not store.remove("morning")
    assert store.pinned() == {"x"}
    store.set_pinned("x", False)
    assert store.pinned() == set() and store.get("night") is not None
    if os.name == "posix":
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_an_unreadable_store_is_kept_aside_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.json"
    path.write_text("{not json")
    store = SavedSetStore(path)
    assert store.all() == []
    store.save(SavedSet("new", "http://a", 1.0, ()))
    assert [s.name for s in store.all()] == ["new"]
    (aside,) = tmp_path.glob("snapshots.unreadable-*.json")
    assert aside.read_text() == "{not json"


def test_snapshot_names() -> None:
    assert check_name("  gaming  ") == "gaming"
    for bad in ("", "   "):
        with pytest.raises(ValueError, match="Give the snapshot a name"):
            check_name(bad)
    for bad in ("a\nb", "x" * 101):
        with pytest.raises(ValueError, match="at most 100 printable characters"):
            check_name(bad)
    with pytest.raises(ValueError, match="Give the snapshot a name"):
        saved_set_of("", "http://a", [])


def gb(n: float) -> int:
    return int(n * 10**9)


def test_the_planner_unloads_idle_instances_least_recently_used_first() -> None:
    cands = [
        RoomCandidate("recent", "a/1", gb(4), last_used=300.0),
        RoomCandidate("old", "a/2", gb(3), last_used=100.0),
        RoomCandidate("never", "a/3", gb(2), last_used=None),
        RoomCandidate("busy", "a/4", gb(20), last_used=0.0, busy=True),
        RoomCandidate("pinned", "a/5", gb(20), last_used=0.0, pinned=True),
        RoomCandidate("middle", "a/6", gb(5), last_used=200.0),
    ]
    plan = plan_room(gb(10), gb(1), cands)
    # Never used first, then oldest use; stops as soon as the load fits.
    assert [c.instance_id for c in plan.unload] == ["never", "old", "middle"]
    assert plan.enough and plan.freed_bytes == gb(10)
    assert plan_room(gb(5), gb(6), cands).unload == ()  # it fits already
    too_big = plan_room(gb(100), gb(1), cands)
    assert not too_big.enough
    assert {c.instance_id for c in too_big.unload} == {"recent", "old", "never", "middle"}
