"""Start and stop a headless X11 session with a tray host: Xvfb plus trayer."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

__all__ = ["available", "start", "stop"]

NEEDED = ("Xvfb", "trayer", "xdotool")


def available() -> bool:
    return all(shutil.which(tool) for tool in NEEDED)


def start(width: int = 1280, height: int = 800) -> list[subprocess.Popen[bytes]]:
    """Start Xvfb and trayer; set DISPLAY and the xcb platform for Qt. Returns the processes."""
    r, w = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    number = b""
    while not number.endswith(b"\n"):
        chunk = os.read(r, 16)
        if not chunk:
            break
        number += chunk
    os.close(r)
    os.environ["DISPLAY"] = f":{number.decode().strip()}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)  # the XEmbed path, not StatusNotifier
    tray = subprocess.Popen(
        [
            "trayer",
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "pixel",
            "--width",
            "120",
            "--height",
            "24",
            "--transparent",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # trayer's window exists: the tray host is up
        found = subprocess.run(["xdotool", "search", "--class", "trayer"], capture_output=True)
        if found.stdout.strip():
            break
        time.sleep(0.05)
    return [tray, xvfb]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
