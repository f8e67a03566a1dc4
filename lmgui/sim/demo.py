"""The simulators behind ``lmgui --demo``: the demo catalog with a few instances already loaded,
and other apps' traffic (JIT loads, busy instances, TTL resets) unless it is turned off.

``lmgui --demo --servers N`` starts a fleet instead: N simulators, each on its own port and
thread, each a different machine (its own catalog, VRAM, loaded instances and traffic).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lmgui.sim.catalog import DEMO_CATALOG, GB
from lmgui.sim.server import Simulator
from lmgui.sim.state import SimConfig, SimState

__all__ = [
    "DEMO_FLEET",
    "DEMO_PRELOAD",
    "DEMO_TRAFFIC_FIRST_AFTER_SECONDS",
    "DEMO_TRAFFIC_MODELS",
    "DEMO_TRAFFIC_PER_MINUTE",
    "DEMO_TRAFFIC_TTL_SECONDS",
    "MAX_DEMO_SERVERS",
    "DemoMachine",
    "DemoServer",
    "demo_machines",
    "set_demo_fleet_traffic",
    "set_demo_traffic",
    "start_demo_fleet",
    "start_demo_simulator",
    "stop_demo_fleet",
]

DEMO_PRELOAD: tuple[tuple[str, dict[str, object]], ...] = (
    ("qwen/qwen3.5-9b", {"context_length": 16384}),
    ("google/gemma-3-270m", {"context_length": 4096}),
    ("google/gemma-3-270m", {"context_length": 8192, "flash_attention": False}),
    ("text-embedding-nomic-embed-text-v1.5", {"context_length": 2048}),
)

DEMO_TRAFFIC_PER_MINUTE = 4.0
"""Gentle: a request every 15 s on average, enough to see other apps at work while you watch."""
DEMO_TRAFFIC_MODELS = (
    "google/gemma-3-270m",  # preloaded: the other app keeps a loaded instance busy
    "qwen/qwen3.5-9b",  # preloaded too
    "meta/llama-3.2-1b-instruct",  # the rest load just in time, one at a time (auto-evict)
    "ibm/granite-4-micro",
    "liquid/lfm2-1.2b",
    "qwen/qwen3-4b",
)
DEMO_TRAFFIC_TTL_SECONDS = 300.0
"""The TTL the other app asks for its JIT loads: an idle one unloads after five minutes."""
DEMO_TRAFFIC_FIRST_AFTER_SECONDS = 8.0
"""The other app's first request comes soon after the window opens (or after one average
interval, when that is shorter), not at a random time."""


def start_demo_simulator(
    config: SimConfig | None = None, *, traffic_per_minute: float = DEMO_TRAFFIC_PER_MINUTE
) -> Simulator:
    """A simulator on a free loopback port, in its own thread, with the demo instances loaded.

    ``traffic_per_minute`` > 0 also starts a simulated other app chatting with it at that rate
    (``set_demo_traffic`` turns it off or on again later); 0 starts none. ``sim.stop()`` stops
    both.
    """
    sim = Simulator(config or SimConfig(port=0))
    _preload(sim.state, DEMO_PRELOAD)
    sim.start()
    set_demo_traffic(sim, traffic_per_minute)
    return sim


def set_demo_traffic(sim: Simulator, per_minute: float) -> None:
    """Turn the demo's other-app traffic on at ``per_minute`` (restarting it at that rate), or
    off with 0: what a setting changed while the demo runs calls."""
    _set_traffic(sim, per_minute, DEMO_TRAFFIC_MODELS, 0)


def _preload(state: SimState, preload: Iterable[tuple[str, dict[str, object]]]) -> None:
    for key, options in preload:
        inst = state.begin_load(key, dict(options))
        state.finish_load(inst.id)


def _set_traffic(sim: Simulator, per_minute: float, models: Sequence[str], position: int) -> None:
    """The other app's traffic on one server; ``position`` in a fleet delays its first request
    by half a step more per server, so a fleet's servers do not all start at once (their seeds,
    ``SimConfig.seed``, differ too, so they do not keep pace either)."""
    if per_minute <= 0:
        sim.stop_traffic()
        return
    first_after = min(DEMO_TRAFFIC_FIRST_AFTER_SECONDS, 60 / per_minute)
    sim.start_traffic(
        per_minute,
        models=tuple(models),
        ttl=DEMO_TRAFFIC_TTL_SECONDS,
        first_after=first_after * (1 + position / 2),
    )


# ----------------------------------------------------------------------------- the fleet demo

MAX_DEMO_SERVERS = 8
"""``lmgui --demo --servers N`` takes 1 to this many."""


@dataclass(frozen=True)
class DemoMachine:
    """What one simulated server of the fleet demo pretends to be."""

    name: str
    vram_gb: float
    """The GPU's memory: the simulator's load budget and what its hardware survey reports."""
    models: frozenset[str]
    """Keys of the demo catalog's models it has downloaded."""
    preload: tuple[tuple[str, dict[str, object]], ...]
    """Instances already loaded when it starts (they fit ``vram_gb``)."""

    def catalog(self) -> list[dict[str, Any]]:
        """Its catalog: the demo catalog's entries it has, in the demo catalog's order."""
        return [e for e in DEMO_CATALOG if e["key"] in self.models]


DEMO_FLEET: tuple[DemoMachine, ...] = (
    DemoMachine(
        "Workstation",
        24.0,
        frozenset(
            {
                "google/gemma-3-270m",
                "meta/llama-3.2-1b-instruct",
                "qwen/qwen3-4b",
                "qwen/qwen2.5-vl-7b-instruct",
                "qwen/qwen3.5-9b",
                "openai/gpt-oss-20b",
                "mistralai/mistral-small-3.2",
                "text-embedding-nomic-embed-text-v1.5",
            }
        ),
        (
            ("qwen/qwen3.5-9b", {"context_length": 16384}),
            ("google/gemma-3-270m", {"context_length": 8192}),
            ("text-embedding-nomic-embed-text-v1.5", {"context_length": 2048}),
        ),
    ),
    DemoMachine(
        "GPU box",
        48.0,
        frozenset(
            {
                "qwen/qwen3-4b",
                "qwen/qwen3.5-9b",
                "openai/gpt-oss-20b",
                "google/gemma-4-26b-a4b",
                "mistralai/mistral-small-3.2",
                "deepseek/deepseek-r1-distill-llama-70b",
                "meta/llama-3.3-70b-instruct",
                "qwen/qwen3-embedding-0.6b",
                "text-embedding-nomic-embed-text-v1.5",
            }
        ),
        (
            ("openai/gpt-oss-20b", {"context_length": 32768}),
            ("google/gemma-4-26b-a4b", {"context_length": 8192}),
            ("qwen/qwen3-embedding-0.6b", {"context_length": 8192}),
        ),
    ),
    DemoMachine(
        "Laptop",
        8.0,
        frozenset(
            {
                "google/gemma-3-270m",
                "meta/llama-3.2-1b-instruct",
                "mlx-community/llama-3.2-3b-instruct-4bit",
                "ibm/granite-4-micro",
                "liquid/lfm2-1.2b",
                "qwen/qwen3-4b",
                "text-embedding-nomic-embed-text-v1.5",
            }
        ),
        (
            ("ibm/granite-4-micro", {"context_length": 8192}),
            ("liquid/lfm2-1.2b", {"context_length": 4096}),
            ("text-embedding-nomic-embed-text-v1.5", {"context_length": 2048}),
        ),
    ),
)
"""The first three servers of a fleet: a desktop GPU, a big one and a small one."""

_LAB_VRAM_GB = (16.0, 32.0, 12.0, 64.0, 20.0)


def _lab_machine(number: int, taken: Iterable[frozenset[str]]) -> DemoMachine:
    """``Lab <number>``: a seeded mix of the demo catalog's models that fit its VRAM, unlike
    every machine in ``taken``, with two LLMs and an embedding model loaded."""
    vram_gb = _LAB_VRAM_GB[(number - 4) % len(_LAB_VRAM_GB)]
    budget = vram_gb * GB
    rng = random.Random(number)
    llms = [e for e in DEMO_CATALOG if e["type"] == "llm" and int(e["size_bytes"]) * 1.25 <= budget]
    embeddings = [e for e in DEMO_CATALOG if e["type"] == "embedding"]
    seen = set(taken)
    while True:
        chosen = rng.sample(llms, k=min(len(llms), rng.randint(4, 6)))
        embedding = rng.choice(embeddings)
        models = frozenset({e["key"] for e in chosen} | {embedding["key"]})
        if models not in seen:
            break
    probe = SimState([], SimConfig(vram_gb=vram_gb))
    used = 0
    preload: list[tuple[str, dict[str, object]]] = []
    # Shuffled first, then smallest first, so at least the smallest of them always fits.
    by_size = sorted(chosen, key=lambda e: int(e["size_bytes"]))
    for entry in [*rng.sample(chosen, k=len(chosen)), *by_size]:
        if len(preload) == 2:
            break
        options: dict[str, object] = {"context_length": min(8192, entry["max_context_length"])}
        need = probe.estimate(entry, options, 1.0)
        if entry["key"] not in dict(preload) and used + need <= 0.6 * budget:
            preload.append((entry["key"], options))
            used += need
    preload.append(
        (embedding["key"], {"context_length": min(2048, embedding["max_context_length"])})
    )
    return DemoMachine(f"Lab {number}", vram_gb, models, tuple(preload))


def demo_machines(n: int) -> list[DemoMachine]:
    """The first ``n`` machines of the fleet demo: ``DEMO_FLEET``, then ``Lab 4``, ``Lab 5``...
    each with a catalog of its own."""
    machines = list(DEMO_FLEET[:n])
    for number in range(len(machines) + 1, n + 1):
        machines.append(_lab_machine(number, (m.models for m in machines)))
    return machines


@dataclass(frozen=True)
class DemoServer:
    """One running simulator of the demo: the name the window shows for it and the server."""

    name: str
    sim: Simulator
    traffic_models: tuple[str, ...]
    """The models the other app on this server asks for (loaded ones, and ones that fit)."""
    position: int = 0
    """Its place in the fleet, from 0: staggers when its traffic begins."""

    @property
    def url(self) -> str:
        return self.sim.url

    @property
    def port(self) -> int:
        return self.sim.port

    @property
    def vram_gb(self) -> float:
        return self.sim.config.vram_gb


def _traffic_models(state: SimState) -> tuple[str, ...]:
    """The LLMs another app can use without failing: loaded ones, and those a JIT load (the
    server's default context) can load next to what is loaded (auto-evict frees only JIT
    loads, so one at a time must fit the VRAM the preloaded instances leave)."""
    loaded = {i.model_key for i in state.loaded()}
    free = int(state.config.vram_gb * GB) - state.vram_used()
    keys = []
    for entry in state.list_models():
        if entry["type"] != "llm":
            continue
        default = {"context_length": min(4096, int(entry["max_context_length"]))}
        if entry["key"] in loaded or state.estimate(entry, default, 1.0) <= free:
            keys.append(entry["key"])
    return tuple(keys)


def _start_machine(
    machine: DemoMachine, base: SimConfig, position: int, traffic_per_minute: float
) -> DemoServer:
    config = dataclasses.replace(
        base, port=0, vram_gb=machine.vram_gb, seed=base.seed + 7919 * position
    )
    sim = Simulator(config, catalog=machine.catalog())
    _preload(sim.state, machine.preload)
    server = DemoServer(machine.name, sim, _traffic_models(sim.state), position)
    sim.start()
    try:
        _set_traffic(sim, traffic_per_minute, server.traffic_models, position)
    except BaseException:
        sim.stop()
        raise
    return server


def start_demo_fleet(
    n: int,
    *,
    traffic_per_minute: float = DEMO_TRAFFIC_PER_MINUTE,
    config: SimConfig | None = None,
) -> list[DemoServer]:
    """``n`` demo simulators, each on a free loopback port in its own thread.

    ``n`` = 1 is ``start_demo_simulator``'s server, named "Demo". More are different machines
    (``demo_machines``): their own catalog, VRAM, loaded instances, and, when
    ``traffic_per_minute`` > 0, another app's traffic each (staggered, seeded apart).
    ``config``: the settings they share (speeds, faults...); the port, VRAM and seed are each
    server's own. If one fails to start, those already started are stopped before the error
    is raised. ``stop_demo_fleet`` stops them all.
    """
    if not 1 <= n <= MAX_DEMO_SERVERS:
        raise ValueError(f"A demo fleet has 1 to {MAX_DEMO_SERVERS} servers, not {n}.")
    base = dataclasses.replace(config, port=0) if config is not None else SimConfig(port=0)
    if n == 1:
        sim = start_demo_simulator(base, traffic_per_minute=traffic_per_minute)
        return [DemoServer("Demo", sim, DEMO_TRAFFIC_MODELS)]
    servers: list[DemoServer] = []
    try:
        for position, machine in enumerate(demo_machines(n)):
            servers.append(_start_machine(machine, base, position, traffic_per_minute))
    except BaseException:
        stop_demo_fleet(servers)
        raise
    return servers


def set_demo_fleet_traffic(servers: Iterable[DemoServer], per_minute: float) -> None:
    """``set_demo_traffic`` for every server of a fleet: on at ``per_minute``, or off with 0."""
    for server in servers:
        _set_traffic(server.sim, per_minute, server.traffic_models, server.position)


def stop_demo_fleet(servers: Iterable[DemoServer]) -> None:
    """Stop every server (and its traffic); their ports close."""
    for server in servers:
        server.sim.stop()
