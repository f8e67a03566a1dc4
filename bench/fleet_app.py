"""The whole app watching a fleet: 10 servers x 200 models, polled every 2 s (never asserted in
the test suite).

    .venv/bin/python bench/fleet_app.py                   # 10 servers, a readable report
    .venv/bin/python bench/fleet_app.py --servers 10 --models 200 --seconds 60 --json
    .venv/bin/python bench/fleet_app.py --sim-nice 10     # the simulators below lmgui's priority

The servers are ``lmgui-sim --synthetic-models N`` processes (each in its own process, so none
competes with the measured code for the GIL), each with two instances loaded. The app is the real
``LmguiApp`` (window, tree with a row per server, tray state, timeline recorder, chat pane) on the
qasync loop, offscreen, polling every server every ``--interval-ms``. Two phases:

1. the window shown: the longest gap of a 1 ms timer on the GUI thread (the event loop's longest
   stall; target < 16 ms) and its 99th percentile, while every server is polled, and one
   instance on one server is loaded and unloaded by another client every few seconds, so rows
   really change; with the GUI thread's and the process's CPU time within the longest gap, and
   the most GUI-thread CPU in any gap (a gap longer than the CPU in it is time the process did
   not run: on a machine with few cores, the simulators; ``--sim-nice 10`` runs them at a lower
   priority, as servers on other machines would never compete);
2. the window hidden, nothing measured on the GUI thread (the 1 ms timer would cost CPU itself):
   the process's CPU as a share of one core (target < 1 %) and its RSS, polling every
   ``--hidden-interval-ms`` (default: the same 2 s; the app's own hidden rate is 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_API", "pyside6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

import httpx
import psutil
import qasync
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet import sim_processes
from run import GapMeter

from lmgui.app import LmguiApp
from lmgui.core.paths import AppPaths
from lmgui.core.profiles import Profile, ProfileStore


async def preload(url: str, n: int) -> list[str]:
    """Load ``n`` of the server's models (as another client would); their keys."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        models = (await http.get("/api/v1/models")).json()["models"]
        keys = [m["key"] for m in models if m.get("type") == "llm"][:n]
        for key in keys:
            r = await http.post("/api/v1/models/load", json={"model": key, "context_length": 4096})
            r.raise_for_status()
    return keys


def churn(url: str, key: str, stop: threading.Event) -> int:
    """Another client (in its own thread: it is not lmgui) loads and unloads one instance every
    3 s, so rows come and go."""
    n = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            r = http.post("/api/v1/models/load", json={"model": key, "context_length": 2048})
            iid = r.json().get("instance_id")
            stop.wait(3)
            if iid:
                http.post("/api/v1/models/unload", json={"instance_id": iid})
            n += 1
            stop.wait(3)
    return n


async def bench(
    servers: int,
    models: int,
    seconds: float,
    interval_ms: int,
    profile: str | None = None,
    hidden_ms: int | None = None,
    sim_args: tuple[str, ...] = (),
    sim_nice: int = 0,
) -> dict[str, Any]:
    common = [
        "--synthetic-models",
        str(models),
        "--vram-gb",
        "100000",
        "--load-seconds-per-gb",
        "0",
        *sim_args,
    ]
    with (
        sim_processes([list(common) for _ in range(servers)], nice=sim_nice) as urls,
        tempfile.TemporaryDirectory() as home,
    ):
        keys = [await preload(u, 3) for u in urls]  # two stay; the third churns on server 1
        async with httpx.AsyncClient(base_url=urls[0], timeout=30) as http:
            loaded = (await http.get("/api/v1/models")).json()["models"]
            for m in loaded:
                for inst in m.get("loaded_instances") or []:
                    if m["key"] == keys[0][2]:
                        await http.post("/api/v1/models/unload", json={"instance_id": inst["id"]})
        paths = AppPaths.under(Path(home))
        ProfileStore(paths.config_dir / "servers.json").save(
            [Profile(f"box-{i + 1}", u) for i, u in enumerate(urls)]
        )
        t = time.perf_counter()
        app = LmguiApp(paths, poll_ms=interval_ms)
        create_ms = (time.perf_counter() - t) * 1000
        await app.chat_store.open()
        proc = psutil.Process()
        app.window.show()
        t = time.perf_counter()
        app.fleet.start()
        await app.start_chat()
        await app.first_poll.wait()
        while not all(app.tree.filled(c.url) for _, c in app.fleet.connections()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        filled_s = time.perf_counter() - t
        rows = sum(len(app.tree.models(c.url)) for _, c in app.fleet.connections())
        await asyncio.sleep(3)  # the hardware surveys and the first samples
        stop = threading.Event()
        churner = asyncio.ensure_future(asyncio.to_thread(churn, urls[0], keys[0][2], stop))
        await asyncio.sleep(0.5)  # the thread is running (starting it is not lmgui's cost)
        with GapMeter() as meter:
            await asyncio.sleep(seconds)
        stop.set()
        churns = await churner
        visible = meter.summary()

        app.window.hide()
        app.fleet.set_interval(hidden_ms or interval_ms)  # as the hidden rate would
        await asyncio.sleep(5)
        polls0 = sum(c.poller.polls for _, c in app.fleet.connections())
        t0, c0 = time.monotonic(), proc.cpu_times()
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        await asyncio.sleep(seconds)
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        t1, c1 = time.monotonic(), proc.cpu_times()
        polls1 = sum(c.poller.polls for _, c in app.fleet.connections())
        rss = proc.memory_info().rss
        states = sorted({c.poller.status.state.value for _, c in app.fleet.connections()})
        troubled = [
            f"{p.name}: {c.poller.status.state.value}: {c.poller.status.message}"
            for p, c in app.fleet.connections()
            if c.poller.status.state.value != "connected"
        ]
        await app.shutdown()
    cpu = (c1.user + c1.system - c0.user - c0.system) / (t1 - t0)
    return {
        "servers": servers,
        "models_per_server": models,
        "interval_ms": interval_ms,
        "seconds_per_phase": seconds,
        "simulators_nice": sim_nice,
        "create_app_ms": round(create_ms, 1),
        "all_servers_filled_s": round(filled_s, 2),
        "rows": rows,
        "states": states,
        "not_connected": troubled,
        "churn_cycles": churns,
        "visible_max_gap_ms": visible["max_gap_ms"],
        "visible_p99_gap_ms": visible["p99_gap_ms"],
        "visible_max_gap_gui_cpu_ms": visible["max_gap_gui_cpu_ms"],
        "visible_max_gap_process_cpu_ms": visible["max_gap_process_cpu_ms"],
        "visible_max_gui_cpu_in_a_gap_ms": visible["max_gui_cpu_in_a_gap_ms"],
        "hidden_interval_ms": hidden_ms or interval_ms,
        "hidden_cpu_percent_of_one_core": round(cpu * 100, 2),
        "hidden_polls_per_second": round((polls1 - polls0) / (t1 - t0), 2),
        "hidden_cpu_ms_per_poll": round(cpu * (t1 - t0) * 1000 / max(1, polls1 - polls0), 2),
        "rss_mb": round(rss / 2**20, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", action="store_true")
    p.add_argument("--servers", type=int, default=10)
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--seconds", type=float, default=30.0, help="per phase")
    p.add_argument("--interval-ms", type=int, default=2000)
    p.add_argument("--profile", metavar="FILE", help="cProfile the hidden phase into FILE")
    p.add_argument(
        "--hidden-interval-ms",
        type=int,
        help="poll this often while hidden (the Settings' hidden rate, 5000 by default); "
        "default: --interval-ms",
    )
    p.add_argument(
        "--sim-arg",
        action="append",
        default=[],
        help="an extra lmgui-sim argument for every server (e.g. --sim-arg=--no-sdk-api)",
    )
    p.add_argument(
        "--sim-nice",
        type=int,
        default=0,
        help="run the simulators at this lower priority (POSIX nice), as servers on other "
        "machines: on a machine with few cores, ten simulators otherwise take the core the "
        "GUI thread was about to run on, and the gaps measure that",
    )
    args = p.parse_args()
    qt_app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt_app, QApplication)
    qt_app.setQuitOnLastWindowClosed(False)
    r: dict[str, Any] = qasync.run(
        bench(
            args.servers,
            args.models,
            args.seconds,
            args.interval_ms,
            args.profile,
            args.hidden_interval_ms,
            tuple(args.sim_arg),
            args.sim_nice,
        )
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return
    for k, v in r.items():
        print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
