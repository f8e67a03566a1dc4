"""What a hostile server costs ``lmgui ps`` and ``lmgui chat``: peak memory, wall time, bytes the
server could send (never asserted in the test suite; the suite asserts the sentences and limits).

    python bench/hostile.py          # every case
    python bench/hostile.py 0,2      # some cases, by index

Each case runs the real ``lmgui`` command in a child process against tests/hostile.py's server
on loopback, with the shipped limits and deadlines, and reports the child's peak RSS
(``ru_maxrss``), its wall time, its exit status and the bytes the server's sockets accepted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile import MB, HostileServer  # noqa: E402

CASES: list[tuple[str, list[str], str, dict[str, Any]]] = [
    ("200 MB model list (chunked)", ["ps"], "huge", {"size": 200 * MB, "chunked": True}),
    ("200 MB model list (with length)", ["ps"], "huge", {"size": 200 * MB}),
    ("500 with a 100 MB body", ["ps"], "huge_error", {"size": 100 * MB}),
    ("model list dripping 1 byte / 2 s", ["ps"], "drip", {"interval": 2.0}),
    (
        "chat stream, one 50 MB SSE line",
        ["chat", "a/b", "hi", "--stream"],
        "sse_huge_line",
        {"size": 50 * MB},
    ),
    (
        "chat stream of comments only",
        ["chat", "a/b", "hi", "--stream"],
        "sse",
        {"events": [b": keep-alive\n\n"], "interval": 1.0, "then": "repeat"},
    ),
]


# A wrapper process per case, so ru_maxrss of its children is that one command's peak.
WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def run_case(args: list[str], mode: str, params: dict[str, Any]) -> dict[str, Any]:
    with HostileServer(mode, **params) as srv:
        started = time.monotonic()
        env = {**os.environ, "LMGUI_LMS": "off", "XDG_STATE_HOME": "/tmp/lmgui-bench-state"}
        command = [sys.executable, "-m", "lmgui.cli", *args, "--server", srv.url]
        p = subprocess.run(
            [sys.executable, "-c", WRAPPER, *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        wall = time.monotonic() - started
        srv.wait_idle(10)
        lines = p.stderr.strip().splitlines()
        return {
            "rc": p.returncode,
            "wall_s": wall,
            "peak_rss_mb": int(lines[-1]) / 1024,
            "sent_mb": srv.bytes_sent / MB,
            "requests": len(srv.requests),
            "said": lines[-2] if len(lines) > 1 else "",
        }


def main() -> None:
    only = {int(n) for n in sys.argv[1].split(",")} if len(sys.argv) > 1 else None
    print(f"{'case':36} {'rc':>3} {'wall s':>7} {'peak MB':>8} {'sent MB':>8} {'reqs':>5}")
    for index, (name, args, mode, params) in enumerate(CASES):
        if only is not None and index not in only:
            continue
        r = run_case(args, mode, params)
        peak = f"{r['peak_rss_mb']:.0f}"
        print(
            f"{name:36} {r['rc']:>3} {r['wall_s']:>7.1f} {peak:>8} {r['sent_mb']:>8.1f}"
            f" {r['requests']:>5}"
        )
        print(f"    {r['said']}")


if __name__ == "__main__":
    main()
