"""The fleet as the tray shows it (Qt-free): the worst server's state wins the one icon, and the
tooltip has a block per server and the fleet's totals."""

from __future__ import annotations

import time

import pytest

from lmgui.core.fleet_state import (
    TOOLTIP_MAX_LINES,
    WORST_FIRST,
    FleetTrayState,
    ServerView,
    fleet_icon_name,
    fleet_summary,
    fleet_tooltip,
    summarize,
    worst_state,
)
from lmgui.core.gpu import GpuMemory
from lmgui.core.snapshot import Snapshot
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.tray_state import TrayInstance, TrayState

S = ConnectionState


def test_every_state_has_a_rank() -> None:
    assert sorted(WORST_FIRST, key=lambda s: s.value) == sorted(S, key=lambda s: s.value)
    assert len(set(WORST_FIRST)) == len(S)


def test_the_worst_state_wins_in_the_documented_order() -> None:
    order = [
        S.UNREACHABLE,
        S.FAILING,
        S.UNSUPPORTED,
        S.TOKEN_REJECTED,
        S.TOKEN_NEEDED,
        S.SLOW,
        S.CONNECTING,
        S.CONNECTED,
    ]
    assert list(WORST_FIRST) == order
    for i, worse in enumerate(order):
        for better in order[i:]:
            assert worst_state([better, worse, better]) is worse
            assert worst_state([worse, better]) is worse


@pytest.mark.parametrize("offline", [s for s in S if not s.online and s is not S.CONNECTING])
def test_one_offline_server_makes_the_fleet_offline(offline: ConnectionState) -> None:
    assert worst_state([S.CONNECTED, offline, S.SLOW, S.CONNECTING]) is offline
    assert not worst_state([S.CONNECTED, offline, S.SLOW, S.CONNECTING]).online


def test_a_server_still_connecting_hides_behind_a_slow_one_only() -> None:
    # Connecting is the moment before a first poll; slow is a server that answers late now.
    assert worst_state([S.CONNECTING, S.SLOW]) is S.SLOW
    assert worst_state([S.CONNECTED, S.CONNECTING]) is S.CONNECTING


def test_an_empty_fleet_is_connecting() -> None:
    assert worst_state([]) is S.CONNECTING
    summary = fleet_summary([])
    assert summary.state is S.CONNECTING
    assert summary.lines == ["No servers enabled"]


def test_the_tooltip_names_each_server_and_its_state() -> None:
    since = time.mktime((2026, 12, 1, 14, 5, 0, 0, 0, -1))
    summary = fleet_summary(
        [
            ServerView("desk", PollStatus(S.CONNECTED), Snapshot()),
            ServerView("gpu-box", PollStatus(S.UNREACHABLE, "refused", since), Snapshot()),
            ServerView("lab", PollStatus(S.TOKEN_NEEDED), Snapshot()),
            ServerView("laptop", PollStatus(S.SLOW), Snapshot()),
        ]
    )
    assert summary.state is S.UNREACHABLE
    assert summary.offline == 2
    assert summary.lines == [
        "4 servers (2 offline): no instances",
        "desk: Connected, no instances",
        "gpu-box: Unreachable since 14:05",
        "lab: Token needed",
        "laptop: Slow to answer, no instances",
    ]


# ----------------------------------------------------------------------------- the tray's fleet

SINCE = time.mktime((2026, 12, 1, 14, 5, 0, 0, 0, -1))


def server(
    name: str,
    state: ConnectionState = S.CONNECTED,
    *instances: TrayInstance,
    **kw: object,
) -> TrayState:
    since = SINCE if state is S.UNREACHABLE else 0.0
    return TrayState(
        server=f"http://{name}:1234",
        connection=state,
        instances=list(instances),
        status=PollStatus(state, since=since),
        url=f"http://{name}:1234",
        name=name,
        **kw,  # type: ignore[arg-type]
    )


def inst(instance_id: str, gb: float = 3.0, **kw: object) -> TrayInstance:
    return TrayInstance(instance_id, instance_id, 8192, int(gb * 1e9), **kw)  # type: ignore[arg-type]


def test_one_server_offline_among_healthy_ones_makes_the_icon_offline() -> None:
    healthy = [server("desk", S.CONNECTED, inst("a")), server("lab", S.SLOW, inst("b"))]
    for offline in (S.UNREACHABLE, S.TOKEN_NEEDED, S.FAILING):
        fleet = FleetTrayState([*healthy, server("laptop", offline)])
        assert summarize(fleet).state is offline
        assert fleet_icon_name(fleet) == "state-offline"
    # A server before its first poll too, unless one is slow now (the documented order).
    connecting = server("new", S.CONNECTING)
    assert fleet_icon_name(FleetTrayState([healthy[0], connecting])) == "state-offline"
    assert fleet_icon_name(FleetTrayState([*healthy, connecting])) == "state-loaded"
    # Even a load under way does not hide it.
    loading = FleetTrayState([*healthy, server("laptop", S.UNREACHABLE)], loading=True)
    assert fleet_icon_name(loading) == "state-offline"


def test_a_healthy_fleet_is_loading_then_loaded_then_idle() -> None:
    a = server("desk", S.CONNECTED, inst("a"))
    b = server("lab", S.SLOW)
    assert fleet_icon_name(FleetTrayState([a, b])) == "state-loaded"
    assert fleet_icon_name(FleetTrayState([server("desk"), b])) == "state-idle"
    assert fleet_icon_name(FleetTrayState([a, b], loading=True)) == "state-loading"
    lab_loading = server("lab", S.CONNECTED, loading=True)
    assert fleet_icon_name(FleetTrayState([a, lab_loading])) == "state-loading"
    assert fleet_icon_name(FleetTrayState([])) == "state-offline"  # nothing known yet


def test_the_fleet_tooltip_has_a_block_per_server() -> None:
    gpus = [GpuMemory("RTX 4090", 12_000_000_000, 24_000_000_000)]
    fleet = FleetTrayState(
        [
            server(
                "gpu-box",
                S.CONNECTED,
                inst("qwen-1", 4.1, status="generating", busy=True),
                inst("gemma", 3.0),
                gpus=gpus,
                last_refresh=SINCE + 60,
            ),
            server("laptop", S.UNREACHABLE, inst("stale"), gpus=gpus),
            server("desk", S.CONNECTED, restorable=2, last_refresh=SINCE),
        ],
        paused=True,
    )
    assert fleet_tooltip(fleet).splitlines() == [
        "lmgui — 3 servers (1 offline): 2 instances, about 7.1 GB VRAM (estimated)",
        "gpu-box: Connected, 2 instances (1 generating), about 7.1 GB VRAM",
        "  RTX 4090: 12.0 GB of 24.0 GB (measured)",
        "laptop: Unreachable since 14:05",  # its last list, and its GPUs, may be stale
        "desk: Connected, no instances",
        "  GPU freed: Restore brings back 2 instance(s)",
        "Refreshed at 14:06:00",  # the latest poll
        "Polling paused",
    ]


def test_a_long_fleet_tooltip_is_cut_with_a_count_of_the_rest() -> None:
    gpus = [GpuMemory("RTX 4090", 12_000_000_000, 24_000_000_000)]
    names = [f"box-{n}" for n in range(20)]
    fleet = FleetTrayState(
        [server(n, S.CONNECTED, inst("a"), gpus=gpus) for n in names], paused=True
    )
    # The totals first; whole blocks while they fit, then a server's line without its GPUs,
    # then how many more; what is app-wide last.
    assert fleet_tooltip(fleet).splitlines() == [
        "lmgui — 20 servers: 20 instances, about 60.0 GB VRAM (estimated)",
        "box-0: Connected, 1 instance, about 3.0 GB VRAM",
        "  RTX 4090: 12.0 GB of 24.0 GB (measured)",
        "box-1: Connected, 1 instance, about 3.0 GB VRAM",
        "  RTX 4090: 12.0 GB of 24.0 GB (measured)",
        "box-2: Connected, 1 instance, about 3.0 GB VRAM",
        "  RTX 4090: 12.0 GB of 24.0 GB (measured)",
        "box-3: Connected, 1 instance, about 3.0 GB VRAM",
        "  RTX 4090: 12.0 GB of 24.0 GB (measured)",
        "box-4: Connected, 1 instance, about 3.0 GB VRAM",
        "and 15 more servers",
        "Polling paused",
    ]
    assert len(fleet_tooltip(fleet).splitlines()) == TOOLTIP_MAX_LINES
    # A fleet that fits is not cut.
    three = FleetTrayState([server(n, S.CONNECTED) for n in names[:3]])
    assert fleet_tooltip(three).splitlines()[-1] == "box-2: Connected, no instances"


def test_an_empty_fleet_tooltip_says_so() -> None:
    assert fleet_tooltip(FleetTrayState([])) == "lmgui — No servers enabled"
