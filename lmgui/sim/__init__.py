"""The LM Studio simulator: a real HTTP server on loopback, faithful to lmstudio-api.md."""

from lmgui.sim.catalog import DEMO_CATALOG, load_catalog, synthetic_catalog
from lmgui.sim.server import RecordedRequest, Simulator
from lmgui.sim.state import ManualClock, SimConfig, SimState

__all__ = [
    "DEMO_CATALOG",
    "ManualClock",
    "RecordedRequest",
    "SimConfig",
    "SimState",
    "Simulator",
    "load_catalog",
    "synthetic_catalog",
]
