"""The simulator behind ``lmgui --demo``: the demo catalog with a few instances already loaded,
and other apps' traffic (JIT loads, busy instances, TTL resets) unless it is turned off."""

from __future__ import annotations

from lmgui.sim.server import Simulator
from lmgui.sim.state import SimConfig

__all__ = [
    "DEMO_PRELOAD",
    "DEMO_TRAFFIC_FIRST_AFTER_SECONDS",
    "DEMO_TRAFFIC_MODELS",
    "DEMO_TRAFFIC_PER_MINUTE",
    "DEMO_TRAFFIC_TTL_SECONDS",
    "set_demo_traffic",
    "start_demo_simulator",
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
    for key, options in DEMO_PRELOAD:
        inst = sim.state.begin_load(key, dict(options))
        sim.state.finish_load(inst.id)
    sim.start()
    set_demo_traffic(sim, traffic_per_minute)
    return sim


def set_demo_traffic(sim: Simulator, per_minute: float) -> None:
    """Turn the demo's other-app traffic on at ``per_minute`` (restarting it at that rate), or
    off with 0: what a setting changed while the demo runs calls."""
    if per_minute <= 0:
        sim.stop_traffic()
        return
    sim.start_traffic(
        per_minute,
        models=DEMO_TRAFFIC_MODELS,
        ttl=DEMO_TRAFFIC_TTL_SECONDS,
        first_after=min(DEMO_TRAFFIC_FIRST_AFTER_SECONDS, 60 / per_minute),
    )
