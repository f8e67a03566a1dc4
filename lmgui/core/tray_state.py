"""What the tray shows, as data: built from the snapshot, the ledger and the settings, Qt-free,
so the icon, the tooltip and the menu's content are tested without a tray.

``ui/tray.py`` draws a ``TrayState``; nothing here knows about Qt.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lmgui.core.format import UNREADABLE, human_bytes
from lmgui.core.gpu import GpuMemory
from lmgui.core.instances import InstanceInfo
from lmgui.core.messages import state_text
from lmgui.core.snapshot import Snapshot
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.vram import estimate_loaded

__all__ = ["TrayInstance", "TrayState", "build_tray_state", "icon_name", "quick_loads", "tooltip"]


@dataclass(frozen=True)
class TrayInstance:
    instance_id: str
    model_key: str
    context_length: int | None
    vram_bytes: int | None
    """Estimated; None when the server sent a size or context lmgui could not read."""
    ttl_left: float | None = None


@dataclass(frozen=True)
class TrayState:
    server: str
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
    now: float | None = None,
) -> TrayState:
    now = time.time() if now is None else now
    instances = []
    for model, inst in snapshot.instances:
        info = infos.get(inst.id)
        deadline = info.idle_deadline if info else None
        instances.append(
            TrayInstance(
                inst.id,
                model.key,
                inst.context_length,
                estimate_loaded(model, inst, info.gpu_fraction if info else None),
                max(0.0, deadline - now) if deadline else None,
            )
        )
    names = {m.key: m.display_name for m in snapshot.models}
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
    )


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
        lines.append(
            f"{n} instance{'s' if n != 1 else ''} loaded" + (", loading…" if state.loading else "")
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
    if state.paused:
        lines.append("Polling paused")
    return "\n".join(lines)
