"""The fleet as the tray shows it, Qt-free: the one state its icon takes (the worst server's), a
block per server for its tooltip and a header per server for its menu, with the fleet's totals.

``ui/tray.py`` draws a ``FleetTrayState`` (a record in core/tray_state.py, re-exported here):
each enabled server's ``TrayState`` in profile order and what is app-wide; this module says what
its icon, tooltip and menu headers are. A fleet of one server shows exactly the one-server icon,
tooltip and menu.

The order of the states, worst first (``WORST_FIRST``), and why:

1. UNREACHABLE: nothing answers at all (down, wrong address, a network gone);
2. FAILING: something answers, with errors;
3. UNSUPPORTED: something answers that is not an LM Studio 0.4 server (a wrong port);
4. TOKEN_REJECTED: the stored token is wrong;
5. TOKEN_NEEDED: the server wants a token and has none (the user has a step to take);
6. SLOW: online, but the poll in flight is taking long;
7. CONNECTING: nothing known yet (the first poll has not ended);
8. CONNECTED.

Everything above SLOW is offline, so one server offline makes the icon offline: a dead box on
the LAN is never hidden behind a healthy workstation. CONNECTING (not online either) ranks below
SLOW: it is the moment before a server's first poll, while SLOW is a server answering late now.
An empty fleet is CONNECTING (nothing is known, as before a first poll).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lmgui.core.format import UNREADABLE, human_bytes
from lmgui.core.instances import InstanceInfo
from lmgui.core.messages import state_text
from lmgui.core.snapshot import Snapshot
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.tray_state import (
    FleetTrayState,
    TrayInstance,
    TrayState,
    activity_summary,
    build_tray_state,
    icon_name,
    tooltip,
)

__all__ = [
    "TOOLTIP_MAX_LINES",
    "WORST_FIRST",
    "FleetSummary",
    "FleetTrayState",
    "ServerSummary",
    "ServerView",
    "fleet_icon_name",
    "fleet_summary",
    "fleet_tooltip",
    "server_summary",
    "summarize",
    "worst_state",
]

WORST_FIRST: tuple[ConnectionState, ...] = (
    ConnectionState.UNREACHABLE,
    ConnectionState.FAILING,
    ConnectionState.UNSUPPORTED,
    ConnectionState.TOKEN_REJECTED,
    ConnectionState.TOKEN_NEEDED,
    ConnectionState.SLOW,
    ConnectionState.CONNECTING,
    ConnectionState.CONNECTED,
)
_RANK = {state: rank for rank, state in enumerate(WORST_FIRST)}

TOOLTIP_MAX_LINES = 12
"""A fleet's tooltip stops here ("and 2 more servers"): tray hosts show a tooltip whole or cut it
without a word (Windows keeps 127 characters), so what matters most comes first: the totals,
then the servers in profile order, each server's details (its GPUs) dropped before the server."""


def worst_state(states: Iterable[ConnectionState]) -> ConnectionState:
    """The state the fleet's one icon shows: the worst of its servers' (module docstring)."""
    return min(states, key=_RANK.__getitem__, default=ConnectionState.CONNECTING)


@dataclass(frozen=True)
class ServerView:
    """What the summary reads of one server: its profile name, its poller's status and last
    snapshot, and its ledger's instance infos (the GPU offload lmgui loaded it with)."""

    name: str
    status: PollStatus
    snapshot: Snapshot
    infos: Mapping[str, InstanceInfo] = field(default_factory=dict)


def _vram_text(instances: list[TrayInstance]) -> str:
    """ "3.6 GB", or "at least 3.6 GB" when an instance cannot be estimated (the tray's rule)."""
    total = sum(i.vram_bytes or 0 for i in instances)
    text = human_bytes(total)
    if any(i.vram_bytes is None for i in instances):
        return f"at least {text}" if total else UNREADABLE
    return text


def _instances_text(n: int) -> str:
    return "no instances" if n == 0 else f"{n} instance{'s' if n != 1 else ''}"


def _servers_text(n: int, offline: int, connecting: int = 0) -> str:
    text = f"{n} server{'s' if n != 1 else ''}"
    notes = [f"{offline} offline"] if offline else []
    if connecting:
        notes.append(f"{connecting} connecting")
    return text + (f" ({', '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class ServerSummary:
    name: str
    status: PollStatus
    instances: list[TrayInstance]
    """Its loaded instances with the tray's VRAM estimate; empty while it is offline (the last
    list it sent may no longer be true)."""
    loading: bool = False
    """A load on it is under way."""

    @property
    def online(self) -> bool:
        return self.status.state.online

    @property
    def vram_bytes(self) -> int:
        return sum(i.vram_bytes or 0 for i in self.instances)

    @property
    def line(self) -> str:
        """Its tooltip line: "gpu-box: Connected, 2 instances (1 generating), about 7.1 GB
        VRAM"; "laptop: Unreachable since 14:05" while offline."""
        text = f"{self.name}: {state_text(self.status)}"
        if not self.online:
            return text
        text += ", " + _instances_text(len(self.instances))
        busy = activity_summary(self.instances)
        if busy:
            text += f" ({busy})"
        if self.instances:
            text += f", about {_vram_text(self.instances)} VRAM"
        if self.loading:
            text += ", loading…"
        return text

    @property
    def header(self) -> str:
        """Its header in the fleet's menu: "gpu-box — Connected · 2 loaded · 7.1 GB · 1
        generating"; "laptop — Unreachable since 14:05" while offline."""
        text = f"{self.name} — {state_text(self.status)}"
        if not self.online:
            return text
        if not self.instances:
            return text + " · nothing loaded"
        text += f" · {len(self.instances)} loaded · {_vram_text(self.instances)}"
        busy = activity_summary(self.instances)
        return text + (f" · {busy}" if busy else "")


@dataclass(frozen=True)
class FleetSummary:
    servers: list[ServerSummary]
    state: ConnectionState
    """The worst server's state (``worst_state``): the icon's."""

    @property
    def instances(self) -> int:
        """Loaded instances on the servers online now."""
        return sum(len(s.instances) for s in self.servers)

    @property
    def vram_bytes(self) -> int:
        """Estimated VRAM in use on the servers online now."""
        return sum(s.vram_bytes for s in self.servers)

    @property
    def offline(self) -> int:
        """Servers away (unreachable, failing, refusing the token...), not those still
        connecting for the first time."""
        return sum(
            not s.online and s.status.state is not ConnectionState.CONNECTING for s in self.servers
        )

    @property
    def connecting(self) -> int:
        return sum(s.status.state is ConnectionState.CONNECTING for s in self.servers)

    def _everything(self) -> list[TrayInstance]:
        return [i for s in self.servers for i in s.instances]

    @property
    def totals_line(self) -> str:
        """ "3 servers (1 offline): 4 instances, about 12.3 GB VRAM (estimated)"."""
        if not self.servers:
            return "No servers enabled"
        text = _servers_text(len(self.servers), self.offline, self.connecting)
        text += ": " + _instances_text(self.instances)
        everything = self._everything()
        if everything:
            text += f", about {_vram_text(everything)} VRAM (estimated)"
        return text

    @property
    def header(self) -> str:
        """The menu's first line: "3 servers (1 offline) · 4 loaded · about 12.3 GB VRAM"."""
        if not self.servers:
            return "No servers enabled"
        text = _servers_text(len(self.servers), self.offline, self.connecting)
        everything = self._everything()
        if not everything:
            return text + " · nothing loaded"
        text += f" · {len(everything)} loaded · about {_vram_text(everything)} VRAM"
        busy = activity_summary(everything)
        return text + (f" · {busy}" if busy else "")

    @property
    def lines(self) -> list[str]:
        """The totals, then one line per server in profile order."""
        return [self.totals_line, *(s.line for s in self.servers)]


def server_summary(state: TrayState) -> ServerSummary:
    """One server's tray state as the fleet's tooltip and menu headers count it."""
    status = state.status if state.status is not None else PollStatus(state.connection)
    instances = state.instances if status.state.online else []
    return ServerSummary(state.label, status, instances, loading=state.loading)


def summarize(fleet: FleetTrayState) -> FleetSummary:
    """The fleet's tray state counted: a summary per server, the totals, the worst state."""
    servers = [server_summary(s) for s in fleet.servers]
    return FleetSummary(servers, worst_state(s.status.state for s in servers))


def fleet_icon_name(fleet: FleetTrayState) -> str:
    """The icon: offline when any server is (the worst state wins), else loading when a load is
    under way anywhere, loaded when any server has an instance, else idle."""
    one = fleet.alone()
    if one is not None:
        return icon_name(one)
    if not worst_state(s.connection for s in fleet.servers).online:
        return "state-offline"
    if fleet.loading or any(s.loading for s in fleet.servers):
        return "state-loading"
    return "state-loaded" if any(s.instances for s in fleet.servers) else "state-idle"


def _details(state: TrayState) -> list[str]:
    """A server's tooltip lines under its own: its measured GPUs and what waits to be restored."""
    if not state.connection.online:
        return []
    lines = [
        f"  {g.name}: {human_bytes(g.used_bytes)} of {human_bytes(g.total_bytes)} (measured)"
        for g in state.gpus or ()
    ]
    if state.restorable:
        lines.append(f"  GPU freed: Restore brings back {state.restorable} instance(s)")
    if state.make_way:
        lines.append(f"  {state.make_way}")
    return lines


def fleet_tooltip(fleet: FleetTrayState, *, max_lines: int = TOOLTIP_MAX_LINES) -> str:
    """One server: exactly its own tooltip. Several: the totals, then a block per server (its
    line, its measured GPUs), then when it was refreshed, within ``max_lines``."""
    one = fleet.alone()
    if one is not None:
        return tooltip(one)
    summary = summarize(fleet)
    head = f"lmgui — {summary.totals_line}"
    if fleet.loading and not any(s.loading for s in fleet.servers):
        head += ", loading…"
    tail = []
    refreshed = [s.last_refresh for s in fleet.servers if s.last_refresh is not None]
    if refreshed:
        tail.append("Refreshed at " + time.strftime("%H:%M:%S", time.localtime(max(refreshed))))
    if fleet.paused:
        tail.append("Polling paused")
    budget = max_lines - 1 - len(tail)
    body: list[str] = []
    blocks = [(s.line, _details(t)) for s, t in zip(summary.servers, fleet.servers, strict=True)]
    for i, (line, details) in enumerate(blocks):
        left = len(blocks) - i
        room = budget - len(body) - (1 if left > 1 else 0)  # keep one for "and N more"
        if 1 + len(details) <= room:
            body += [line, *details]
        elif room >= 1:
            body.append(line)
        else:
            body.append(f"and {left} more server{'s' if left != 1 else ''}")
            break
    return "\n".join([head, *body, *tail])


def fleet_summary(servers: Iterable[ServerView], *, now: float | None = None) -> FleetSummary:
    """Per server a line for the tooltip, and the fleet's totals, in the order given."""
    states = [
        # The tray's own per-instance estimate (the server's offload, else lmgui's).
        build_tray_state(
            server=view.name,
            name=view.name,
            snapshot=view.snapshot,
            status=view.status,
            infos=view.infos,
            now=now,
        )
        for view in servers
    ]
    return summarize(FleetTrayState(states))
