"""Shared fixtures: a real simulator on a loopback port, and a client talking to it."""

from __future__ import annotations

import os

# Before anything imports Qt, keyring or qasync: offscreen Qt, the PySide6 binding, and a keyring
# backend that never touches the developer's real one.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
# The suite never runs a real lms: it would load into the developer's own LM Studio. Tests that
# need one put a fake lms on PATH and take this away.
os.environ["LMGUI_LMS"] = "off"

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lmgui.api import LMStudioClient
from lmgui.sim import ManualClock, SimConfig, Simulator
from tests.hostile import hostile  # noqa: F401  (a fixture for every test folder)

DATA = Path(__file__).parent / "data"

SimFactory = Callable[..., Simulator]


def fast_config(**overrides: Any) -> SimConfig:
    """A simulator config for tests: any free port, instant tokens, near-instant loads."""
    base: dict[str, Any] = {"port": 0, "tokens_per_second": 0.0, "load_seconds_per_gb": 0.002}
    base.update(overrides)
    return SimConfig(**base)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    started: list[Simulator] = []

    def make(
        *, clock: ManualClock | None = None, catalog: list[dict[str, Any]] | None = None, **cfg: Any
    ) -> Simulator:
        sim = Simulator(fast_config(**cfg), clock=clock, catalog=catalog).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: SimFactory, clock: ManualClock) -> Simulator:
    return make_sim(clock=clock)


@pytest.fixture
def rest_sim(make_sim: SimFactory, clock: ManualClock) -> Simulator:
    """A server without LM Studio's SDK channel (an older LM Studio, or a proxy that forwards only
    HTTP): loads go over REST, then lms, or their extension options are not applied."""
    return make_sim(clock=clock, sdk_api=False)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[LMStudioClient]:
    async with LMStudioClient(sim.url, lms=None) as c:
        yield c


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


async def wait_until(
    condition: Callable[[], Awaitable[bool]], within: float = 10.0, step: float = 0.02
) -> None:
    """Await a condition that only polling can observe (a remote server's state).

    The simulator emits no events a client could subscribe to, as LM Studio emits none; polling
    the server is how a real client learns of a change too.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)
