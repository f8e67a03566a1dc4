"""Make way for other GPU apps: step aside when another program needs the VRAM, come back after.

Qt-free. The app calls ``MakeWay.tick`` once per poll, for a server on this machine, with the GPU
reading of that poll (a ``GpuReader``'s ``read()`` and ``processes()``), the models as polled and
lmgui's ledger; the settings are plain values the app keeps.

The rule, in order:

- A process on the GPU that is neither LM Studio's (``gpu.is_lm_studio``) nor lmgui itself is
  another program's. The first time one uses a lot of VRAM (a gigabyte, or an unknown amount
  while memory is short) lmgui offers the setting once: an ``offer`` event, reported even while
  the setting is off (the app keeps the "offered" flag and passes it back at start).
- A program is the *cause* of a shortage when free VRAM on one of its GPUs is below the margin
  and it grew by more than ``noise_bytes`` since lmgui first saw it there with enough room (a
  program that appeared while memory was short counts from zero; one whose size the driver does
  not report counts when it appeared since the last tick with enough room). LM Studio's own
  growth (a load) never starts making way: the user asked for that load.
- For a cause, and only while the setting is on, lmgui saves the loaded set as "before making
  way" (once per episode; instances unloaded in a later round are added, never a reduced set
  written over it), then unloads idle, unpinned instances least recently used first until the
  estimated VRAM freed brings free VRAM back to the margin (``saved_sets.plan_room``), never a
  busy or pinned one. It acts again in the same episode only when a cause grows by more than
  ``noise_bytes`` past its size at the last round, so noise never unloads more.
- The episode ends when every cause has exited or is back within ``noise_bytes`` of where it
  started. lmgui restores what it unloaded (and only that) once free VRAM minus the restore's
  estimate stays at or above the margin: automatically with ``auto_restore``, else it reports
  ``restore_available`` for the tray's Restore (``restore_now``).
- Setting off: nothing is touched (an episode in progress waits for the user's Restore). GPU
  unreadable mid-way: said once, and an episode in progress waits for the user's Restore. The
  server not answering while lmgui acts: said once, tried again on the next tick.

Every event is one sentence, written to the log here; ``state_sentence`` is the tray's line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from lmgui.api.client import LMStudioClient
from lmgui.api.errors import ApiError, NotFoundError, ServerUnreachable
from lmgui.api.records import Model
from lmgui.core.format import human_bytes
from lmgui.core.gpu import GpuMemory, GpuProcess, is_lm_studio
from lmgui.core.instances import InstanceInfo
from lmgui.core.saved_sets import (
    MAKING_WAY,
    RestoreSummary,
    RoomPlan,
    SavedInstance,
    SavedSet,
    SavedSetStore,
    plan_room,
    restore,
    room_candidates,
    saved_set_of,
)
from lmgui.core.vram import estimate_instance

__all__ = [
    "NOISE_BYTES",
    "SIGNIFICANT_BYTES",
    "EventKind",
    "MakeWay",
    "MakeWayEvent",
    "MakeWaySettings",
]

log = logging.getLogger(__name__)

NOISE_BYTES = 250 * 10**6
"""Growth below this is a program's ordinary churn, never a reason to unload more."""
SIGNIFICANT_BYTES = 10**9
"""Another program's use worth offering the setting for."""

EventKind = Literal[
    "offer",
    "made_way",
    "restored",
    "restore_available",
    "gpu_unreadable",
    "server_unreachable",
    "save_failed",
]


@dataclass(frozen=True)
class MakeWaySettings:
    enabled: bool = False
    margin_bytes: int = 2 * 10**9
    """Free VRAM to keep for other programs."""
    auto_restore: bool = True
    """Bring the instances back on its own; False: the tray's Restore does it."""
    noise_bytes: int = NOISE_BYTES


@dataclass(frozen=True)
class MakeWayEvent:
    """Something make-way did or saw, as one sentence for the log and a notification."""

    kind: EventKind
    sentence: str
    programs: tuple[str, ...] = ()
    """The other programs it is about, by name."""
    instances: tuple[str, ...] = ()
    """The instances it unloaded (made_way) or brought back (restored)."""


@dataclass
class _Program:
    """Another program on the GPU, over all the GPUs it uses."""

    pid: int
    name: str
    gpus: set[int] = field(default_factory=set)
    size: int | None = None
    """Its VRAM over all GPUs; None when the driver reports no size for it."""


@dataclass
class _Cause:
    pid: int
    name: str
    start: int
    """Its size before it grew (0 when it appeared while memory was short)."""
    size: int | None


@dataclass
class _Episode:
    started: float
    causes: dict[int, _Cause] = field(default_factory=dict)
    saved: SavedSet | None = None
    unloaded: list[str] = field(default_factory=list)
    manual: bool = False
    """Only the user's Restore ends it now (setting turned off, or the GPU unreadable)."""
    done: bool = False
    """Every cause has exited or given its memory back."""
    gone: list[str] = field(default_factory=list)
    """The names of the causes, kept for the sentences once they have exited."""
    waiting_bytes: int | None = None
    """Done, but the restore does not fit yet: what it needs."""
    said_available: bool = False


class MakeWay:
    """One server's make-way state across ticks. A tick that arrives while the previous one (a
    long restore) or the user's Restore still runs returns at once with nothing."""

    def __init__(
        self,
        store: SavedSetStore,
        *,
        offered: bool = False,
        own_pid: int | None = None,
        clock: Callable[[], float] = time.time,
        expect: Callable[[str, Sequence[str]], None] | None = None,
    ) -> None:
        """``offered``: the app already showed the offer (its persisted flag). ``expect(kind,
        ids)`` hears ("removed", ids) before lmgui unloads and ("added", ids) before it restores
        (``Actions.expect``: the tree and the notifications do not report them as another
        app's)."""
        self.store = store
        self._expect = expect
        self._offered = offered
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._clock = clock
        self._episode: _Episode | None = None
        self._reference: dict[int, int] = {}
        """Another program's smallest size seen while there was room: where its growth counts
        from."""
        self._calm_pids: set[int] | None = None
        """The programs present at the last tick with room (None: no such tick yet)."""
        self._acted: dict[int, int | None] = {}
        """A program's size when lmgui last acted (or could not) for it."""
        self._lock = asyncio.Lock()
        """One tick or one Restore at a time."""
        self._unreadable_said = False
        self._unreachable_said = False
        self._save_failed_said = False

    # ------------------------------------------------------------------ what the tray shows

    @property
    def making_way(self) -> bool:
        return self._episode is not None

    @property
    def restore_available(self) -> bool:
        """The tray shows Restore: lmgui unloaded instances and waits for the user to bring
        them back (manual restore chosen, the setting turned off, or the GPU unreadable)."""
        ep = self._episode
        return bool(ep and ep.unloaded and (ep.manual or ep.said_available))

    def state_sentence(self) -> str | None:
        """The tray tooltip's line while an episode lasts, else None."""
        ep = self._episode
        if ep is None:
            return None
        since = time.strftime("%H:%M", time.localtime(ep.started))
        count = _instances(len(ep.unloaded))
        who = _who(ep.causes.values()) if ep.causes else _names(ep.gone)
        if self.restore_available:
            return f"Made way for {who} at {since}: Restore brings back {count}."
        if ep.done and ep.waiting_bytes is not None:
            return (
                f"{_names(ep.gone) or who} no longer needs the GPU: waiting for "
                f"{human_bytes(ep.waiting_bytes)} of free VRAM to bring back {count}."
            )
        if not ep.unloaded:
            return (
                f"Making way for {who} since {since}: nothing could be unloaded "
                "(every instance is busy or pinned)."
            )
        return f"Making way for {who} since {since}: {count} unloaded."

    # ------------------------------------------------------------------ the tick

    def idle(
        self,
        settings: MakeWaySettings,
        gpus: Sequence[GpuMemory] | None,
        processes: Sequence[GpuProcess] | None,
    ) -> bool:
        """``tick`` would do nothing with this reading (asked first, so most polls of a machine
        without a readable GPU cost no task)."""
        unreadable = not gpus or processes is None
        return unreadable and (
            self._unreadable_said or not (settings.enabled or self._episode is not None)
        )

    async def tick(
        self,
        client: LMStudioClient,
        settings: MakeWaySettings,
        gpus: Sequence[GpuMemory] | None,
        processes: Sequence[GpuProcess] | None,
        models: Sequence[Model],
        infos: Mapping[str, InstanceInfo] | None = None,
    ) -> list[MakeWayEvent]:
        """One poll's decision. ``gpus`` and ``processes``: the reader's ``read()`` and
        ``processes()`` of this poll (None when unreadable); ``models``: the server's list as
        polled (the catalog with its instances); ``infos``: lmgui's ledger. Never raises for
        the server or the GPU: what went wrong is an event."""
        if self._lock.locked():
            return []
        async with self._lock:
            events = await self._tick(client, settings, gpus, processes, models, dict(infos or {}))
        for event in events:
            log.info("make way: %s", event.sentence)
        return events

    async def _tick(
        self,
        client: LMStudioClient,
        settings: MakeWaySettings,
        gpus: Sequence[GpuMemory] | None,
        processes: Sequence[GpuProcess] | None,
        models: Sequence[Model],
        infos: dict[str, InstanceInfo],
    ) -> list[MakeWayEvent]:
        if not gpus or processes is None:
            return self._unreadable(settings)
        self._unreadable_said = False
        programs = self._programs(processes)
        free = {g.index: g.free_bytes for g in gpus}
        short = {i for i, f in free.items() if f < settings.margin_bytes}
        events = self._offer(programs, short)
        self._track(programs, short)
        ep = self._episode
        if not settings.enabled:
            if ep is not None and not ep.manual:
                if ep.unloaded:
                    ep.manual = True
                    events.append(self._available(ep, "Making way is off"))
                else:
                    self._episode = None
            return events
        if ep is not None and not ep.manual:
            self._follow(ep, programs, settings)
            if ep.done:
                events += await self._come_back(client, settings, ep, free, len(gpus), models)
        causes = self._causes(programs, short, settings)
        if causes:
            events += await self._make_way(
                client, settings, causes, programs, free, short, len(gpus), infos
            )
        return events

    def _unreadable(self, settings: MakeWaySettings) -> list[MakeWayEvent]:
        ep = self._episode
        if self._unreadable_said or not (settings.enabled or ep is not None):
            return []
        self._unreadable_said = True
        if ep is not None and ep.unloaded and not ep.manual:
            ep.manual = True
            who = _who(ep.causes.values()) if ep.causes else _names(ep.gone)
            return [
                self._available(
                    ep, f"lmgui can no longer read the GPU, so it cannot tell when {who} is done"
                )
            ]
        if ep is not None and not ep.unloaded:
            self._episode = None
        return [
            MakeWayEvent(
                "gpu_unreadable",
                "lmgui cannot read which programs use the GPU, so it cannot make way for them.",
            )
        ]

    def _programs(self, processes: Iterable[GpuProcess]) -> dict[int, _Program]:
        out: dict[int, _Program] = {}
        for p in processes:
            if p.pid == self._own_pid or is_lm_studio(p):
                continue
            prog = out.setdefault(p.pid, _Program(p.pid, p.name))
            prog.gpus.add(p.gpu_index)
            if p.vram_bytes is not None:
                prog.size = (prog.size or 0) + p.vram_bytes
        return out

    def _offer(self, programs: dict[int, _Program], short: set[int]) -> list[MakeWayEvent]:
        if self._offered:
            return []
        known_before = self._calm_pids or set()
        for prog in programs.values():
            big = prog.size is not None and prog.size >= SIGNIFICANT_BYTES
            new_and_short = (
                prog.size is None
                and self._calm_pids is not None
                and prog.pid not in known_before
                and bool(prog.gpus & short)
            )
            if big or new_and_short:
                self._offered = True
                return [
                    MakeWayEvent(
                        "offer",
                        f"{_one(prog)} is using the GPU's memory beside LM Studio: lmgui can "
                        "make way for programs like it, unloading idle models while they need "
                        "the VRAM and bringing them back after (Make way for other GPU apps).",
                        (prog.name,),
                    )
                ]
        return []

    def _track(self, programs: dict[int, _Program], short: set[int]) -> None:
        for pid in set(self._reference) - set(programs):
            del self._reference[pid]
        for pid in set(self._acted) - set(programs):
            del self._acted[pid]
        if short:
            return
        self._calm_pids = set(programs)
        for pid, prog in programs.items():
            if prog.size is not None:
                old = self._reference.get(pid)
                self._reference[pid] = prog.size if old is None else min(old, prog.size)

    def _causes(
        self, programs: dict[int, _Program], short: set[int], settings: MakeWaySettings
    ) -> list[_Program]:
        causes = []
        for pid, prog in programs.items():
            if not prog.gpus & short:
                continue
            if pid in self._acted:
                acted = self._acted[pid]
                grew = (
                    prog.size is not None
                    and acted is not None
                    and prog.size - acted > settings.noise_bytes
                )
            elif prog.size is not None:
                grew = prog.size - self._reference.get(pid, 0) > settings.noise_bytes
            else:
                grew = self._calm_pids is not None and pid not in self._calm_pids
            if grew:
                causes.append(prog)
        return causes

    # ------------------------------------------------------------------ stepping aside

    async def _make_way(
        self,
        client: LMStudioClient,
        settings: MakeWaySettings,
        causes: list[_Program],
        programs: dict[int, _Program],
        free: dict[int, int],
        short: set[int],
        gpu_count: int,
        infos: dict[str, InstanceInfo],
    ) -> list[MakeWayEvent]:
        who = _who(causes)
        names = tuple(c.name for c in causes)
        try:
            models = await client.list_models(with_truth=True)
        except ApiError as exc:
            return self._unreachable(who, exc, names)
        self._unreachable_said = False
        # With several GPUs LM Studio splits an instance evenly by default: each frees its share.
        share = max(1, gpu_count)
        candidates = [
            replace(c, vram_bytes=c.vram_bytes // share)
            for c in room_candidates(models, infos, self.store.pinned())
        ]
        room = min(free[i] for i in short)
        plan = plan_room(settings.margin_bytes, room, candidates)
        ep = self._episode
        if not plan.unload:
            self._mark(causes)
            if not candidates:
                return []  # nothing of LM Studio's is loaded: nothing to step aside with
            if ep is None:
                ep = self._episode = _Episode(self._clock())
            self._add_causes(ep, causes)
            return [
                MakeWayEvent(
                    "made_way",
                    f"{who} needs the GPU's memory, but every loaded instance is busy or "
                    "pinned: nothing was unloaded.",
                    names,
                )
            ]
        saved = _with(
            ep.saved if ep is not None and ep.saved is not None else None,
            saved_set_of(MAKING_WAY, client.base_url, models, infos),
            {c.instance_id for c in plan.unload},
        )
        try:
            self.store.save(saved)
        except OSError as exc:
            self._mark(causes)
            if self._save_failed_said:
                return []
            self._save_failed_said = True
            return [
                MakeWayEvent(
                    "save_failed",
                    f"lmgui could not save the loaded set before making way for {who}, so it "
                    f"unloaded nothing: {exc}.",
                    names,
                )
            ]
        self._save_failed_said = False
        if ep is None:
            ep = self._episode = _Episode(self._clock())
        ep.saved = saved
        ep.done = False
        ep.waiting_bytes = None
        unloaded: list[str] = []
        failed: list[tuple[str, str]] = []
        for cand in plan.unload:
            if self._expect is not None:
                self._expect("removed", [cand.instance_id])
            try:
                await client.unload(cand.instance_id)
            except NotFoundError:
                continue  # another client unloaded it meanwhile: gone either way
            except ApiError as exc:
                if isinstance(exc, ServerUnreachable):
                    ep.unloaded += unloaded
                    self._add_causes(ep, causes)
                    # Not marked: the next tick sees the same growth and goes on from here.
                    return self._unreachable(who, exc, names, unloaded)
                failed.append((cand.instance_id, _reason(exc)))
            else:
                unloaded.append(cand.instance_id)
        ep.unloaded += [i for i in unloaded if i not in ep.unloaded]
        self._add_causes(ep, causes)
        self._mark(causes)
        sentence = _made_way(who, unloaded, failed, plan, settings)
        return [MakeWayEvent("made_way", sentence, names, tuple(unloaded))]

    def _add_causes(self, ep: _Episode, causes: Iterable[_Program]) -> None:
        for c in causes:
            if c.pid not in ep.causes:
                start = self._reference.get(c.pid, 0) if c.size is not None else 0
                ep.causes[c.pid] = _Cause(c.pid, c.name, start, c.size)
            else:
                ep.causes[c.pid].size = c.size

    def _mark(self, causes: Iterable[_Program]) -> None:
        for c in causes:
            self._acted[c.pid] = c.size

    def _unreachable(
        self, who: str, exc: ApiError, names: tuple[str, ...], unloaded: Sequence[str] = ()
    ) -> list[MakeWayEvent]:
        if self._unreachable_said and not unloaded:
            return []
        self._unreachable_said = True
        done = f" after unloading {_names(unloaded)}" if unloaded else ""
        return [
            MakeWayEvent(
                "server_unreachable",
                f"Making way for {who} stopped{done}: {_reason(exc)}; lmgui will try again.",
                names,
            )
        ]

    # ------------------------------------------------------------------ coming back

    def _follow(
        self, ep: _Episode, programs: dict[int, _Program], settings: MakeWaySettings
    ) -> None:
        for pid, cause in list(ep.causes.items()):
            prog = programs.get(pid)
            released = (
                prog is not None
                and prog.size is not None
                and prog.size <= cause.start + settings.noise_bytes
            )
            if prog is None or released:
                del ep.causes[pid]
                self._acted.pop(pid, None)
                if cause.name not in ep.gone:
                    ep.gone.append(cause.name)
            else:
                cause.size = prog.size
        ep.done = not ep.causes

    async def _come_back(
        self,
        client: LMStudioClient,
        settings: MakeWaySettings,
        ep: _Episode,
        free: dict[int, int],
        gpu_count: int,
        models: Sequence[Model],
    ) -> list[MakeWayEvent]:
        if not ep.unloaded or ep.saved is None:
            self._episode = None
            return []
        back = _only(ep.saved, ep.unloaded)
        loaded = {i.id for m in models for i in m.instances}
        need = sum(_estimate(e, models) for e in back.instances if e.identifier not in loaded)
        if any(f - need // max(1, gpu_count) < settings.margin_bytes for f in free.values()):
            ep.waiting_bytes = need
            return []
        ep.waiting_bytes = None
        who = _names(ep.gone) or "The other program"
        if not settings.auto_restore:
            if ep.said_available:
                return []
            return [self._available(ep, f"{who} no longer needs the GPU")]
        try:
            summary = await self._restore(client, back)
        except ApiError as exc:
            if self._unreachable_said:
                return []
            self._unreachable_said = True
            return [
                MakeWayEvent(
                    "server_unreachable",
                    f"{who} no longer needs the GPU, but {_reason(exc)}; lmgui will try again.",
                    tuple(ep.gone),
                )
            ]
        self._unreachable_said = False
        self._episode = None
        return [
            MakeWayEvent("restored", _came_back(who, summary), tuple(ep.gone), _brought(summary))
        ]

    async def _restore(self, client: LMStudioClient, saved: SavedSet) -> RestoreSummary:
        if self._expect is not None:
            self._expect("added", [e.identifier for e in saved.instances])
        return await restore(client, saved)

    def _available(self, ep: _Episode, why: str) -> MakeWayEvent:
        ep.said_available = True
        return MakeWayEvent(
            "restore_available",
            f"{why}: Restore in the tray brings back {_names(ep.unloaded)}.",
            tuple(c.name for c in ep.causes.values()) or tuple(ep.gone),
        )

    async def restore_now(self, client: LMStudioClient) -> MakeWayEvent:
        """The tray's Restore: bring back what making way unloaded (or, with no episode, the
        whole "before making way" snapshot) and end the episode. ``ApiError`` when the server
        cannot even be listed (the episode stays). Waits for a tick in progress to finish."""
        async with self._lock:
            event = await self._restore_now(client)
        log.info("make way: %s", event.sentence)
        return event

    async def _restore_now(self, client: LMStudioClient) -> MakeWayEvent:
        ep = self._episode
        if ep is not None and ep.saved is not None:
            saved: SavedSet | None = _only(ep.saved, ep.unloaded)
        else:
            saved = self.store.get(MAKING_WAY)
        if saved is None:
            self._episode = None
            return MakeWayEvent("restored", "lmgui has not made way for anything to restore.")
        summary = await self._restore(client, saved)
        if ep is not None:
            for pid in ep.causes:
                self._acted.pop(pid, None)
        self._episode = None
        return MakeWayEvent("restored", _came_back(None, summary), instances=_brought(summary))


# ----------------------------------------------------------------------------- sentences


def _one(prog: _Program | _Cause) -> str:
    size = "size unknown" if prog.size is None else human_bytes(prog.size)
    return f"{prog.name} ({size})"


def _who(progs: Iterable[_Program | _Cause]) -> str:
    return _names([_one(p) for p in progs])


def _names(names: Sequence[str]) -> str:
    names = list(dict.fromkeys(names))
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _instances(n: int) -> str:
    return "1 instance" if n == 1 else f"{n} instances"


def _made_way(
    who: str,
    unloaded: Sequence[str],
    failed: Sequence[tuple[str, str]],
    plan: RoomPlan,
    settings: MakeWaySettings,
) -> str:
    parts = []
    if unloaded:
        parts.append(f'unloaded {_names(unloaded)}; saved them as "{MAKING_WAY}"')
    if failed:
        parts.append("could not unload " + "; ".join(f"{i} ({why})" for i, why in failed))
    if unloaded and not plan.enough:
        parts.append(f"still short of the {human_bytes(settings.margin_bytes)} margin")
    lead = f"Made way for {who}" if unloaded else f"Could not make way for {who}"
    return f"{lead}: " + "; ".join(parts) + "."


def _brought(summary: RestoreSummary) -> tuple[str, ...]:
    return tuple(e.identifier for e, _ in summary.loaded)


def _came_back(who: str | None, summary: RestoreSummary) -> str:
    parts = []
    if summary.loaded:
        parts.append("brought back " + _names([e.identifier for e, _ in summary.loaded]))
    if summary.already:
        parts.append("already loaded: " + _names([e.identifier for e in summary.already]))
    if summary.failed:
        parts.append(
            "could not bring back " + "; ".join(f"{e.identifier} ({w})" for e, w in summary.failed)
        )
    text = "; ".join(parts) or "nothing to bring back"
    if who is None:
        return text[0].upper() + text[1:] + "."
    return f"{who} no longer needs the GPU: {text}."


# ----------------------------------------------------------------------------- helpers


def _with(old: SavedSet | None, now: SavedSet, unloading: set[str]) -> SavedSet:
    """The snapshot to keep: the first of the episode, plus what is being unloaded now that it
    lacks (loaded since); never the already reduced set over it."""
    if old is None:
        return now
    have = {e.identifier for e in old.instances}
    extra = tuple(e for e in now.instances if e.identifier in unloading - have)
    return replace(old, instances=old.instances + extra) if extra else old


def _only(saved: SavedSet, identifiers: Sequence[str]) -> SavedSet:
    keep = set(identifiers)
    return replace(saved, instances=tuple(e for e in saved.instances if e.identifier in keep))


def _estimate(entry: SavedInstance, models: Sequence[Model]) -> int:
    model = next((m for m in models if m.key == entry.model_key), None)
    if model is None:
        return 0  # not in the catalog any more: its load will fail and say so
    gpu = 1.0 if entry.gpu_offload is None else entry.gpu_offload
    return estimate_instance(
        model,
        context_length=entry.context_length,
        gpu_fraction=gpu,
        kv_on_gpu=entry.offload_kv_cache_to_gpu,
    ).vram_bytes


def _reason(exc: ApiError) -> str:
    return str(exc).rstrip(".")
