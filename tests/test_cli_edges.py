"""The command line at its edges: the right server for lms, tokens that arrive dirty, addresses
and arguments that cannot work, instances another client removed, and files kept private."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import httpx
import pytest

from lmgui.api import AuthError, LMStudioClient
from lmgui.cli import main
from lmgui.core.paths import AppPaths
from lmgui.sim import Simulator
from tests.conftest import SimFactory
from tests.hostile import HostileFactory
from tests.test_client import write_fake_lms

TOKEN = "sk-lm-Zq8Xb2Rt:Vw9Lp4Km7Nh3Jd6F"


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), paths=AppPaths.under(tmp_path / "home"), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LM_API_TOKEN", raising=False)
    monkeypatch.delenv("LMGUI_SERVER", raising=False)


def everything_written(root: Path, *texts: str) -> str:
    """All the text lmgui printed plus every file under ``root``, to grep for a secret."""
    found = list(texts)
    for path in root.rglob("*"):
        if path.is_file():
            found.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(found)


# ----------------------------------------------------------------------------- lms


def test_lms_is_told_which_server_to_load_into(
    rest_sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = rest_sim  # the REST path: no SDK channel
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_fake_lms(bin_dir, sim.url)
    monkeypatch.delenv("LMGUI_LMS")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, out, err = run(tmp_path, "load", "qwen/qwen3-4b", "--ttl", "300", "--server", sim.url)
    assert code == 0, err
    assert out.startswith("Loaded qwen/qwen3-4b as qwen/qwen3-4b in ")
    assert out.endswith(" s (through lms).\n")
    argv = json.loads((bin_dir / "argv.json").read_text())
    port = str(httpx.URL(sim.url).port)
    assert argv[:6] == ["load", "qwen/qwen3-4b", "--host", "127.0.0.1", "--port", port]
    assert "Warning" not in err


def test_lms_is_not_used_for_a_server_it_cannot_address(
    hostile: HostileFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_fake_lms(bin_dir, "http://127.0.0.1:9")
    monkeypatch.delenv("LMGUI_LMS")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    rejected = hostile(
        "json",
        status=400,
        body=b'{"error": {"message": "Unrecognized key(s) in object: \'ttl\'"}}',
    )
    # The address has a path, which lms --host/--port cannot express: REST without the TTL.
    code, _, err = run(tmp_path, "load", "a/b", "--ttl", "300", "--server", rejected.url + "/lm")
    assert not (bin_dir / "argv.json").exists(), "lms must not run for this server"
    assert code == 1  # the hostile server rejects the retried load as well
    assert "Unrecognized key" in err


# ----------------------------------------------------------------------------- tokens


def test_a_token_with_a_windows_line_end_is_used_without_it(
    make_sim: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = make_sim(token=TOKEN)
    code, out, err = run(tmp_path, "ls", "--server", sim.url, "--token", TOKEN + "\r\n")
    assert code == 0, err
    assert "qwen/qwen3-4b" in out
    monkeypatch.setenv("LM_API_TOKEN", f"  {TOKEN}\r\n")
    code, out, err = run(tmp_path, "ps", "--server", sim.url)
    assert code == 0, err
    assert TOKEN not in everything_written(tmp_path, out, err)


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (TOKEN[:12] + "\r\n" + TOKEN[12:], "a line break or control character"),
        (TOKEN[:12] + "\u00e9" + TOKEN[12:], "a non-ASCII character"),
    ],
)
def test_a_token_that_cannot_be_sent_is_refused_without_showing_it(
    sim: Simulator, tmp_path: Path, bad: str, what: str
) -> None:
    log = tmp_path / "chat.jsonl"
    code, out, err = run(
        tmp_path,
        "chat",
        "qwen/qwen3-4b",
        "hi",
        "--server",
        sim.url,
        "--token",
        bad,
        "--log",
        str(log),
    )
    assert code == 1 and out == ""
    assert err == (
        f"lmgui: The API token contains {what}, which cannot be sent to the server; copy the "
        "token again from LM Studio (Developer, Server settings) and paste it without extra "
        "text.\n"
    )
    written = everything_written(tmp_path, out, err)
    for piece in (bad, repr(bad), TOKEN[:12], TOKEN[12:], TOKEN.partition(":")[2]):
        assert piece not in written


async def test_redaction_covers_every_form_of_the_token(hostile: HostileFactory) -> None:
    echo = f"bad token {TOKEN!r} b'Bearer {TOKEN}\\r' half {TOKEN[:15]} and {TOKEN[15:]}"
    srv = hostile("json", status=401, body=json.dumps({"error": echo}).encode())
    async with LMStudioClient(srv.url, token=TOKEN, lms=None) as c:
        with pytest.raises(AuthError) as info:
            await c.list_models()
    text = str(info.value) + str(getattr(info.value, "server_message", ""))
    assert "rejected the API token" in text
    for piece in (TOKEN, TOKEN[:15], TOKEN[15:], TOKEN.partition(":")[2]):
        assert piece not in text


def test_a_password_in_the_server_address_is_never_echoed(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "ps", "--server", "http://admin:hunter2secret@127.0.0.1:9")
    assert code == 1
    assert "hunter2secret" not in out + err
    assert err.startswith("lmgui: Cannot connect to LM Studio at http://admin:***@127.0.0.1:9 (")


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ("ps", "--server", "http://127.0.0.1:99999"),
            "lmgui: The server address http://127.0.0.1:99999 is not a valid URL (the port must "
            "be a number from 1 to 65535).\n",
        ),
        (
            ("ps", "--server", "http://[::1"),
            "lmgui: The server address http://[::1 is not a valid URL (an IPv6 address needs its "
            "closing ]).\n",
        ),
        (
            ("ps", "--server", "ftp://127.0.0.1:1234"),
            "lmgui: The server address ftp://127.0.0.1:1234 must start with http:// or https://.\n",
        ),
        (("unload", ""), "lmgui: Name the instance to unload (lmgui ps lists them).\n"),
        (
            ("unload", "--model", " "),
            "lmgui: Name the model whose instances to unload (lmgui ls lists them).\n",
        ),
    ],
)
def test_arguments_that_cannot_work_are_one_sentence(
    tmp_path: Path, args: tuple[str, ...], sentence: str
) -> None:
    code, out, err = run(tmp_path, *args)
    assert (code, out, err) == (2, "", sentence)


def test_a_temperature_that_is_not_a_number_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        run(tmp_path, "chat", "m", "hi", "--temperature", "nan")
    assert info.value.code == 2
    assert "argument --temperature: 'nan' is not a finite number" in capsys.readouterr().err


def test_a_job_id_stays_one_path_segment(hostile: HostileFactory, tmp_path: Path) -> None:
    srv = hostile("json", body=b'{"status": "downloading", "job_id": "x"}')
    code, _, err = run(tmp_path, "download-status", "../../models", "--server", srv.url)
    assert code == 0, err
    assert srv.requests[0].path == "/api/v1/models/download/status/..%2F..%2Fmodels"


def test_unload_model_skips_instances_already_gone(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        assert run(tmp_path, "load", "google/gemma-3-270m", "--server", sim.url)[0] == 0
    real_unload = LMStudioClient.unload
    calls: list[str] = []

    async def unload_while_another_client_unloads(self: LMStudioClient, iid: str) -> None:
        if not calls:
            sim.state.unload("google/gemma-3-270m:2")  # another client, between list and unload
        calls.append(iid)
        await real_unload(self, iid)

    monkeypatch.setattr(LMStudioClient, "unload", unload_while_another_client_unloads)
    code, out, err = run(tmp_path, "unload", "--model", "google/gemma-3-270m", "--server", sim.url)
    assert code == 0, err
    assert len(calls) == 3
    assert out == "Unloaded google/gemma-3-270m.\nUnloaded google/gemma-3-270m:3.\n"
    assert not any(i.model_key == "google/gemma-3-270m" for i in sim.state.instances.values())


# ----------------------------------------------------------------------------- private files


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_log_files_and_state_are_private(sim: Simulator, tmp_path: Path) -> None:
    home = tmp_path / "home"
    paths = AppPaths.under(home)
    paths.state_dir.mkdir(parents=True)
    old = paths.state_dir / "last_responses.json"
    old.write_text("{}")
    old.chmod(0o644)
    paths.state_dir.chmod(0o755)
    log = tmp_path / "talk" / "chat.jsonl"
    log.parent.mkdir()
    code, _, err = run(
        tmp_path, "chat", "qwen/qwen3-4b", "hi", "--server", sim.url, "--log", str(log)
    )
    assert code == 0, err
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.state_dir.stat().st_mode) == 0o700
    for path in paths.state_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# ----------------------------------------------------------------------------- chat


def test_a_stream_that_ends_in_an_error_says_the_servers_words(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = make_sim(stream_error="close", stream_error_after=3)
    code, out, err = run(
        tmp_path, "chat", "google/gemma-3-270m", "hi", "--stream", "--server", sim.url
    )
    assert code == 1
    assert out, "what arrived before the error is printed"
    assert err.endswith(
        f"lmgui: LM Studio at {sim.url} reported an error and ended the answer: Model crashed "
        "while generating (simulated fault).\n"
    )


def test_one_bad_field_does_not_hide_a_loaded_instance(
    hostile: HostileFactory, tmp_path: Path
) -> None:
    body = {
        "models": [
            {
                "type": "llm",
                "key": "a/b",
                "display_name": "A B",
                "size_bytes": "four gigabytes",
                "max_context_length": -8192,
                "loaded_instances": [{"id": "a/b", "config": {"context_length": 4096}}],
            },
            {
                "type": "llm",
                "key": "c/d",
                "display_name": "C D",
                "size_bytes": 2_000_000_000,
                "loaded_instances": [{"id": "c/d", "config": {"context_length": 1e308}}],
            },
        ]
    }
    srv = hostile("json", body=json.dumps(body).encode())
    code, out, err = run(tmp_path, "ps", "--server", srv.url)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:3] == ["IDENTIFIER", "MODEL", "STATUS"]
    # No SDK channel here: status, GPU and TTL are not known ("-"); unreadable values are "?".
    assert rows[1] == ["a/b", "a/b", "-", "?", "4k", "-", "-", "-", "?"]
    assert rows[2] == ["c/d", "c/d", "-", "2.0", "GB", "?", "-", "-", "-", "?"]
    assert "2 instance(s), VRAM cannot be estimated." in err
    assert "-8192" not in out + err and "-8.2" not in out + err
    code, out, _ = run(tmp_path, "ls", "--server", srv.url)
    assert code == 0
    a_b = next(line.split() for line in out.splitlines() if line.startswith("a/b"))
    assert a_b[5:7] == ["?", "?"]  # SIZE, MAX CTX


def test_a_load_with_gpu_ttl_and_identifier_shows_in_ps_as_the_server_keeps_it(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    """The issue's test of done, from the command line: a server with a token, no lms."""
    token = "sk-lm-Zq8Xb2Rt:Vw9Lp4Km7Nh3Jd6FAbCd"
    sim = make_sim(token=token)
    base = ("--server", sim.url, "--token", token)
    code, out, err = run(
        tmp_path,
        "load",
        "qwen/qwen3-4b",
        "--gpu",
        "0.5",
        "--ttl",
        "300",
        "--identifier",
        "my-qwen",
        *base,
    )
    assert code == 0, err
    assert out.startswith("Loaded qwen/qwen3-4b as my-qwen in ") and "Warning" not in err
    code, out, err = run(tmp_path, "ps", "--json", *base)
    assert code == 0, err
    [inst] = json.loads(out)
    assert (inst["id"], inst["gpu_offload"], inst["ttl_seconds"], inst["ttl_source"]) == (
        "my-qwen",
        0.5,
        300,
        "server",
    )
    assert 0 < inst["ttl_remaining_seconds"] <= 300 and inst["status"] == "idle"
    assert inst["last_used"].endswith("+00:00")
    code, out, _ = run(tmp_path, "ps", *base)
    row = out.splitlines()[1].split()
    assert row[:3] == ["my-qwen", "qwen/qwen3-4b", "idle"] and "50" in row and "%" in row
    code, out, err = run(tmp_path, "unload", "my-qwen", *base)
    assert (code, out) == (0, "Unloaded my-qwen.\n"), err
