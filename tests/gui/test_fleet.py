"""The fleet polls several servers side by side: each snapshot arrives with its server, a server
that goes down goes unreachable alone and comes back, and switching a profile off closes only
that server's connection. Real simulators on loopback ports, on the qasync loop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lmgui.api import LMStudioClient
from lmgui.core.fleet import Fleet
from lmgui.core.profiles import Profile
from lmgui.core.secrets import TokenStore
from lmgui.core.snapshot import Snapshot
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.sim import SimConfig, Simulator
from tests.conftest import SimFactory
from tests.gui.conftest import wait_for


class Heard:
    """What the fleet said, by server."""

    def __init__(self, fleet: Fleet) -> None:
        self.snapshots: list[tuple[str, Snapshot]] = []
        self.states: list[tuple[str, ConnectionState]] = []
        self.polls: dict[str, int] = {}
        fleet.snapshot_changed.connect(self._on_snapshot_changed)
        fleet.status_changed.connect(self._on_status_changed)
        fleet.poll_finished.connect(self._on_poll_finished)

    def _on_snapshot_changed(self, url: str, diff: Any, snapshot: Snapshot) -> None:
        self.snapshots.append((url, snapshot))

    def _on_status_changed(self, url: str, status: PollStatus) -> None:
        self.states.append((url, status.state))

    def _on_poll_finished(self, url: str) -> None:
        self.polls[url] = self.polls.get(url, 0) + 1

    def last_snapshot(self, url: str) -> Snapshot | None:
        return next((s for u, s in reversed(self.snapshots) if u == url), None)


@contextlib.asynccontextmanager
async def fleet_of(tmp_path: Path, *profiles: Profile) -> AsyncIterator[Fleet]:
    fleet = Fleet(tmp_path, TokenStore(), interval_ms=100)
    fleet.set_profiles(list(profiles))
    for _, conn in fleet.connections():
        conn.poller.max_backoff_ms = 400
    fleet.start()
    try:
        yield fleet
    finally:
        await fleet.aclose()


def polls(fleet: Fleet, url: str) -> int:
    conn = fleet.connection(url)
    assert conn is not None
    return conn.poller.polls


def state(fleet: Fleet, url: str) -> ConnectionState:
    conn = fleet.connection(url)
    assert conn is not None
    return conn.poller.status.state


async def test_each_servers_snapshot_arrives_with_its_url(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    demo, empty = make_sim(), make_sim(catalog=[])
    async with fleet_of(tmp_path, Profile("desk", demo.url), Profile("box", empty.url)) as fleet:
        heard = Heard(fleet)
        await wait_for(lambda: heard.last_snapshot(demo.url) is not None)
        await wait_for(
            lambda: (
                {u for u, s in heard.states if s is ConnectionState.CONNECTED}
                == {demo.url, empty.url}
            )
        )
        got = heard.last_snapshot(demo.url)
        assert got is not None and len(got.models) == 15
        assert heard.last_snapshot(empty.url) is None  # an empty list changes nothing
        assert [p.name for p, _ in fleet.connections()] == ["desk", "box"]
        # Each server was asked by its own connection only.
        assert demo.received("GET", "/api/v1/models") and empty.received("GET", "/api/v1/models")
        assert fleet.summary().lines == [
            "2 servers: no instances",
            "desk: Connected, no instances",
            "box: Connected, no instances",
        ]


async def test_a_server_going_down_alone_goes_unreachable_and_comes_back(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    down, up = make_sim(), make_sim()
    port = down.port
    async with fleet_of(tmp_path, Profile("down", down.url), Profile("up", up.url)) as fleet:
        heard = Heard(fleet)
        await wait_for(lambda: polls(fleet, down.url) >= 1 and polls(fleet, up.url) >= 1)
        down.stop()
        await wait_for(lambda: state(fleet, down.url) is ConnectionState.UNREACHABLE)
        assert (down.url, ConnectionState.UNREACHABLE) in heard.states
        summary = fleet.summary()
        assert summary.state is ConnectionState.UNREACHABLE  # the tray's icon: offline
        assert summary.lines[0] == "2 servers (1 offline): no instances"
        assert summary.lines[1].startswith("down: Unreachable since ")
        # The other one keeps its schedule: it goes on polling while this one backs off.
        before = polls(fleet, up.url)
        await wait_for(lambda: polls(fleet, up.url) >= before + 5)
        assert state(fleet, up.url) is ConnectionState.CONNECTED
        assert (up.url, ConnectionState.UNREACHABLE) not in heard.states

        back = Simulator(SimConfig(port=port, tokens_per_second=0, load_seconds_per_gb=0)).start()
        try:
            await wait_for(lambda: state(fleet, down.url) is ConnectionState.CONNECTED)
            assert heard.states[-1] == (down.url, ConnectionState.CONNECTED)
            assert fleet.summary().state is ConnectionState.CONNECTED
        finally:
            back.stop()


async def test_switching_a_profile_off_closes_only_its_connection(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    kept, off, added = make_sim(), make_sim(), make_sim(catalog=[])
    async with fleet_of(tmp_path, Profile("kept", kept.url), Profile("off", off.url)) as fleet:
        heard = Heard(fleet)
        await wait_for(lambda: polls(fleet, kept.url) >= 1 and polls(fleet, off.url) >= 1)
        kept_conn, off_conn = fleet.connection(kept.url), fleet.connection(off.url)
        assert kept_conn is not None and off_conn is not None
        kept_poller = kept_conn.poller
        heard.snapshots.clear()

        fleet.set_profiles(
            [
                Profile("kept (renamed)", kept.url),
                Profile("off", off.url, enabled=False),
                Profile("added", added.url),
            ]
        )
        await fleet.settle()
        assert fleet.connection(off.url) is None
        assert not off_conn.poller.running and not off_conn.poller.in_flight
        asked_off = len(off.received("GET", "/api/v1/models"))

        # The kept server's connection and poller are the same objects, still polling, and its
        # list was not fetched anew as if it had restarted (no snapshot_changed from it).
        assert fleet.connection(kept.url) is kept_conn and kept_conn.poller is kept_poller
        assert kept_poller.running
        assert [p.name for p, _ in fleet.connections()] == ["kept (renamed)", "added"]
        before = kept_poller.polls
        await wait_for(lambda: kept_poller.polls >= before + 3 and polls(fleet, added.url) >= 1)
        assert [u for u, _ in heard.snapshots] == []
        assert len(off.received("GET", "/api/v1/models")) == asked_off, "nothing more reached it"


async def test_the_summary_counts_each_servers_instances(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    one, two = make_sim(), make_sim()
    async with LMStudioClient(one.url, lms=None) as side:
        await side.load("google/gemma-3-270m")
    async with fleet_of(tmp_path, Profile("one", one.url), Profile("two", two.url)) as fleet:
        heard = Heard(fleet)
        await wait_for(lambda: heard.last_snapshot(one.url) is not None)
        await wait_for(lambda: heard.last_snapshot(two.url) is not None)
        await wait_for(lambda: fleet.summary().state is ConnectionState.CONNECTED)
        summary = fleet.summary()
        assert summary.instances == 1 and summary.vram_bytes > 0
        lines = summary.lines
        assert lines[0].startswith("2 servers: 1 instance, about ")
        assert lines[0].endswith(" VRAM (estimated)")
        assert lines[1].startswith("one: Connected, 1 instance, about ")
        assert lines[2] == "two: Connected, no instances"
