"""The simulator behind ``lmgui --demo``: the demo catalog with a few instances already loaded."""

from __future__ import annotations

from lmgui.sim.server import Simulator
from lmgui.sim.state import SimConfig

__all__ = ["DEMO_PRELOAD", "start_demo_simulator"]

DEMO_PRELOAD: tuple[tuple[str, dict[str, object]], ...] = (
    ("qwen/qwen3.5-9b", {"context_length": 16384}),
    ("google/gemma-3-270m", {"context_length": 4096}),
    ("google/gemma-3-270m", {"context_length": 8192, "flash_attention": False}),
    ("text-embedding-nomic-embed-text-v1.5", {"context_length": 2048}),
)


def start_demo_simulator(config: SimConfig | None = None) -> Simulator:
    """A simulator on a free loopback port, in its own thread, with the demo instances loaded."""
    sim = Simulator(config or SimConfig(port=0))
    for key, options in DEMO_PRELOAD:
        inst = sim.state.begin_load(key, dict(options))
        sim.state.finish_load(inst.id)
    return sim.start()
