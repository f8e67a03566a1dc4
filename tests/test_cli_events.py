"""`lmgui events`: the timeline from a terminal, one line an event with who caused it, `--since`,
`--json`, and `--follow` printing events as the app records them (a real child process)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmgui.cli import main
from lmgui.core.event_store import EVENTS_FILE, EventStore
from lmgui.core.events import Event
from lmgui.core.paths import AppPaths

SERVER = "http://127.0.0.1:1234"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMGUI_SERVER", raising=False)


def run(paths: AppPaths, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--server", SERVER, "events", *args], paths=paths, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def fill(paths: AppPaths) -> None:
    now = time.time()
    store = EventStore(paths.data_dir / EVENTS_FILE)
    store.add(
        [
            Event(now - 3 * 3600, SERVER, "loaded", "lmgui", "a/one", "a/one", 4096),
            Event(now - 3600, SERVER, "loaded", "other", "b/two", "coder", 8192, 0.5),
            Event(now - 60, SERVER, "unloaded", "server", "b/two", "coder", 8192,
                  detail="its idle TTL ran out"),
            Event(now - 30, "http://lab:1234", "loaded", "other", "c/three", "c/three"),
        ]
    )  # fmt: skip
    store.close()


def test_events_prints_the_servers_timeline_oldest_first_with_who(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = AppPaths.under(tmp_path)
    code, out, err = run(paths)
    assert code == 0 and err.startswith("No events recorded yet")
    assert not (paths.data_dir / EVENTS_FILE).exists()  # reading never creates it
    fill(paths)
    code, out, _ = run(paths)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3  # this server's only
    assert "lmgui" in lines[0] and lines[0].endswith("loaded a/one (4k), by lmgui")
    assert lines[1].endswith("loaded b/two as coder (8k, 50 %), by another client")
    assert "the server" in lines[2] and lines[2].endswith(
        "unloaded b/two as coder (8k): its idle TTL ran out"
    )
    code, out, _ = run(paths, "--since", "2h", "--json")
    assert [e["identifier"] for e in json.loads(out)] == ["coder", "coder"]
    with pytest.raises(SystemExit) as stop:  # argparse's own usage error
        run(paths, "--since", "soon")
    assert stop.value.code == 2 and "'soon' is not an age" in capsys.readouterr().err


def test_events_follow_prints_new_events_as_they_are_recorded(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    fill(paths)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    code = (
        "import sys; from pathlib import Path; from lmgui.cli import main; "
        "from lmgui.core.paths import AppPaths; "
        f"sys.exit(main(sys.argv[1:], paths=AppPaths.under(Path({str(tmp_path)!r}))))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--server", SERVER, "events", "--since", "2h", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().rstrip().endswith("by another client")  # the past first
        assert "its idle TTL ran out" in proc.stdout.readline()
        store = EventStore(paths.data_dir / EVENTS_FILE)
        store.add([Event(time.time(), SERVER, "offline", "server", detail="Cannot connect.")])
        store.close()
        assert proc.stdout.readline().rstrip().endswith(f"{SERVER} offline: Cannot connect.")
    finally:
        proc.terminate()
        proc.wait(10)
