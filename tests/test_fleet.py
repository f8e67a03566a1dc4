"""The fleet as the tray shows it (Qt-free): the worst server's state wins the one icon, and the
tooltip has a line per server and the fleet's totals."""

from __future__ import annotations

import time

import pytest

from lmgui.core.fleet_state import WORST_FIRST, ServerView, fleet_summary, worst_state
from lmgui.core.snapshot import Snapshot
from lmgui.core.status import ConnectionState, PollStatus

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
