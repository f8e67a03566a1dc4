"""``lmgui --demo --servers N``: a fleet of simulators, each a different machine, seen through
lmgui's real client over real sockets."""

from __future__ import annotations

import argparse
import io
import socket
from collections.abc import Iterator

import pytest

from lmgui import cli
from lmgui.api import LMStudioClient, ServerUnreachable
from lmgui.sim import Simulator
from lmgui.sim.catalog import DEMO_CATALOG, GB
from lmgui.sim.demo import (
    DEMO_FLEET,
    DEMO_PRELOAD,
    MAX_DEMO_SERVERS,
    DemoServer,
    demo_machines,
    set_demo_fleet_traffic,
    start_demo_fleet,
    stop_demo_fleet,
)
from tests.conftest import fast_config, wait_until


@pytest.fixture
def fleet() -> Iterator[list[DemoServer]]:
    servers = start_demo_fleet(3, traffic_per_minute=0, config=fast_config())
    yield servers
    stop_demo_fleet(servers)


def refuses_connections(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def catalog_types(keys: set[str]) -> list[str]:
    return [e["type"] for e in DEMO_CATALOG if e["key"] in keys]


# ----------------------------------------------------------------------------- three machines


async def test_three_servers_answer_on_their_own_ports_each_its_own_machine(
    fleet: list[DemoServer],
) -> None:
    assert [s.name for s in fleet] == ["Workstation", "GPU box", "Laptop"]
    assert len({s.port for s in fleet}) == 3
    assert all(s.url == f"http://127.0.0.1:{s.port}" for s in fleet)

    seen: list[tuple[frozenset[str], int, dict[str, str]]] = []
    for server, machine in zip(fleet, DEMO_FLEET, strict=True):
        async with LMStudioClient(server.url, lms=None) as c:
            models = await c.list_models()
            hardware = await c.server_hardware()
        keys = frozenset(m.key for m in models)
        assert keys == machine.models
        types = [m.type for m in models]
        assert types.count("llm") >= 4 and types.count("embedding") >= 1
        assert hardware is not None
        loaded = {i.id: m.key for m in models for i in m.instances}
        seen.append((keys, hardware.vram_bytes, loaded))

    catalogs, vram, instances = zip(*seen, strict=True)
    assert len(set(catalogs)) == 3  # every server lists a different set
    assert list(vram) == [24 * GB, 48 * GB, 8 * GB]  # as the hardware survey reports it
    assert instances[0] == {
        "qwen/qwen3.5-9b": "qwen/qwen3.5-9b",
        "google/gemma-3-270m": "google/gemma-3-270m",
        "text-embedding-nomic-embed-text-v1.5": "text-embedding-nomic-embed-text-v1.5",
    }
    assert set(instances[1]) == {
        "openai/gpt-oss-20b",
        "google/gemma-4-26b-a4b",
        "qwen/qwen3-embedding-0.6b",
    }
    assert set(instances[2]) == {
        "ibm/granite-4-micro",
        "liquid/lfm2-1.2b",
        "text-embedding-nomic-embed-text-v1.5",
    }
    for server in fleet:  # the preloaded instances fit, with room left for another app's load
        assert server.sim.state.vram_used() < server.vram_gb * GB


async def test_a_load_on_one_server_leaves_the_others_alone(fleet: list[DemoServer]) -> None:
    workstation, gpu_box, laptop = fleet
    async with LMStudioClient(laptop.url, lms=None) as c:
        result = await c.load("qwen/qwen3-4b", context_length=4096)
    assert result.instance_id == "qwen/qwen3-4b"
    assert "qwen/qwen3-4b" in {i.id for i in laptop.sim.state.loaded()}
    for other in (workstation, gpu_box):
        assert "qwen/qwen3-4b" not in {i.id for i in other.sim.state.loaded()}


async def test_stopping_the_fleet_closes_every_port() -> None:
    servers = start_demo_fleet(3, traffic_per_minute=0, config=fast_config())
    ports = [s.port for s in servers]
    assert not any(refuses_connections(p) for p in ports)
    stop_demo_fleet(servers)
    assert all(refuses_connections(p) for p in ports)
    for server in servers:
        async with LMStudioClient(server.url, lms=None) as c:
            with pytest.raises(ServerUnreachable):
                await c.list_models()


def test_one_server_is_the_single_demo_simulator() -> None:
    [demo] = start_demo_fleet(1, traffic_per_minute=0)
    try:
        assert demo.name == "Demo" and demo.vram_gb == 24.0
        assert demo.sim.traffic is None
        keys = [m["key"] for m in demo.sim.state.list_models()]
        assert keys == [e["key"] for e in DEMO_CATALOG]
        loaded = sorted(i.model_key for i in demo.sim.state.loaded())
        assert loaded == sorted(key for key, _ in DEMO_PRELOAD)
    finally:
        stop_demo_fleet([demo])
    assert refuses_connections(demo.port)


def test_when_the_second_server_cannot_start_the_first_is_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound: list[Simulator] = []
    real_bind = Simulator.bind

    def bind(self: Simulator) -> socket.socket:
        if bound:
            raise OSError(98, "Address already in use")
        sock = real_bind(self)
        bound.append(self)
        return sock

    monkeypatch.setattr(Simulator, "bind", bind)
    with pytest.raises(OSError, match="Address already in use"):
        start_demo_fleet(3, traffic_per_minute=0, config=fast_config())
    [first] = bound
    assert refuses_connections(first.port)
    assert first.traffic is None


def test_more_servers_are_labs_each_with_a_catalog_of_its_own() -> None:
    machines = demo_machines(MAX_DEMO_SERVERS)
    assert [m.name for m in machines] == [
        "Workstation",
        "GPU box",
        "Laptop",
        *(f"Lab {n}" for n in range(4, MAX_DEMO_SERVERS + 1)),
    ]
    assert len({m.models for m in machines}) == MAX_DEMO_SERVERS
    for m in machines:
        types = catalog_types(set(m.models))
        assert types.count("llm") >= 4 and types.count("embedding") >= 1, m.name
        assert len(m.preload) >= 3 and {key for key, _ in m.preload} <= m.models, m.name
    assert demo_machines(5) == machines[:5]  # the same fleet every run
    with pytest.raises(ValueError, match="1 to 8 servers"):
        start_demo_fleet(MAX_DEMO_SERVERS + 1)


def test_a_full_fleet_starts_with_every_preloaded_instance() -> None:
    servers = start_demo_fleet(MAX_DEMO_SERVERS, traffic_per_minute=0, config=fast_config())
    try:
        assert len({s.port for s in servers}) == MAX_DEMO_SERVERS
        for server, machine in zip(servers, demo_machines(MAX_DEMO_SERVERS), strict=True):
            assert server.vram_gb == machine.vram_gb
            loaded = [i.model_key for i in server.sim.state.loaded()]
            assert loaded == [key for key, _ in machine.preload]
    finally:
        stop_demo_fleet(servers)


# ----------------------------------------------------------------------------- other apps' traffic


async def test_every_server_gets_its_own_other_app_traffic(fleet: list[DemoServer]) -> None:
    assert all(s.sim.traffic is None for s in fleet)
    set_demo_fleet_traffic(fleet, 600)  # one request every 0.1 s on average

    async def each_served_two() -> bool:
        return all(
            s.sim.traffic is not None and sum(r.ok for r in s.sim.traffic.requests) >= 2
            for s in fleet
        )

    await wait_until(each_served_two)
    set_demo_fleet_traffic(fleet, 0)
    assert all(s.sim.traffic is None for s in fleet)

    for server in fleet:
        asked = {r.body["model"] for r in server.sim.received("POST", "/v1/chat/completions")}
        assert asked <= set(server.traffic_models)
        llms = {m["key"] for m in server.sim.state.list_models() if m["type"] == "llm"}
        assert set(server.traffic_models) <= llms  # only models this server has
    assert len({s.sim.config.seed for s in fleet}) == 3  # they do not act in step


async def test_traffic_starts_staggered_across_the_fleet(fleet: list[DemoServer]) -> None:
    set_demo_fleet_traffic(fleet, 4)
    try:
        firsts = [s.sim.traffic.first_after for s in fleet if s.sim.traffic is not None]
        assert firsts == [8.0, 12.0, 16.0]
    finally:
        set_demo_fleet_traffic(fleet, 0)


# ----------------------------------------------------------------------------- the CLI


def test_servers_without_demo_exits_2_with_one_line() -> None:
    err = io.StringIO()
    assert cli.main(["--servers", "2"], err=err) == 2
    assert err.getvalue() == "lmgui: --servers starts simulated servers, so it needs --demo.\n"


@pytest.mark.parametrize("bad", ["0", "9", "-1", "two"])
def test_servers_out_of_range_is_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--demo", "--servers", bad])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("lmgui: error: argument --servers:")


@pytest.mark.parametrize(("argv", "servers"), [(["--demo"], 1), (["--demo", "--servers", "3"], 3)])
def test_the_window_gets_the_number_of_servers(
    argv: list[str], servers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    got: list[argparse.Namespace] = []

    def run_gui(args: argparse.Namespace, paths: object) -> int:
        got.append(args)
        return 0

    monkeypatch.setattr("lmgui.app.run_gui", run_gui)
    assert cli.main(argv) == 0
    [args] = got
    assert args.demo is True and args.servers == servers


def test_the_cli_and_the_demo_agree_on_the_most_servers() -> None:
    assert cli.MAX_DEMO_SERVERS == MAX_DEMO_SERVERS
