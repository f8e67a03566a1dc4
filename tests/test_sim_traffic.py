"""Other apps' traffic: the simulated client that chats through ``/v1/chat/completions``, its
effects as lmgui's client sees them, ``lmgui-sim --traffic`` and the demo's use of it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from lmgui.api import LMStudioClient
from lmgui.sim import DEMO_CATALOG, Simulator
from lmgui.sim.__main__ import build_parser
from lmgui.sim.__main__ import main as sim_main
from lmgui.sim.demo import DEMO_TRAFFIC_MODELS, set_demo_traffic, start_demo_simulator
from lmgui.sim.traffic import USER_AGENT, Traffic, TrafficRequest, fitting_llms
from tests.conftest import SimFactory, fast_config, wait_until

MODELS = ("google/gemma-3-270m", "meta/llama-3.2-1b-instruct", "ibm/granite-4-micro")


async def sequence(sim: Simulator, seed: int, n: int) -> list[tuple[str, bool]]:
    traffic = Traffic(sim.url, 60, models=MODELS, seed=seed, ttl=120)
    async with traffic.client() as client:
        return [(r.model, r.stream) for r in [await traffic.send_one(client) for _ in range(n)]]


async def test_a_seed_gives_the_same_requests(make_sim: SimFactory) -> None:
    one, two = make_sim(), make_sim()
    first = await sequence(one, 7, 6)
    assert first == await sequence(two, 7, 6)
    assert first != await sequence(make_sim(), 8, 6)
    assert {stream for _, stream in first} == {True, False}  # plain and streamed requests


async def test_traffic_jit_loads_are_foreign_instances_with_its_ttl(sim: Simulator) -> None:
    results: list[TrafficRequest] = []
    traffic = Traffic(
        sim.url, 60, models=["ibm/granite-4-micro"], ttl=120, on_request=results.append
    )
    async with traffic.client() as client:
        await traffic.send_one(client)
    assert results[0].ok, results[0].describe()
    async with LMStudioClient(sim.url, lms=None) as lmgui:
        listed = await lmgui.list_models(with_truth=True)
    (inst,) = [i for m in listed for i in m.instances]
    assert inst.id == "ibm/granite-4-micro" and inst.ttl_seconds == 120
    (request,) = sim.received("POST", "/v1/chat/completions")
    assert request.headers["user-agent"] == USER_AGENT
    assert request.body["ttl"] == 120 and request.body["messages"][-1]["role"] == "user"


async def test_traffic_discovers_llms_and_sends_the_servers_token(make_sim: SimFactory) -> None:
    token = "sk-lm-Ab12Cd34:Ef56Gh78Ij90Kl12Mn34"
    sim = make_sim(token=token)
    traffic = Traffic(sim.url, 60, token=token, seed=3)
    async with traffic.client() as client:
        results = [await traffic.send_one(client) for _ in range(3)]
    assert all(r.ok for r in results), [r.describe() for r in results]
    llms = {e["key"] for e in DEMO_CATALOG if e["type"] == "llm"}
    assert {r.model for r in results} <= llms  # never an embedding model


async def test_a_failed_request_is_reported_not_raised(make_sim: SimFactory) -> None:
    sim = make_sim(vram_gb=1.0)
    traffic = Traffic(sim.url, 60, models=["openai/gpt-oss-20b"], stream_share=0.0)
    async with traffic.client() as client:
        result = await traffic.send_one(client)
    assert result.status == 500 and not result.ok
    assert (result.error or "").startswith('Failed to load model "openai/gpt-oss-20b"')
    unreachable = Traffic("http://127.0.0.1:9", 60, models=MODELS)
    async with unreachable.client() as client:
        result = await unreachable.send_one(client)
    assert result.status is None and "no answer" in result.describe()


async def test_the_background_thread_sends_until_stopped(make_sim: SimFactory) -> None:
    sim = make_sim()
    traffic = sim.start_traffic(1200, models=MODELS)  # about one request every 50 ms

    async def busy_enough() -> bool:
        return traffic.sent >= 3

    await wait_until(busy_enough)
    sim.stop_traffic()
    assert not traffic.running and sim.traffic is None
    assert all(r.ok for r in traffic.requests), [r.describe() for r in traffic.requests]
    assert len(sim.received("POST", "/v1/chat/completions")) >= 3


def test_the_traffic_thread_runs_a_plain_loop_whatever_policy_is_installed(
    make_sim: SimFactory,
) -> None:
    """lmgui runs under qasync, whose loop policy makes Qt loops: the demo's traffic thread must
    never get one (a Qt loop off the GUI thread never runs)."""

    class QtLoopsOnly(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            raise AssertionError("the traffic asked the installed policy for a loop")

    sim = make_sim()
    answered = threading.Event()
    before = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(QtLoopsOnly())
    try:
        traffic = Traffic(
            sim.url, 60, models=MODELS, first_after=0, on_request=lambda r: answered.set()
        )
        traffic.start()
    finally:
        asyncio.set_event_loop_policy(before)
    try:
        assert answered.wait(10)
        assert traffic.requests[0].ok
    finally:
        traffic.stop()


def test_the_traffic_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="above 0"):
        Traffic("http://127.0.0.1:1", 0)
    assert build_parser().parse_args(["--traffic", "4"]).traffic == 4.0
    for bad in ("0", "-1", "lots"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--traffic", bad])


def test_lmgui_sim_traffic_flag_starts_it_with_models_that_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[tuple[float, dict[str, Any]]] = []
    monkeypatch.setattr(Simulator, "bind", lambda self: None)
    monkeypatch.setattr(Simulator, "serve_forever", lambda self: None)
    monkeypatch.setattr(
        Simulator, "start_traffic", lambda self, rate, **kw: started.append((rate, kw))
    )
    monkeypatch.setattr("lmgui.sim.__main__.signal.signal", lambda *args: None)
    assert sim_main(["--port", "0", "--traffic", "30", "--vram-gb", "24"]) == 0
    [(rate, options)] = started
    assert rate == 30.0
    assert "deepseek/deepseek-r1-distill-llama-70b" not in options["models"]  # 42.5 GB
    assert "google/gemma-3-270m" in options["models"]
    assert "text-embedding-nomic-embed-text-v1.5" not in options["models"]
    assert options["models"] == fitting_llms(DEMO_CATALOG, 24)


async def test_the_demo_runs_other_apps_traffic_unless_turned_off() -> None:
    quiet = start_demo_simulator(fast_config(), traffic_per_minute=0)
    try:
        assert quiet.traffic is None
    finally:
        quiet.stop()
    demo = start_demo_simulator(fast_config(), traffic_per_minute=1200)
    try:
        traffic = demo.traffic
        assert traffic is not None and traffic.models == list(DEMO_TRAFFIC_MODELS)

        async def answered() -> bool:
            return any(r.ok for r in traffic.requests)

        await wait_until(answered)
        async with httpx.AsyncClient(base_url=demo.url) as h:
            ids = [row["id"] for row in (await h.get("/v1/models")).json()["data"]]
        assert set(DEMO_TRAFFIC_MODELS) <= set(ids)
        set_demo_traffic(demo, 0)  # the setting turned off while the demo runs
        assert rate_of(demo) is None and not traffic.running
        set_demo_traffic(demo, 4)
        assert rate_of(demo) == 4
    finally:
        demo.stop()
    assert rate_of(demo) is None


def rate_of(sim: Simulator) -> float | None:
    """The rate of the simulator's traffic, None while it has none."""
    return sim.traffic.per_minute if sim.traffic is not None else None
