"""What the tray shows of one server, as data: built from the snapshot, the ledger and the
settings, Qt-free, so the icon, the tooltip and the menu's content are tested without a tray.

``ui/tray.py`` draws a ``FleetTrayState``: a ``TrayState`` per server and what is app-wide; its
icon, tooltip and menu headers are in core/fleet_state.py. A fleet of one server shows exactly
this module's icon and tooltip. Nothing here knows about Qt.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from lmgui.core.format import (
    UNREADABLE,
    human_bytes,
    human_count,
    human_duration,
    status_text,
    status_words,
)
from lmgui.core.gpu import GpuMemory
from lmgui.core.instances import InstanceInfo
from lmgui.core.messages import state_text
from lmgui.core.snapshot import Snapshot
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.vram import estimate_loaded

__all__ = [
    "FleetTrayState",
    "TrayInstance",
    "TrayState",
    "activity_summary",
    "build_tray_state",
    "icon_name",
    "quick_loads",
    "tooltip",
]


@dataclass(frozen=True)
class TrayInstance:
    instance_id: str
    model_key: str
    context_length: int | None
    vram_bytes: int | None
    """Estimated; None when the server sent a size or context lmgui could not read."""
    ttl_left: float | None = None
    """Idle time left: the server's own countdown where it reports one, else lmgui's."""
    status: str | None = None
    """The server's processing state ("generating", "processingPrompt"...), where reported."""
    queued: int | None = None
    busy: bool = False
    """Answering right now (or requests wait for it): the app asks before unloading it."""
    pinned: bool = False
    """Kept when the GPU is freed or room is made."""

    @property
    def activity(self) -> str | None:
        """What it is doing, for its menu line, only while busy: "generating (+1 queued)"."""
        return status_text(self.status, self.queued) if self.busy else None

    @property
    def label(self) -> str:
        """Its menu line: "qwen-1  (8k ctx, 3.3 GB) unloads in 4:40", or "... ● generating,
        TTL 5:00 once idle" while busy. The dot makes an instance that is answering stand out
        in a list of idle ones."""
        vram = UNREADABLE if self.vram_bytes is None else human_bytes(self.vram_bytes)
        text = f"{self.instance_id}  ({human_count(self.context_length)} ctx, {vram})"
        if self.activity is not None:
            text += f" ● {self.activity}"
            if self.ttl_left is not None:  # busy: the idle clock has not started
                text += f", TTL {human_duration(self.ttl_left)} once idle"
        elif self.ttl_left is not None:
            text += f", unloads in {human_duration(self.ttl_left)}"
        return text


@dataclass(frozen=True)
class TrayState:
    """One server as the tray shows it. ``paused``, ``notifications_paused`` and
    ``window_visible`` are app-wide: in a fleet the ``FleetTrayState``'s win (a state drawn on
    its own, as a fleet of one, keeps them)."""

    server: str
    """What the one-server tooltip names it by ("lmgui: http://127.0.0.1:1234")."""
    connection: ConnectionState
    instances: list[TrayInstance] = field(default_factory=list)
    loading: bool = False
    last_refresh: float | None = None
    gpus: list[GpuMemory] | None = None
    paused: bool = False
    notifications_paused: bool = False
    window_visible: bool = True
    quick_loads: list[tuple[str, str]] = field(default_factory=list)
    """(model key, label) for the Load submenu: favourites, then recent models."""
    status: PollStatus | None = None
    """The poller's status, for the wording of the state ("Unreachable since 14:05")."""
    restorable: int | None = None
    """How many instances "Restore" would load back (the GPU was freed), else None."""
    snapshots_busy: bool = False
    """Freeing the GPU or restoring is under way."""
    make_way: str | None = None
    """What making way for another GPU program is doing, as a sentence (None: nothing)."""
    make_way_restore: bool = False
    """The tray offers "Restore (before making way)"."""
    url: str = ""
    """The server's normalized URL, which the tray's intents carry ("": ``server`` is it)."""
    name: str = ""
    """The server's label in a fleet: its profile's name ("": ``server``)."""

    @property
    def server_url(self) -> str:
        """The URL the tray's intents about this server carry."""
        return self.url or self.server

    @property
    def label(self) -> str:
        """Its name in the fleet's menu and tooltip: "gpu-box"."""
        return self.name or self.server

    @property
    def vram_bytes(self) -> int:
        return sum(i.vram_bytes or 0 for i in self.instances)

    @property
    def vram_text(self) -> str:
        """ "3.6 GB", or "at least 3.6 GB" when an instance cannot be estimated."""
        text = human_bytes(self.vram_bytes)
        if any(i.vram_bytes is None for i in self.instances):
            return f"at least {text}" if self.vram_bytes else UNREADABLE
        return text


@dataclass(frozen=True)
class FleetTrayState:
    """What the fleet's one tray icon shows: a ``TrayState`` per enabled server in profile
    order (each with ``url`` and ``name``), and the app-wide switches, which win over the
    servers' own copies of them. Its icon, tooltip and menu headers: core/fleet_state.py."""

    servers: list[TrayState] = field(default_factory=list)
    paused: bool = False
    notifications_paused: bool = False
    window_visible: bool = True
    loading: bool = False
    """A load is under way somewhere (a server's own ``loading`` says where, when known)."""

    @classmethod
    def of(cls, state: TrayState) -> FleetTrayState:
        """A fleet of one server, its app-wide switches taken from ``state``."""
        return cls(
            [state],
            paused=state.paused,
            notifications_paused=state.notifications_paused,
            window_visible=state.window_visible,
            loading=state.loading,
        )

    def alone(self) -> TrayState | None:
        """The one server of a fleet of one, with the app-wide switches: what the one-server
        tooltip and menu show. None for any other fleet."""
        if len(self.servers) != 1:
            return None
        one = self.servers[0]
        return replace(
            one,
            paused=self.paused,
            notifications_paused=self.notifications_paused,
            window_visible=self.window_visible,
            loading=self.loading or one.loading,
        )


def quick_loads(
    names: Mapping[str, str], favourites: Iterable[str], recent: Iterable[str]
) -> list[tuple[str, str]]:
    """The Load submenu: favourites (starred), then recently loaded models, each once."""
    favs = list(favourites)
    keys = [k for k in favs if k in names]
    keys += [k for k in recent if k in names and k not in keys]
    return [(k, ("★ " if k in favs else "") + names[k]) for k in keys]


def build_tray_state(
    *,
    server: str,
    snapshot: Snapshot,
    status: PollStatus,
    infos: Mapping[str, InstanceInfo],
    favourites: Iterable[str] = (),
    recent: Iterable[str] = (),
    loading: bool = False,
    gpus: list[GpuMemory] | None = None,
    paused: bool = False,
    notifications_paused: bool = False,
    window_visible: bool = True,
    pinned: Iterable[str] = (),
    restorable: int | None = None,
    snapshots_busy: bool = False,
    make_way: str | None = None,
    make_way_restore: bool = False,
    url: str = "",
    name: str = "",
    now: float | None = None,
) -> TrayState:
    """``url``: the server's normalized URL for the tray's intents ("": ``server``); ``name``:
    its profile's name, its label in a fleet."""
    now = time.time() if now is None else now
    pins = set(pinned)
    instances = []
    for model, inst in snapshot.instances:
        info = infos.get(inst.id)
        # The server's countdown wins: it is the one that unloads. lmgui's is a fallback.
        ttl_left = inst.ttl_left(now) if inst.ttl_seconds is not None else None
        if ttl_left is None and info is not None and info.idle_deadline:
            ttl_left = max(0.0, info.idle_deadline - now)
        # The offload the server reports (whoever loaded it), else the one lmgui loaded it with.
        gpu = inst.gpu_offload
        if gpu is None and info is not None:
            gpu = info.gpu_fraction
        if gpu is not None and not 0.0 <= gpu <= 1.0:  # unreadable: estimated as full offload
            gpu = None
        instances.append(
            TrayInstance(
                inst.id,
                model.key,
                inst.context_length,
                estimate_loaded(model, inst, gpu),
                ttl_left,
                status=inst.status,
                queued=inst.queued,
                busy=inst.busy,
                pinned=inst.id in pins,
            )
        )
    favourites, recent = list(favourites), list(recent)
    by_key = snapshot.by_key
    names = {k: by_key[k].display_name for k in {*favourites, *recent} if k in by_key}
    return TrayState(
        server=server,
        connection=status.state,
        instances=instances,
        loading=loading,
        last_refresh=status.last_success,
        gpus=gpus,
        paused=paused,
        notifications_paused=notifications_paused,
        window_visible=window_visible,
        quick_loads=quick_loads(names, favourites, recent),
        status=status,
        restorable=restorable,
        snapshots_busy=snapshots_busy,
        make_way=make_way,
        make_way_restore=make_way_restore,
        url=url or server,
        name=name,
    )


def activity_summary(instances: Iterable[TrayInstance]) -> str:
    """How many instances are answering, by what they do: "2 generating, 1 reading prompt";
    "" when none is."""
    counts: dict[str, int] = {}
    for inst in instances:
        if inst.busy:
            words = status_words(inst.status) or "busy"
            if words == "idle":  # idle with requests waiting: they are about to run
                words = "busy"
            counts[words] = counts.get(words, 0) + 1
    order = ("generating", "reading prompt", "embedding")
    ranked = sorted(counts, key=lambda w: (order.index(w) if w in order else len(order), w))
    return ", ".join(f"{counts[w]} {w}" for w in ranked)


def icon_name(state: TrayState) -> str:
    """Which state icon: offline, a load in progress, instances loaded, or nothing loaded."""
    if not state.connection.online:
        return "state-offline"
    if state.loading:
        return "state-loading"
    return "state-loaded" if state.instances else "state-idle"


def tooltip(state: TrayState) -> str:
    lines = [f"lmgui: {state.server}"]
    if not state.connection.online:
        lines.append(state_text(state.status or state.connection))
    else:
        if state.connection is ConnectionState.SLOW:
            lines.append("Slow: the server is taking long to answer")
        n = len(state.instances)
        busy = activity_summary(state.instances)
        lines.append(
            f"{n} instance{'s' if n != 1 else ''} loaded"
            + (f", {busy}" if busy else "")
            + (", loading…" if state.loading else "")
        )
        lines.append(f"VRAM in use: about {state.vram_text} (estimated)")
        for g in state.gpus or ():
            lines.append(
                f"{g.name}: {human_bytes(g.used_bytes)} of {human_bytes(g.total_bytes)} (measured)"
            )
    if state.last_refresh is not None:
        lines.append(
            "Refreshed at " + time.strftime("%H:%M:%S", time.localtime(state.last_refresh))
        )
    if state.restorable:
        lines.append(f"GPU freed: Restore brings back {state.restorable} instance(s)")
    if state.make_way:
        lines.append(state.make_way)
    if state.paused:
        lines.append("Polling paused")
    return "\n".join(lines)
