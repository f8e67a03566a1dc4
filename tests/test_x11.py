"""The tray in a real X11 session (Xvfb + trayer), run in its own process: Qt's platform is fixed
per process, and this suite runs offscreen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_tray_under_xvfb_with_a_real_tray_host() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests_x11"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    if " passed" not in out:
        reason = next((line for line in out.splitlines() if "SKIPPED" in line), out[-300:])
        pytest.skip(f"the X11 tray test could not run here: {reason}")
