"""The fleet as the tray shows it, Qt-free: the one state its icon takes (the worst server's) and
a line per server for its tooltip, with the fleet's totals.

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lmgui.core.format import UNREADABLE, human_bytes
from lmgui.core.instances import InstanceInfo
from lmgui.core.messages import state_text
from lmgui.core.snapshot import Snapshot
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.tray_state import TrayInstance, build_tray_state

__all__ = [
    "WORST_FIRST",
    "FleetSummary",
    "ServerSummary",
    "ServerView",
    "fleet_summary",
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


@dataclass(frozen=True)
class ServerSummary:
    name: str
    status: PollStatus
    instances: list[TrayInstance]
    """Its loaded instances with the tray's VRAM estimate; empty while it is offline (the last
    list it sent may no longer be true)."""

    @property
    def online(self) -> bool:
        return self.status.state.online

    @property
    def vram_bytes(self) -> int:
        return sum(i.vram_bytes or 0 for i in self.instances)

    @property
    def line(self) -> str:
        """ "gpu-box: Connected, 2 instances, about 7.1 GB VRAM"; "laptop: Unreachable since
        14:05" while offline."""
        text = f"{self.name}: {state_text(self.status)}"
        if not self.online:
            return text
        text += ", " + _instances_text(len(self.instances))
        if self.instances:
            text += f", about {_vram_text(self.instances)} VRAM"
        return text


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
        return sum(not s.online for s in self.servers)

    @property
    def totals_line(self) -> str:
        """ "3 servers (1 offline): 4 instances, about 12.3 GB VRAM (estimated)"."""
        n = len(self.servers)
        if n == 0:
            return "No servers enabled"
        text = f"{n} server{'s' if n != 1 else ''}"
        if self.offline:
            text += f" ({self.offline} offline)"
        text += ": " + _instances_text(self.instances)
        everything = [i for s in self.servers for i in s.instances]
        if everything:
            text += f", about {_vram_text(everything)} VRAM (estimated)"
        return text

    @property
    def lines(self) -> list[str]:
        """The tooltip's lines: the totals, then one line per server in profile order."""
        return [self.totals_line, *(s.line for s in self.servers)]


def fleet_summary(servers: Iterable[ServerView], *, now: float | None = None) -> FleetSummary:
    """Per server a line for the tooltip, and the fleet's totals, in the order given."""
    out = []
    for view in servers:
        instances: list[TrayInstance] = []
        if view.status.state.online:
            # The tray's own per-instance estimate (the server's offload, else lmgui's).
            instances = build_tray_state(
                server=view.name,
                snapshot=view.snapshot,
                status=view.status,
                infos=view.infos,
                now=now,
            ).instances
        out.append(ServerSummary(view.name, view.status, instances))
    return FleetSummary(out, worst_state(s.status.state for s in out))
