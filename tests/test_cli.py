"""The ``lmgui`` and ``lmgui-sim`` commands end to end, against the simulator."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lmgui.cli import main
from lmgui.core.paths import AppPaths
from lmgui.sim import Simulator
from tests.conftest import SimFactory


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LM_API_TOKEN", raising=False)
    monkeypatch.delenv("LMGUI_SERVER", raising=False)


@pytest.fixture
def lmgui(sim: Simulator, tmp_path: Path) -> object:
    def run(*args: str, server: str | None = None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            ["--server", server or sim.url, *args],
            paths=AppPaths.under(tmp_path),
            out=out,
            err=err,
        )
        return Run(code, out.getvalue(), err.getvalue())

    return run


def cli(lmgui: object, *args: str, server: str | None = None) -> Run:
    return lmgui(*args, server=server)  # type: ignore[operator, no-any-return]


def test_ls_lists_models(lmgui: object) -> None:
    r = cli(lmgui, "ls")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["KEY", "TYPE", "PARAMS"]
    assert any(
        line.startswith("qwen/qwen3.5-9b ") and "vision,tools,reasoning" in line for line in lines
    )
    models = cli(lmgui, "ls", "--json").json()
    assert isinstance(models, list) and len(models) >= 12


def test_load_ps_unload_cycle(lmgui: object) -> None:
    r = cli(lmgui, "ps")
    assert r.code == 0 and "No models are loaded." in r.err

    r = cli(lmgui, "load", "qwen/qwen3-4b", "--context", "8192", "--no-flash-attention")
    assert r.code == 0 and r.out.strip() == "Loaded qwen/qwen3-4b as qwen/qwen3-4b in 0.0 s."
    r = cli(lmgui, "load", "qwen/qwen3-4b", "--json")
    assert r.code == 0 and r.json()["instance_id"] == "qwen/qwen3-4b:2"  # type: ignore[index]

    r = cli(lmgui, "ps")
    rows = [line.split() for line in r.out.splitlines()]
    assert rows[0] == [
        "IDENTIFIER", "MODEL", "STATUS", "SIZE", "CONTEXT", "PARALLEL", "GPU", "TTL", "EST.", "VRAM"
    ]  # fmt: skip
    # SIZE is two words ("2.5 GB"); no TTL for a load that set none.
    assert rows[1][:8] == ["qwen/qwen3-4b", "qwen/qwen3-4b", "idle", "2.5", "GB", "8k", "4", "max"]
    assert rows[1][8] == "-"
    assert rows[2][0] == "qwen/qwen3-4b:2"
    assert "2 instance(s)" in r.err and "estimated" in r.err
    ps = cli(lmgui, "ps", "--json").json()
    assert isinstance(ps, list)
    assert ps[0]["context_length"] == 8192 and ps[0]["estimated_vram_bytes"] > 2.5e9

    r = cli(lmgui, "unload", "qwen/qwen3-4b:2")
    assert r.code == 0 and r.out == "Unloaded qwen/qwen3-4b:2.\n"
    r = cli(lmgui, "unload", "--model", "qwen/qwen3-4b")
    assert r.code == 0 and r.out == "Unloaded qwen/qwen3-4b.\n"
    assert cli(lmgui, "ps", "--json").json() == []


def test_unload_all_and_a_remaining_instance(
    lmgui: object, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli(lmgui, "load", "google/gemma-3-270m")
    cli(lmgui, "load", "google/gemma-3-270m")
    cli(lmgui, "load", "meta/llama-3.2-1b-instruct")
    r = cli(lmgui, "unload", "--all", "--json")
    assert r.code == 0
    assert sorted(r.json()["unloaded"]) == [  # type: ignore[index]
        "google/gemma-3-270m",
        "google/gemma-3-270m:2",
        "meta/llama-3.2-1b-instruct",
    ]
    cli(lmgui, "load", "google/gemma-3-270m")
    monkeypatch.setattr(sim.state, "unload", lambda instance_id: None)  # the server "forgets" to
    r = cli(lmgui, "unload", "--model", "google/gemma-3-270m")
    assert r.code == 1
    assert r.err.strip() == (
        "lmgui: google/gemma-3-270m is still loaded after unloading it; the server kept it."
    )


def test_load_options_the_server_did_not_apply_are_stated(
    lmgui: object, rest_sim: Simulator
) -> None:
    r = cli(
        lmgui, "load", "google/gemma-3-270m", "--ttl", "600", "--gpu", "0.5", server=rest_sim.url
    )
    assert r.code == 0
    assert r.err.endswith(
        "Warning: The server did not apply gpu, ttl (LM Studio's REST API does not take them, "
        "and lms is turned off in lmgui).\n"
    )


def test_chat_continue_and_explicit_previous_id(lmgui: object, sim: Simulator) -> None:
    first = cli(lmgui, "chat", "google/gemma-3-270m", "first question", "--json").json()
    assert isinstance(first, dict)
    assert first["previous_response_id"] is None and first["response_id"].startswith("resp_")
    second = cli(lmgui, "chat", "google/gemma-3-270m", "follow up", "--continue", "--json").json()
    assert isinstance(second, dict)
    assert second["previous_response_id"] == first["response_id"]
    assert second["text"].startswith("Turn 2.") and "first question" in second["text"]
    assert (
        sim.received("POST", "/api/v1/chat")[-1].body["previous_response_id"]
        == first["response_id"]
    )

    branch = cli(
        lmgui,
        "chat",
        "google/gemma-3-270m",
        "branch",
        "--previous-response-id",
        first["response_id"],
        "--json",
    ).json()
    assert isinstance(branch, dict) and branch["text"].startswith("Turn 2.")


def test_chat_prints_the_answer_and_stats(lmgui: object) -> None:
    r = cli(lmgui, "chat", "qwen/qwen3-4b", "hello", "--reasoning", "off")
    assert r.code == 0 and r.out.startswith("Turn 1. You said: \u201chello\u201d.")
    assert "tokens" in r.err and "response resp_" in r.err and "model load" in r.err


def test_chat_stream_prints_tokens_and_reasoning_apart(lmgui: object) -> None:
    plain = cli(lmgui, "chat", "qwen/qwen3-4b", "stream it", "--json").json()
    assert isinstance(plain, dict)
    r = cli(lmgui, "chat", "qwen/qwen3-4b", "stream it", "--stream", "--no-store")
    assert r.code == 0
    assert r.out.strip().startswith("Turn 1.")
    assert "The user is on turn 1" in r.err  # reasoning on stderr, answer on stdout
    assert "not stored" in r.err


def test_chat_unload_after(lmgui: object) -> None:
    r = cli(lmgui, "chat", "google/gemma-3-270m", "one-off", "--unload-after")
    assert r.code == 0 and "Unloaded google/gemma-3-270m." in r.err
    assert cli(lmgui, "ps", "--json").json() == []


def test_chat_log_is_json_lines_without_the_token(
    make_sim: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "sk-lm-logtest:verysecret"
    sim = make_sim(token=token)
    monkeypatch.setenv("LM_API_TOKEN", token)
    log = tmp_path / "chat.jsonl"
    out, err = io.StringIO(), io.StringIO()
    for text in ("one", "two"):
        args = ["--server", sim.url, "chat", "google/gemma-3-270m", text, "--log", str(log)]
        if text == "two":
            args += ["--continue", "--stream"]
        assert main(args, paths=AppPaths.under(tmp_path), out=out, err=err) == 0, err.getvalue()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [entry["request"]["input"] for entry in lines] == ["one", "two"]
    assert lines[1]["request"]["previous_response_id"] == lines[0]["response"]["response_id"]
    assert all(entry["status"] == 200 for entry in lines)
    assert "verysecret" not in log.read_text()


def test_download_then_status(lmgui: object) -> None:
    started = cli(lmgui, "download", "qwen/qwen3-8b", "--no-wait", "--json").json()
    assert isinstance(started, dict) and started["status"] == "downloading"
    r = cli(lmgui, "download-status", started["job_id"])
    assert r.code == 0 and r.out.startswith(started["job_id"] + ": downloading")
    r = cli(lmgui, "download", "google/gemma-3-270m")
    assert r.out == "google/gemma-3-270m is already downloaded.\n"


def test_errors_are_one_line_and_non_zero(lmgui: object) -> None:
    r = cli(lmgui, "chat", "no/such-model", "hi")
    assert r.code == 1
    assert r.err.count("\n") == 1 and r.err.startswith("lmgui: ") and "no/such-model" in r.err
    r = cli(lmgui, "unload", "--model", "no/such-model")
    assert r.code == 2 and "no model with the key" in r.err


def test_token_from_the_environment(
    make_sim: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = make_sim(token="sk-lm-env:tok")
    out, err = io.StringIO(), io.StringIO()
    paths = AppPaths.under(tmp_path)
    assert main(["--server", sim.url, "ls"], paths=paths, out=out, err=err) == 1
    assert "requires an API token" in err.getvalue() and "LM_API_TOKEN" in err.getvalue()
    monkeypatch.setenv("LM_API_TOKEN", "sk-lm-env:tok")
    assert main(["--server", sim.url, "ls"], paths=paths, out=out, err=err) == 0


# ----------------------------------------------------------------------------- real processes


def run_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_process_unreachable_server_exits_1_without_traceback() -> None:
    p = run_process("-m", "lmgui", "--server", "http://127.0.0.1:9", "ls")
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("lmgui: Cannot connect to LM Studio at http://127.0.0.1:9")


def test_process_bad_arguments_exit_2() -> None:
    p = run_process("-m", "lmgui", "load", "x", "--gpu", "2")
    assert p.returncode == 2 and "use max, off or a fraction from 0 to 1" in p.stderr


def test_process_ls_against_the_simulator(sim: Simulator, tmp_path: Path) -> None:
    p = run_process(
        "-m",
        "lmgui",
        "ls",
        env={"LMGUI_SERVER": sim.url, "XDG_STATE_HOME": str(tmp_path)},
    )
    assert p.returncode == 0, p.stderr
    assert "google/gemma-3-270m" in p.stdout


def test_lmgui_sim_command_serves_until_stopped(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmgui.sim", "--port", "0", "--seed", "7", "--vram-gb", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("LM Studio simulator listening on http://127.0.0.1:")
        url = first.split()[-1]
        models = httpx.get(url + "/api/v1/models", timeout=10).json()["models"]
        assert len(models) >= 12
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0


def test_lmgui_sim_reports_a_bad_catalog(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    p = run_process("-m", "lmgui.sim", "--port", "0", "--catalog", str(bad))
    assert p.returncode == 2 and "cannot read the catalog" in p.stderr


def test_an_unexpected_error_is_one_line_and_logged(
    lmgui: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("lmgui.cli.human_bytes", broken)
    r = cli(lmgui, "ls")
    assert r.code == 1 and r.err.count("\n") == 1
    assert "unexpected error (RuntimeError: a bug)" in r.err
    log = tmp_path / "log" / "lmgui.log"
    assert str(log) in r.err and "Traceback" in log.read_text()


def test_lmgui_sim_on_a_busy_port_says_so(sim: Simulator) -> None:
    p = run_process("-m", "lmgui.sim", "--port", str(sim.port))
    assert p.returncode == 1 and f"cannot listen on 127.0.0.1:{sim.port}" in p.stderr
    assert "Traceback" not in p.stderr
