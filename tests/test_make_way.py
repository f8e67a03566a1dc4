"""Making way for other GPU apps (core/make_way.py) against the simulator over real sockets, with a
scripted GPU: another program grows, the least recently used idle instances go (never a busy or
pinned one), it exits, they come back as they were; the setting off touches nothing; LM Studio's
own processes never count; noise never unloads more; the server or the GPU failing part-way."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lmgui.api import LMStudioClient
from lmgui.core.gpu import GpuMemory, GpuProcess
from lmgui.core.make_way import MakeWay, MakeWayEvent, MakeWaySettings
from lmgui.core.saved_sets import MAKING_WAY, SavedSetStore
from lmgui.sim import ManualClock, Simulator

GB = 10**9
LMS_PID = 4242
LMS_RUNTIME = 3 * 10**8
"""What LM Studio's worker holds besides the models (its CUDA context)."""
PIDS = {"Xorg": 1100, "blender": 5001, "game": 6001, "game.exe": 7001}

Step = dict[str, float] | None
"""The other programs on the GPU at one tick and their VRAM in GB; None: NVML fails."""


class ScriptedGpu:
    """A GPU reader that replays a script of other programs and their VRAM, one step per tick.

    LM Studio's worker holds what the simulator has loaded (so unloads and restores show in
    free memory, as on a real GPU); programs named in ``hidden`` hold memory the driver does not
    report per process (Windows' WDDM)."""

    def __init__(
        self, sim: Simulator, total: float = 32, hidden: frozenset[str] = frozenset()
    ) -> None:
        self.sim = sim
        self.total = int(total * GB)
        self.hidden = hidden
        self.now: Step = {}
        self.lms_name = "node"
        self.lms_path: str | None = "/home/u/.lmstudio/.internal/utils/node"

    def lms_bytes(self) -> int:
        with self.sim.state.lock:
            return self.sim.state.vram_used() + LMS_RUNTIME

    def read(self) -> list[GpuMemory] | None:
        if self.now is None:
            return None
        used = self.lms_bytes() + sum(int(gb * GB) for gb in self.now.values())
        return [GpuMemory("Scripted GPU", min(used, self.total), self.total)]

    def processes(self) -> list[GpuProcess] | None:
        if self.now is None:
            return None
        procs = [GpuProcess(LMS_PID, self.lms_name, self.lms_bytes(), path=self.lms_path)]
        for name, gb in self.now.items():
            size = None if name in self.hidden else int(gb * GB)
            procs.append(GpuProcess(PIDS[name], name, size, kind="graphics", path=f"/usr/{name}"))
        return procs


class Run:
    """lmgui's side: the poll's model list, the reading, one tick; every event kept."""

    def __init__(
        self, mw: MakeWay, client: LMStudioClient, gpu: ScriptedGpu, settings: MakeWaySettings
    ) -> None:
        self.mw, self.client, self.gpu, self.settings = mw, client, gpu, settings
        self.events: list[MakeWayEvent] = []

    async def __call__(self, *steps: Step) -> list[MakeWayEvent]:
        new: list[MakeWayEvent] = []
        for step in steps:
            self.gpu.now = step
            models = await self.client.list_models(with_truth=True)
            reading, procs = self.gpu.read(), self.gpu.processes()
            new += await self.mw.tick(self.client, self.settings, reading, procs, models, {})
        self.events += new
        return new

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def loaded(sim: Simulator) -> dict[str, tuple[str, int | None, object]]:
    """Identifier -> (model key, context length, GPU offload) as the server holds them."""
    with sim.state.lock:
        return {
            iid: (i.model_key, i.config.get("context_length"), i.config.get("gpu"))
            for iid, i in sim.state.instances.items()
        }


async def load_five(client: LMStudioClient, clock: ManualClock) -> None:
    """Five 4B instances (about 2.8 GB each), used in this order: d first, e last."""
    for ident in ("d", "c", "a", "b", "e"):
        await client.load("qwen/qwen3-4b", identifier=ident, context_length=4096, gpu=1.0)
        clock.advance(10)


def busy(sim: Simulator, ident: str) -> None:
    with sim.state.lock:
        sim.state.instances[ident].generating += 1  # another app's answer in progress


STARTED = 1_800_000_000.0
AT = time.strftime("%H:%M", time.localtime(STARTED))
CALM = {"Xorg": 0.4}
MARGIN = MakeWaySettings(enabled=True, margin_bytes=6 * GB, auto_restore=True)


@pytest.fixture
def store(tmp_path: Path) -> SavedSetStore:
    return SavedSetStore(tmp_path / "snapshots.json")


async def test_a_growing_program_sends_idle_instances_away_and_they_come_back(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        busy(sim, "c")  # older than a and b, but answering: stays
        store.set_pinned("d", True)  # the oldest, but pinned: stays
        before = loaded(sim)
        expected: list[tuple[str, list[str]]] = []
        mw = MakeWay(
            store,
            offered=True,
            clock=lambda: STARTED,
            expect=lambda kind, ids: expected.append((kind, list(ids))),
        )
        run = Run(mw, client, ScriptedGpu(sim), MARGIN)

        # Free: 32 - 14.4 (LM Studio) - 0.4 = 17.2 GB; blender starts small, then takes 15 GB.
        assert await run(CALM, {**CALM, "blender": 1}) == []
        assert run.mw.state_sentence() is None
        (made,) = await run({**CALM, "blender": 15})
        assert made.kind == "made_way" and made.programs == ("blender",)
        assert made.sentence == (
            'Made way for blender (15.0 GB): unloaded a and b; saved them as "before making way".'
        )
        assert set(loaded(sim)) == {"c", "d", "e"}  # least recently used idle ones went
        assert made.instances == ("a", "b")
        assert expected == [("removed", ["a"]), ("removed", ["b"])]  # told before each unload
        saved = store.get(MAKING_WAY)
        assert saved is not None and {i.identifier for i in saved.instances} == set(before)
        assert run.mw.making_way and not run.mw.restore_available
        assert run.mw.state_sentence() == (
            f"Making way for blender (15.0 GB) since {AT}: 2 instances unloaded."
        )

        # It keeps working at about that size: nothing more goes.
        assert await run(*({**CALM, "blender": gb} for gb in (15.1, 14.9, 15.2, 15))) == []

        (back,) = await run(CALM)  # blender exits
        assert back.kind == "restored"
        assert back.sentence == "blender no longer needs the GPU: brought back a and b."
        assert back.instances == ("a", "b") and expected[-1] == ("added", ["a", "b"])
    assert loaded(sim) == before  # same identifiers, contexts and offload
    assert (run.mw.making_way, run.mw.state_sentence()) == (False, None)
    assert run.kinds() == ["made_way", "restored"]


async def test_with_manual_restore_the_tray_offers_restore(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    settings = MakeWaySettings(enabled=True, margin_bytes=6 * GB, auto_restore=False)
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        before = loaded(sim)
        run = Run(
            MakeWay(store, offered=True, clock=lambda: STARTED), client, ScriptedGpu(sim), settings
        )
        await run(CALM, {**CALM, "blender": 1}, {**CALM, "blender": 15})
        assert set(loaded(sim)) == {"a", "b", "e"}  # d and c were used longest ago
        (offer,) = await run(CALM)
        assert offer.kind == "restore_available" and run.mw.restore_available
        assert offer.sentence == (
            "blender no longer needs the GPU: Restore in the tray brings back d and c."
        )
        assert await run(CALM, CALM) == []  # said once
        assert set(loaded(sim)) == {"a", "b", "e"}  # nothing loaded on its own
        assert run.mw.state_sentence() == (
            f"Made way for blender at {AT}: Restore brings back 2 instances."
        )

        done = await run.mw.restore_now(client)
    assert done.sentence == "Brought back d and c."
    assert loaded(sim) == before
    assert (run.mw.restore_available, run.mw.state_sentence()) == (False, None)


async def test_with_the_setting_off_nothing_is_touched_but_the_offer_comes_once(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        before = loaded(sim)
        run = Run(MakeWay(store), client, ScriptedGpu(sim), MakeWaySettings())
        blender = {**CALM, "blender": 15}
        events = await run(CALM, {**CALM, "blender": 0.5}, blender, blender, CALM, blender)
    (offer,) = events  # Xorg and a small blender are not worth it; 15 GB is, once
    assert offer.kind == "offer" and offer.programs == ("blender",)
    assert offer.sentence == (
        "blender (15.0 GB) is using the GPU's memory beside LM Studio: lmgui can make way for "
        "programs like it, unloading idle models while they need the VRAM and bringing them "
        "back after (Make way for other GPU apps)."
    )
    assert loaded(sim) == before and store.all() == []
    assert not [r for r in sim.requests if r.path.endswith("/unload")]
    assert run.mw.state_sentence() is None and not run.mw.making_way


async def test_an_app_that_already_offered_is_not_offered_again(
    sim: Simulator, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        run = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MakeWaySettings())
        assert await run(CALM, {**CALM, "blender": 15}) == []


async def test_lm_studio_s_own_growth_never_makes_way(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        gpu = ScriptedGpu(sim, total=20)
        gpu.lms_name, gpu.lms_path = "LM Studio.exe", None  # the worker as Windows names it
        run = Run(MakeWay(store), client, gpu, MARGIN)
        game = {**CALM, "game": 0.8}  # already running, steady
        await client.load("qwen/qwen3-4b", identifier="one", context_length=4096)
        assert await run(game) == []
        for ident in ("two", "three", "four", "five"):  # LM Studio grows: a user's own loads
            await client.load("qwen/qwen3-4b", identifier=ident, context_length=4096)
            assert await run(game, game) == []
        # Free: 20 - 14.4 - 1.2 = 4.4 GB, below the margin, and LM Studio's 14 GB process is
        # neither offered for nor made way for.
        assert (gpu.read() or [])[0].free_bytes < MARGIN.margin_bytes
        assert len(loaded(sim)) == 5 and store.all() == []

        # Now the game grows: that is another app (worth the offer too, the first time).
        offer, made = await run({**CALM, "game": 6})
    assert offer.kind == "offer" and offer.programs == ("game",)
    assert made.kind == "made_way" and made.sentence.startswith("Made way for game (6.0 GB)")


async def test_noise_never_unloads_more_and_restore_waits_for_room(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        before = loaded(sim)
        run = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MARGIN)
        await run(CALM, {**CALM, "blender": 1}, {**CALM, "blender": 15})
        assert set(loaded(sim)) == {"a", "b", "e"}  # d and c were used longest ago
        # Free hovers around the margin while blender churns: nothing more goes.
        churn = [{**CALM, "blender": 15 + d} for d in (0.2, -0.1, 0.24, 0.0, -0.2, 0.1)]
        assert await run(*churn) == []
        # blender exits as a game takes 12 GB: restoring 5.9 GB would leave 4.9 GB free, under
        # the 6 GB margin, so lmgui waits (and never counts the game, which came in with room).
        game = [{**CALM, "game": 12 + d} for d in (0.0, 0.1, -0.1, 0.2)]
        assert await run(*game) == []
        assert set(loaded(sim)) == {"a", "b", "e"}
        assert run.mw.state_sentence() == (
            "blender no longer needs the GPU: waiting for 5.9 GB of free VRAM to bring back "
            "2 instances."
        )
        (back,) = await run(CALM)  # the game quits too
        assert back.kind == "restored"
        assert await run(CALM, CALM, {**CALM, "game": 3}, CALM) == []  # and it stays calm
    assert loaded(sim) == before
    assert run.kinds() == ["made_way", "restored"]


async def test_growing_again_sends_more_away_and_the_snapshot_only_gains(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        busy(sim, "c")
        store.set_pinned("d", True)
        before = loaded(sim)
        run = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MARGIN)
        await run(CALM, {**CALM, "blender": 1}, {**CALM, "blender": 15})
        assert set(loaded(sim)) == {"c", "d", "e"}
        # Meanwhile someone loads a small model; then blender takes 21 GB.
        await client.load("google/gemma-3-270m", identifier="f", context_length=4096)
        clock.advance(10)
        before["f"] = loaded(sim)["f"]
        (more,) = await run({**CALM, "blender": 21})
        assert more.sentence == (
            'Made way for blender (21.0 GB): unloaded e and f; saved them as "before making way"; '
            "still short of the 6.0 GB margin."
        )
        assert set(loaded(sim)) == {"c", "d"}  # busy and pinned stay, whatever the shortage
        saved = store.get(MAKING_WAY)
        assert saved is not None  # the first snapshot, plus f: never the reduced set
        assert [i.identifier for i in saved.instances] == ["d", "c", "a", "b", "e", "f"]
        assert await run({**CALM, "blender": 21.2}, {**CALM, "blender": 20.9}) == []
        assert run.mw.state_sentence() is not None
        assert "4 instances unloaded" in (run.mw.state_sentence() or "")
        (back,) = await run(CALM)
    assert back.sentence == "blender no longer needs the GPU: brought back a, b, e and f."
    assert loaded(sim) == before


async def test_a_program_that_gives_its_memory_back_ends_the_episode(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        run = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MARGIN)
        await run(CALM, {**CALM, "blender": 1}, {**CALM, "blender": 15})
        assert await run({**CALM, "blender": 8}) == []  # still holding far more than at first
        (back,) = await run({**CALM, "blender": 1.1})  # back to where it started: done
    assert back.kind == "restored" and len(loaded(sim)) == 5


async def test_the_server_not_answering_is_said_once_and_tried_again(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        gpu = ScriptedGpu(sim)
        mw = MakeWay(store, offered=True)
        models = await client.list_models(with_truth=True)
        for step in (CALM, {**CALM, "blender": 1}):
            gpu.now = step
            await mw.tick(client, MARGIN, gpu.read(), gpu.processes(), models, {})
        gpu.now = {**CALM, "blender": 15}
        sim.config.drop_rate = 1.0  # every answer cut off
        said = []
        for _ in range(3):
            said += await mw.tick(client, MARGIN, gpu.read(), gpu.processes(), models, {})
        (down,) = said
        assert down.kind == "server_unreachable"
        assert down.sentence.startswith("Making way for blender (15.0 GB) stopped: ")
        assert down.sentence.endswith("; lmgui will try again.")
        assert len(loaded(sim)) == 5 and not mw.making_way

        sim.config.drop_rate = 0.0
        (made,) = await mw.tick(client, MARGIN, gpu.read(), gpu.processes(), models, {})
    assert made.kind == "made_way" and set(loaded(sim)) == {"a", "b", "e"}


async def test_the_gpu_unreadable_mid_way_leaves_restore_to_the_user(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        before = loaded(sim)
        run = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MARGIN)
        await run(CALM, {**CALM, "blender": 1}, {**CALM, "blender": 15})
        (lost,) = await run(None, None, None)  # NVML fails: said once
        assert lost.kind == "restore_available" and run.mw.restore_available
        assert lost.sentence == (
            "lmgui can no longer read the GPU, so it cannot tell when blender (15.0 GB) is done: "
            "Restore in the tray brings back d and c."
        )
        assert await run(CALM, CALM) == []  # readable again, blender gone: still the user's call
        assert set(loaded(sim)) == {"a", "b", "e"}
        await run.mw.restore_now(client)
    assert loaded(sim) == before


async def test_the_gpu_unreadable_with_the_setting_on_is_said_once(
    sim: Simulator, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        run = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MARGIN)
        (said,) = await run(None, None, CALM)
        assert said.kind == "gpu_unreadable"
        assert said.sentence == (
            "lmgui cannot read which programs use the GPU, so it cannot make way for them."
        )
        assert await run(None) == [said]  # lost again after a good reading: said again
        off = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MakeWaySettings())
        assert await off(None, None) == []  # the setting off: nothing to say


async def test_a_tick_that_could_do_nothing_is_known_before_it_is_run(
    sim: Simulator, store: SavedSetStore
) -> None:
    """The app asks ``idle`` on every poll and runs no tick when it says so: it must be True
    only where the tick would do and say nothing."""
    gpu = ScriptedGpu(sim)
    mw = MakeWay(store, offered=True)
    assert mw.idle(MakeWaySettings(), None, None), "off, and no GPU to read: nothing to do"
    assert not mw.idle(MARGIN, None, None), "on: it has to say once that it cannot read the GPU"
    async with LMStudioClient(sim.url, lms=None) as client:
        run = Run(mw, client, gpu, MARGIN)
        assert [e.kind for e in await run(None)] == ["gpu_unreadable"]
        assert mw.idle(MARGIN, None, None)
        assert await run(None) == [], "said: the tick that idle spares says nothing either"
        gpu.now = CALM
        assert not mw.idle(MARGIN, gpu.read(), gpu.processes()), "a reading: the tick decides"


async def test_a_program_whose_size_the_driver_hides_counts_when_it_arrives_short(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        gpu = ScriptedGpu(sim, hidden=frozenset({"game.exe"}))
        run = Run(MakeWay(store), client, gpu, MARGIN)
        assert await run(CALM, CALM) == []
        offer, made = await run({**CALM, "game.exe": 15})
        assert offer.kind == "offer" and offer.sentence.startswith(
            "game.exe (size unknown) is using the GPU's memory"
        )
        assert made.sentence == (
            'Made way for game.exe (size unknown): unloaded d and c; saved them as "before making '
            'way".'
        )
        # Its size never shows, so only its exit ends the episode; its churn does nothing.
        assert await run({**CALM, "game.exe": 15.2}, {**CALM, "game.exe": 17}) == []
        (back,) = await run(CALM)
    assert back.kind == "restored" and len(loaded(sim)) == 5


async def test_when_every_instance_is_busy_or_pinned_nothing_goes_and_it_says_so_once(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await client.load("qwen/qwen3-4b", identifier="chat", context_length=4096)
        await client.load("qwen/qwen3-4b", identifier="coder", context_length=4096)
        busy(sim, "chat")
        store.set_pinned("coder", True)
        run = Run(
            MakeWay(store, offered=True, clock=lambda: STARTED), client, ScriptedGpu(sim), MARGIN
        )
        (said,) = await run(CALM, {**CALM, "blender": 1}, {**CALM, "blender": 25})
        assert said.sentence == (
            "blender (25.0 GB) needs the GPU's memory, but every loaded instance is busy or "
            "pinned: nothing was unloaded."
        )
        assert run.mw.state_sentence() == (
            f"Making way for blender (25.0 GB) since {AT}: nothing could be unloaded (every "
            "instance is busy or pinned)."
        )
        assert await run({**CALM, "blender": 25}, {**CALM, "blender": 25.1}) == []
        assert await run(CALM) == []  # it exits: nothing to bring back
    assert run.mw.state_sentence() is None and set(loaded(sim)) == {"chat", "coder"}


async def test_turning_the_setting_off_mid_way_leaves_restore_to_the_user(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        run = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MARGIN)
        await run(CALM, {**CALM, "blender": 1}, {**CALM, "blender": 15})
        run.settings = MakeWaySettings(enabled=False, margin_bytes=6 * GB)
        (off,) = await run({**CALM, "blender": 15}, CALM, CALM)
        assert off.sentence == "Making way is off: Restore in the tray brings back d and c."
        assert set(loaded(sim)) == {"a", "b", "e"} and run.mw.restore_available


async def test_nothing_is_unloaded_when_the_snapshot_cannot_be_saved(
    sim: Simulator, clock: ManualClock, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    store = SavedSetStore(tmp_path / "file" / "snapshots.json")  # its folder cannot exist
    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        run = Run(MakeWay(store, offered=True), client, ScriptedGpu(sim), MARGIN)
        (failed,) = await run(
            CALM, {**CALM, "blender": 1}, {**CALM, "blender": 15}, {**CALM, "blender": 15}
        )
    assert failed.kind == "save_failed"
    assert failed.sentence.startswith(
        "lmgui could not save the loaded set before making way for blender (15.0 GB), so it "
        "unloaded nothing: "
    )
    assert len(loaded(sim)) == 5 and not run.mw.making_way


async def test_the_server_going_away_between_two_unloads_is_said_and_taken_up_again(
    sim: Simulator, clock: ManualClock, store: SavedSetStore
) -> None:
    cut_once = [True]

    def expect(kind: str, ids: object) -> None:
        if (
            ids == ["c"] and cut_once and cut_once.pop()
        ):  # the server stops answering before the second
            sim.config.drop_rate = 1.0

    async with LMStudioClient(sim.url, lms=None) as client:
        await load_five(client, clock)
        before = loaded(sim)
        run = Run(MakeWay(store, offered=True, expect=expect), client, ScriptedGpu(sim), MARGIN)
        await run(CALM, {**CALM, "blender": 1})
        (cut,) = await run({**CALM, "blender": 15})
        assert cut.kind == "server_unreachable"
        assert cut.sentence.startswith(
            "Making way for blender (15.0 GB) stopped after unloading d: "
        )
        assert set(loaded(sim)) == {"a", "b", "c", "e"}
        sim.config.drop_rate = 0.0
        (made,) = await run({**CALM, "blender": 15})  # the same growth: taken up again
        assert made.instances == ("c",) and set(loaded(sim)) == {"a", "b", "e"}
        assert run.mw.state_sentence() is not None
        (back,) = await run(CALM)
    assert back.instances == ("d", "c") and loaded(sim) == before
