"""A fleet of servers polled side by side: does a dead or slow one delay the others? (never
asserted in the test suite)

    .venv/bin/python bench/fleet.py                    # 10 servers, 30 s, a readable report
    .venv/bin/python bench/fleet.py --seconds 60 --json

The servers: ``--healthy`` simulators (``lmgui-sim --synthetic-models 200``), one simulator that
answers every request after 3 s (``--latency-ms 3000``) and one closed port (unreachable), each
simulator in its own process so none competes with the measured code for the GIL. One ``Fleet``
polls them all every 2 s for ``--seconds`` on the qasync loop (offscreen, no window). Reported:

- per server: its state, good polls, and the intervals between the ends of its polls (median and
  longest). On schedule means about the interval plus the poll's own time, whatever the others do;
- the longest gap of a 1 ms timer on the GUI thread (how long the event loop stalled; target
  < 16 ms), and its 99th percentile;
- the CPU the process used over the run, as a share of one core, and how long creating the
  connections took (each builds an httpx client, an SSL context among it, on the GUI thread).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_API", "pyside6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

import psutil
import qasync
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import GapMeter as _GapMeter

from lmgui.core.fleet import Fleet
from lmgui.core.profiles import Profile
from lmgui.core.secrets import TokenStore


class GapMeter(_GapMeter):
    """bench/run.py's meter, also noting when each gap over 16 ms ended (s since the start)."""

    def __init__(self) -> None:
        super().__init__()
        self.long: list[tuple[float, float]] = []

    def _tick(self) -> None:
        super()._tick()
        if self.gaps[-1] > 16:
            self.long.append((self._last / 1e9, self.gaps[-1]))

    def __enter__(self) -> GapMeter:
        super().__enter__()
        return self

    def after(self, seconds: float) -> float:
        """The longest gap that ended later than ``seconds`` into the run, in ms."""
        return max((g for t, g in self.long if t > seconds), default=0.0)


@contextmanager
def sim_processes(arg_lists: list[list[str]], *, nice: int = 0) -> Iterator[list[str]]:
    """``lmgui-sim`` processes started side by side; yields their URLs in order.

    ``nice``: their scheduling priority below the benchmark's (POSIX), so that on a machine with
    few cores they do not take the core lmgui was about to run on: servers on other machines,
    as a fleet's mostly are, never do."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lmgui.sim", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=(lambda: os.nice(nice)) if nice and os.name == "posix" else None,
        )
        for args in arg_lists
    ]
    try:
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            urls.append(proc.stdout.readline().split()[-1])
            # Drain the rest: a simulator that logs to a full pipe blocks, and looks dead.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def closed_port_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def bench_fleet(
    seconds: float, healthy: int, models: int, interval_ms: int, slow_sdk: bool = True
) -> dict[str, Any]:
    common = ["--synthetic-models", str(models), "--vram-gb", "100000"]
    slow = [*common, "--latency-ms", "3000"]
    if not slow_sdk:
        # The SDK's greeting probe times out after 1 s, so the slow server polls over REST
        # alone either way; --slow-no-sdk takes its channel away altogether.
        slow.append("--no-sdk-api")
    arg_lists = [list(common) for _ in range(healthy)] + [slow]
    with sim_processes(arg_lists) as urls, tempfile.TemporaryDirectory() as state:
        profiles = [Profile(f"sim-{i + 1}", u) for i, u in enumerate(urls[:healthy])]
        profiles.append(Profile("slow-3s", urls[healthy]))
        profiles.append(Profile("dead", closed_port_url()))
        fleet = Fleet(Path(state), TokenStore(), interval_ms=interval_ms)
        t = time.perf_counter()
        fleet.set_profiles(profiles)
        create_ms = (time.perf_counter() - t) * 1000
        ends: dict[str, list[float]] = {p.url: [] for p in profiles}
        fleet.poll_finished.connect(lambda url: ends[url].append(time.monotonic()))
        proc = psutil.Process()
        cpu0 = sum(proc.cpu_times()[:2])
        with GapMeter() as meter:
            fleet.start()
            # The bench's own clock; the fleet runs meanwhile.
            await asyncio.sleep(5.0)
            cpu5 = sum(proc.cpu_times()[:2])
            await asyncio.sleep(seconds - 5.0)
        cpu_end = sum(proc.cpu_times()[:2])
        cpu = cpu_end - cpu0
        servers = []
        for p, conn in fleet.connections():
            times = ends[conn.url]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            servers.append(
                {
                    "name": p.name,
                    "state": conn.poller.status.state.value,
                    "good_polls": conn.poller.polls,
                    "polls_ended": len(times),
                    "median_interval_s": round(statistics.median(gaps), 3) if gaps else None,
                    "max_interval_s": round(max(gaps), 3) if gaps else None,
                }
            )
        await fleet.aclose()
    return {
        "seconds": seconds,
        "interval_ms": interval_ms,
        "models_per_server": models,
        "create_connections_ms": round(create_ms, 1),
        "cpu_share_of_one_core_pct": round(100 * cpu / seconds, 2),
        "cpu_after_5s_pct": round(100 * (cpu_end - cpu5) / (seconds - 5.0), 2),
        "servers": servers,
        **meter.summary(),
        "gaps_over_16ms": [(round(t, 2), round(g, 1)) for t, g in meter.long],
        "max_gap_after_5s_ms": round(meter.after(5.0), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", action="store_true")
    p.add_argument("--seconds", type=float, default=30.0, help="at least 6")
    p.add_argument("--healthy", type=int, default=8, help="healthy simulators (default 8)")
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--interval-ms", type=int, default=2000)
    p.add_argument(
        "--slow-no-sdk", action="store_true", help="the slow server has no SDK channel at all"
    )
    args = p.parse_args()
    qt_app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt_app, QApplication)
    r: dict[str, Any] = qasync.run(
        bench_fleet(args.seconds, args.healthy, args.models, args.interval_ms, not args.slow_no_sdk)
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return
    n = len(r["servers"])
    print(
        f"fleet of {n} servers ({r['models_per_server']} models each on the simulators), polled "
        f"every {r['interval_ms'] / 1000:g} s for {r['seconds']:g} s"
    )
    print(f"  creating the {n} connections: {r['create_connections_ms']} ms")
    for s in r["servers"]:
        print(
            f"  {s['name']:>8}: {s['state']:<12} {s['good_polls']:>3} good polls, "
            f"{s['polls_ended']:>3} ended; interval median {s['median_interval_s']} s, "
            f"longest {s['max_interval_s']} s"
        )
    print(
        f"  longest event-loop gap {r['max_gap_ms']} ms, p99 {r['p99_gap_ms']} ms "
        f"(target < 16 ms); CPU {r['cpu_share_of_one_core_pct']} % of one core "
        f"({r['cpu_after_5s_pct']} % after the first 5 s)"
    )
    print(
        f"  gaps over 16 ms (s into the run, ms): {r['gaps_over_16ms']}; longest after the "
        f"first 5 s: {r['max_gap_after_5s_ms']} ms"
    )


if __name__ == "__main__":
    main()
