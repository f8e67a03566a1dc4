"""The ``lmgui`` command line: ``ls``, ``ps``, ``load``, ``unload``, ``chat``, ``download``, and
``desktop-entry`` (the launcher in the desktop's menu).

It mirrors ``lms`` and the scripts people write around LM Studio, over the same client the GUI
uses. Errors exit non-zero with one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import functools
import json
import logging
import math
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

import msgspec

from lmgui import __version__
from lmgui.api import (
    DEFAULT_BASE_URL,
    ApiError,
    LMStudioClient,
    NotFoundError,
    with_retries,
)
from lmgui.api.auth import clean_token
from lmgui.api.client import Exchange, GpuSetting, check_base_url
from lmgui.api.errors import InvalidServerUrl
from lmgui.api.events import (
    ErrorEvent,
    MessageDelta,
    ModelLoadEnd,
    ModelLoadProgress,
    ReasoningDelta,
    ReasoningEnd,
)
from lmgui.api.records import Instance, Model
from lmgui.api.urls import display_url
from lmgui.core import saved_sets
from lmgui.core.event_store import EVENTS_FILE, EventFilter, EventStore
from lmgui.core.events import Event
from lmgui.core.format import (
    NOT_SAID,
    UNREADABLE,
    UNREADABLE_TIP,
    busy_unload_question,
    capabilities,
    field_text,
    gpu_offload_text,
    human_bytes,
    human_count,
    human_duration,
    local_time,
    status_text,
)
from lmgui.core.instances import InstanceInfo
from lmgui.core.launcher import DesktopEntry, lmgui_command, xdg_desktop
from lmgui.core.ledger import InstanceLedger
from lmgui.core.messages import (
    loaded_sentence,
    not_applied_sentence,
    quantization_label,
    still_loaded_sentence,
)
from lmgui.core.paths import AppPaths, open_private
from lmgui.core.profiles import SERVERS_FILE, ProfileStore
from lmgui.core.requests import LoadRequest
from lmgui.core.responses import LastResponses
from lmgui.core.saved_sets import (
    FREEING,
    SavedInstance,
    SavedSet,
    SavedSetStore,
    check_name,
    plan_room,
    room_candidates,
    saved_set_of,
)
from lmgui.core.secrets import TokenStore
from lmgui.core.vram import estimate_instance, estimate_loaded

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with what the user typed, found after parsing."""


# ----------------------------------------------------------------------------- formatting


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")


def emit_json(obj: Any, out: TextIO) -> None:
    out.write(json.dumps(msgspec.to_builtins(obj), indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- parser


def _gpu(text: str) -> GpuSetting:
    if text in ("max", "off"):
        return "max" if text == "max" else "off"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use max, off or a fraction from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("use max, off or a fraction from 0 to 1")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


MAX_DEMO_SERVERS = 8
"""``--servers`` takes 1 to this many (``lmgui.sim.demo.MAX_DEMO_SERVERS``: not imported, so the
commands never load the simulator)."""


def _server_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_DEMO_SERVERS:
        raise argparse.ArgumentTypeError(f"use 1 to {MAX_DEMO_SERVERS} simulated servers")
    return value


FLEET_COMMANDS = ("ls", "ps")
"""The commands that ask several servers at once (``--server`` repeated, or ``--all``)."""


def _common(server_dest: str) -> argparse.ArgumentParser:
    """The options every command takes. ``--server`` before the command and after it go to
    different ``server_dest``s so that ``main`` can join them (a subcommand's parser would
    otherwise replace what the main parser collected)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        dest=server_dest,
        action="append",
        metavar="SERVER",
        default=argparse.SUPPRESS,
        help="LM Studio server: a URL or a server profile's name; ls and ps take several "
        f"(default $LMGUI_SERVER or {DEFAULT_BASE_URL})",
    )
    common.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="API token (default $LM_API_TOKEN, then the keyring)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log HTTP calls"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common("server")
    p = argparse.ArgumentParser(
        prog="lmgui",
        description="Manage the models of an LM Studio 0.4+ server. Without a command, "
        "opens the window.",
        parents=[_common("server_before_command")],
    )
    p.add_argument("--version", action="version", version=f"lmgui {__version__}")
    gui = p.add_argument_group("the window (when no command is given)")
    gui.add_argument(
        "--demo",
        action="store_true",
        help="start the built-in LM Studio simulator on a free port and connect to it",
    )
    gui.add_argument(
        "--servers",
        type=_server_count,
        default=None,
        metavar="N",
        help="with --demo: how many simulated servers (1 to 8, default 1)",
    )
    gui.add_argument("--minimized", action="store_true", help="start without showing the window")
    gui.add_argument(
        "--screenshot",
        metavar="PATH",
        help="save the window as a PNG once the first refresh is shown, then exit",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    every = "ask every enabled server profile (servers.json in the config folder)"
    sub.add_parser("ls", parents=[common], help="list the server's models").add_argument(
        "--all", action="store_true", help=every
    )
    sub.add_parser("ps", parents=[common], help="list loaded instances").add_argument(
        "--all", action="store_true", help=every
    )

    load = sub.add_parser("load", parents=[common], help="load a model")
    load.add_argument("model", metavar="KEY", help="model key, e.g. qwen/qwen3-4b")
    load.add_argument("--context", "--context-length", dest="context", type=_positive)
    load.add_argument("--gpu", type=_gpu, help="GPU offload: max, off or a fraction 0..1")
    load.add_argument("--ttl", type=_positive, metavar="SECONDS", help="unload after idle time")
    load.add_argument("--identifier", metavar="NAME", help="instance id to use")
    load.add_argument("--parallel", type=_positive, help="parallel request slots")
    load.add_argument("--eval-batch-size", type=_positive)
    load.add_argument("--experts", type=_positive, help="experts to use (MoE models)")
    fa = load.add_mutually_exclusive_group()
    fa.add_argument("--flash-attention", dest="flash_attention", action="store_true", default=None)
    fa.add_argument("--no-flash-attention", dest="flash_attention", action="store_false")
    kv = load.add_mutually_exclusive_group()
    kv.add_argument("--kv-on-gpu", dest="kv_on_gpu", action="store_true", default=None)
    kv.add_argument("--no-kv-on-gpu", dest="kv_on_gpu", action="store_false")

    load.add_argument(
        "--make-room",
        action="store_true",
        help="when it would not fit in the server's VRAM, unload idle instances first "
        "(least recently used first; never a busy or pinned one)",
    )

    unload = sub.add_parser("unload", parents=[common], help="unload instances")
    target = unload.add_mutually_exclusive_group(required=True)
    target.add_argument("instance_id", nargs="?", metavar="INSTANCE_ID")
    target.add_argument("--model", metavar="KEY", help="every instance of this model")
    target.add_argument("--all", action="store_true", help="every instance of every model")

    chat = sub.add_parser("chat", parents=[common], help="send one chat turn")
    chat.add_argument("model", metavar="MODEL", help="model key or instance id")
    chat.add_argument("text", help="the message ('-' reads standard input)")
    thread = chat.add_mutually_exclusive_group()
    thread.add_argument("--previous-response-id", metavar="ID")
    thread.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help="continue from the last response for this server and model",
    )
    chat.add_argument("--system", metavar="PROMPT", help="system prompt")
    chat.add_argument("--temperature", type=_finite)
    chat.add_argument("--max-output-tokens", type=_positive)
    chat.add_argument("--reasoning", choices=["off", "low", "medium", "high", "on"])
    chat.add_argument("--no-store", action="store_true", help="do not keep the turn on the server")
    chat.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    chat.add_argument("--unload-after", action="store_true", help="unload the instance afterwards")
    chat.add_argument("--log", metavar="PATH", help="append requests and responses as JSON lines")

    snap = sub.add_parser(
        "snapshot",
        help="save the loaded set under a name, restore it later",
        description="A snapshot is every loaded instance with its identifier and load settings. "
        "Restoring loads what is missing, in order, and never unloads anything.",
    )
    snap_sub = snap.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        ("save", "save what is loaded now as NAME (replacing a snapshot of that name)"),
        ("restore", "load what of NAME is not loaded"),
        ("rm", "forget the snapshot NAME"),
    ):
        snap_sub.add_parser(action, parents=[common], help=text).add_argument(
            "name", metavar="NAME"
        )
    snap_sub.add_parser("ls", parents=[common], help="list the snapshots of this server")
    free = sub.add_parser(
        "free",
        parents=[common],
        help=f'save what is loaded as "{FREEING}" and unload it all (pinned instances stay)',
    )
    free.add_argument("--force", action="store_true", help="unload busy instances too")
    restore_cmd = sub.add_parser(
        "restore", parents=[common], help='load again what "free" unloaded (or a snapshot NAME)'
    )
    restore_cmd.add_argument("name", metavar="NAME", nargs="?", default=FREEING)

    ev = sub.add_parser(
        "events",
        parents=[common],
        help="the timeline: what was loaded and unloaded on the server, by whom and why",
        description="The events lmgui recorded while its window or tray ran, oldest first, one "
        "line each with who caused it (lmgui, another client, the server).",
    )
    ev.add_argument(
        "--since",
        type=_duration,
        default=24 * 3600.0,
        metavar="AGE",
        help="how far back: 90s, 30m, 2h, 7d (default 24h)",
    )
    ev.add_argument("--follow", action="store_true", help="keep printing events as they come")

    dl = sub.add_parser("download", parents=[common], help="download a model")
    dl.add_argument("model", help="catalog id or Hugging Face URL")
    dl.add_argument("--quantization")
    dl.add_argument("--no-wait", action="store_true", help="start it and print the job id")

    st = sub.add_parser("download-status", parents=[common], help="status of a download job")
    st.add_argument("job_id")

    de = sub.add_parser(
        "desktop-entry",
        help="add lmgui to the desktop's application menu, or take it away (Linux, BSD)",
        description="Write (install) or delete (remove) lmgui's launcher and icon under "
        "$XDG_DATA_HOME (default ~/.local/share). The launcher runs this installation's lmgui "
        "by its absolute path.",
    )
    de.add_argument("action", choices=["install", "remove"])
    return p


def desktop_entry(action: str, out: TextIO, err: TextIO) -> int:
    """``lmgui desktop-entry install|remove``: no server, no event loop."""
    if not xdg_desktop():
        err.write(
            "lmgui: desktop-entry writes a freedesktop.org launcher, which only Linux and BSD "
            "desktops read; start lmgui from its command here (Settings can start it on login).\n"
        )
        return EXIT_USAGE
    entry = DesktopEntry.default()
    try:
        if action == "install":
            command = lmgui_command()
            entry.install(command)
            out.write(
                f"Installed the launcher {entry.launcher} (it runs {shlex.join(command)}) "
                f"and its icon {entry.icon}.\n"
            )
        elif removed := entry.remove():
            out.write(f"Removed {' and '.join(map(str, removed))}.\n")
        else:
            out.write(f"No lmgui launcher was installed in {entry.data_home}.\n")
    except OSError as exc:
        err.write(f"lmgui: could not {action} the launcher: {str(exc).rstrip('.')}.\n")
        return EXIT_ERROR
    return EXIT_OK


# ----------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Target:
    """A server a command asks: its URL, and how output names it (the profile's name when the
    server came from a profile, else its URL without a password)."""

    url: str
    label: str

    def record(self) -> dict[str, str]:
        """The keys a JSON record gains when several servers are asked."""
        return {"server": self.label, "server_url": display_url(self.url)}


def _target(store: ProfileStore, value: str) -> Target:
    """``--server VALUE``: a profile's name (or URL), else a URL (``InvalidServerUrl``)."""
    profile = store.find(value)
    if profile is not None:
        return Target(check_base_url(profile.url), profile.name)
    url = check_base_url(value)
    return Target(url, display_url(url))


def _targets(args: argparse.Namespace, paths: AppPaths) -> tuple[list[Target], bool]:
    """The servers to ask, and whether the command asks them as a fleet (``--all``, or more
    than one server: the output then names the server of every line)."""
    store = ProfileStore(paths.config_dir / SERVERS_FILE)
    given = [v for v in getattr(args, "server", None) or () if v]
    every = bool(getattr(args, "all", False)) and args.command in FLEET_COMMANDS
    targets: list[Target] = []
    if every:
        enabled = store.enabled()
        if not enabled:
            raise UsageError(
                f"No server profile is switched on in {store.path}: add servers in the window's "
                "Settings, or name them with --server."
            )
        targets += [Target(check_base_url(p.url), p.name) for p in enabled]
    if not given and not every:
        given = [os.environ.get("LMGUI_SERVER") or DEFAULT_BASE_URL]
    targets += [_target(store, v) for v in given]
    unique: dict[str, Target] = {}
    for t in targets:
        unique.setdefault(t.url, t)  # a server named twice is asked once, by its first name
    return list(unique.values()), every or len(unique) > 1


def _window_server(value: str, paths: AppPaths | None) -> str:
    """The window's ``--server``: a profile's URL when it names one, else as given (the window
    checks the address itself)."""
    store = ProfileStore((paths or AppPaths.default()).config_dir / SERVERS_FILE)
    profile = store.find(value)
    return profile.url if profile is not None else value


# ----------------------------------------------------------------------------- commands

LS_HEADER = ["KEY", "TYPE", "PARAMS", "QUANT", "FORMAT", "SIZE", "MAX CTX", "CAPS", "LOADED"]
PS_HEADER = [
    "IDENTIFIER",
    "MODEL",
    "STATUS",
    "SIZE",
    "CONTEXT",
    "PARALLEL",
    "GPU",
    "TTL",
    "EST. VRAM",
]

PsData = tuple[list[tuple[Model, Instance]], dict[str, InstanceInfo]]
"""What ``ps`` reads of one server: each loaded instance with its model, and the ledger."""


def _ls_row(m: Model) -> list[str]:
    return [
        m.key,
        m.type,
        m.params_string or "-",
        quantization_label(m.quantization) or NOT_SAID,
        m.format or "-",
        field_text(m, "size_bytes", human_bytes),
        field_text(m, "max_context_length", human_count),
        ",".join(capabilities(m)) or "-",
        str(len(m.instances)) if m.instances else "-",
    ]


def _vram_text(count: int, total: int, unknown: int) -> str:
    if unknown == count:
        return "VRAM cannot be estimated"
    more = f", plus {unknown} lmgui cannot estimate" if unknown else ""
    return f"about {human_bytes(total)} of VRAM (estimated){more}"


class Cli:
    def __init__(self, args: argparse.Namespace, paths: AppPaths, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.paths = paths
        self.out = out
        self.err = err
        self.json = bool(getattr(args, "json", False))

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    async def ls(self, c: LMStudioClient) -> None:
        models = await self._ls_fetch(c)
        if self.json:
            emit_json(models, self.out)
            return
        table([LS_HEADER, *(_ls_row(m) for m in models)], self.out)

    @staticmethod
    async def _ls_fetch(c: LMStudioClient) -> list[Model]:
        return await with_retries(c.list_models)

    async def ps(self, c: LMStudioClient) -> None:
        loaded, ledger = await self._ps_fetch(c)
        now = time.time()
        if self.json:
            emit_json([self._ps_record(m, i, ledger.get(i.id), now) for m, i in loaded], self.out)
            return
        if not loaded:
            self.note("No models are loaded.")
            return
        rows, total, unknown = self._ps_rows(loaded, ledger, now)
        table([PS_HEADER, *rows], self.out)
        self.note(f"{len(loaded)} instance(s), {_vram_text(len(loaded), total, unknown)}.")
        if any(m.malformed or i.malformed for m, i in loaded):
            self.note(f"? {UNREADABLE_TIP}")

    async def _ps_fetch(self, c: LMStudioClient) -> PsData:
        models = await with_retries(functools.partial(c.list_models, with_truth=True))
        # What lmgui itself enforces (a TTL the server did not take), from the window's ledger.
        ledger = InstanceLedger(self.paths.ledger(c.base_url)).infos()
        return [(m, i) for m in models for i in m.instances], ledger

    @staticmethod
    def _ps_rows(
        loaded: Sequence[tuple[Model, Instance]], ledger: dict[str, InstanceInfo], now: float
    ) -> tuple[list[list[str]], int, int]:
        """The table's rows (no header), the estimated VRAM in bytes and how many instances lmgui
        could not estimate."""
        rows: list[list[str]] = []
        total = 0
        unknown = 0
        for m, i in loaded:
            est = estimate_loaded(m, i, i.gpu_offload)
            if est is None:
                vram = UNREADABLE  # an estimate from a value lmgui could not read would mislead
                unknown += 1
            else:
                total += est
                vram = human_bytes(est)
            ttl, source = _ttl(i, ledger.get(i.id), now)
            rows.append(
                [
                    i.id,
                    m.key,
                    status_text(i.status, i.queued),
                    field_text(m, "size_bytes", human_bytes),
                    field_text(i, "context_length", human_count),
                    field_text(i, "parallel", lambda n: NOT_SAID if n is None else str(n)),
                    gpu_offload_text(i.gpu_offload),
                    NOT_SAID
                    if ttl is None
                    else human_duration(ttl[1])
                    + " / "
                    + human_duration(ttl[0])
                    + (" (lmgui)" if source == "lmgui" else ""),
                    vram,
                ]
            )
        return rows, total, unknown

    # ------------------------------------------------------------------ several servers

    async def fleet(self, targets: Sequence[Target]) -> int:
        """``ls`` or ``ps`` on every target at once; the exit status (1 when any failed).

        Each server has its own client and token and is asked in parallel, so a slow or dead one
        costs its own time only; one that fails is named on stderr, the others are listed."""
        ps = self.args.command == "ps"

        async def one(t: Target) -> list[Model] | PsData:
            async with LMStudioClient(t.url, _resolve_token(self.args, t.url)) as c:
                return await (self._ps_fetch(c) if ps else self._ls_fetch(c))

        results = await asyncio.gather(*(one(t) for t in targets), return_exceptions=True)
        answered: list[tuple[Target, Any]] = []
        failed: list[tuple[Target, ApiError]] = []
        for t, result in zip(targets, results, strict=True):
            if isinstance(result, ApiError):
                failed.append((t, result))
            elif isinstance(result, BaseException):
                raise result  # a bug, or an interrupt: not one server's failure
            else:
                answered.append((t, result))
        if ps:
            self._fleet_ps(answered, bool(failed))
        else:
            self._fleet_ls(answered)
        for t, exc in failed:
            self.err.write(f"lmgui: {t.label}: {exc}\n")
        self.err.flush()
        return EXIT_ERROR if failed else EXIT_OK

    def _fleet_ls(self, answered: Sequence[tuple[Target, list[Model]]]) -> None:
        if self.json:
            emit_json(
                [
                    {**t.record(), **msgspec.to_builtins(m)}
                    for t, models in answered
                    for m in models
                ],
                self.out,
            )
            return
        rows = [["SERVER", *LS_HEADER]]
        rows += [[t.label, *_ls_row(m)] for t, models in answered for m in models]
        table(rows, self.out)

    def _fleet_ps(self, answered: Sequence[tuple[Target, PsData]], any_failed: bool) -> None:
        now = time.time()
        if self.json:
            emit_json(
                [
                    {**t.record(), **self._ps_record(m, i, ledger.get(i.id), now)}
                    for t, (loaded, ledger) in answered
                    for m, i in loaded
                ],
                self.out,
            )
            return
        rows = [["SERVER", *PS_HEADER]]
        count = total = unknown = 0
        malformed = False
        for t, (loaded, ledger) in answered:
            server_rows, server_total, server_unknown = self._ps_rows(loaded, ledger, now)
            rows += [[t.label, *row] for row in server_rows]
            count += len(loaded)
            total += server_total
            unknown += server_unknown
            malformed = malformed or any(m.malformed or i.malformed for m, i in loaded)
        if not count:
            self.note(
                "No models are loaded on the servers that answered."
                if any_failed
                else "No models are loaded."
            )
            return
        table(rows, self.out)
        servers = len(answered)
        self.note(
            f"{count} instance(s) on {servers} server(s), {_vram_text(count, total, unknown)}."
        )
        if malformed:
            self.note(f"? {UNREADABLE_TIP}")

    @staticmethod
    def _ps_record(m: Model, i: Instance, info: InstanceInfo | None, now: float) -> dict[str, Any]:
        ttl, source = _ttl(i, info, now)
        gpu: str | float | None = i.gpu_offload
        if gpu == 1.0:
            gpu = "max"
        elif gpu == 0.0:
            gpu = "off"
        return {
            "id": i.id,
            "instance_id": i.id,
            "model_key": m.key,
            "context_length": i.context_length,
            "parallel": i.parallel,
            "gpu_offload": gpu,
            "ttl_seconds": ttl[0] if ttl else None,
            "ttl_remaining_seconds": round(ttl[1], 1) if ttl else None,
            "ttl_source": source,
            "last_used": _iso(i.last_used),
            "status": i.status,
            "queued": i.queued,
            "config": i.config,
            "estimated_vram_bytes": estimate_loaded(m, i, i.gpu_offload),
        }

    async def load(self, c: LMStudioClient) -> None:
        a = self.args
        if not self.json:
            self.note(f"Loading {a.model}…")
        request = LoadRequest(
            a.model,
            context_length=a.context,
            gpu=a.gpu,
            ttl_seconds=a.ttl,
            identifier=a.identifier,
            flash_attention=a.flash_attention,
            eval_batch_size=a.eval_batch_size,
            num_experts=a.experts,
            offload_kv_cache_to_gpu=a.kv_on_gpu,
            parallel=a.parallel,
        )
        made_room = await self._make_room(c, request) if a.make_room else []
        result = await c.load(a.model, **request.client_kwargs())
        if self.json:
            body = msgspec.to_builtins(result)
            if a.make_room:
                body["unloaded_to_make_room"] = made_room
            emit_json(body, self.out)
        else:
            self.out.write(loaded_sentence(a.model, result) + "\n")
        if result.not_applied:
            self.note("Warning: " + not_applied_sentence(result))

    async def unload(self, c: LMStudioClient) -> None:
        a = self.args
        if a.instance_id is not None and not a.instance_id.strip():
            raise UsageError("Name the instance to unload (lmgui ps lists them).")
        if a.model is not None and not a.model.strip():
            raise UsageError("Name the model whose instances to unload (lmgui ls lists them).")
        if a.instance_id:
            await c.unload(a.instance_id)
            done = [a.instance_id]
        else:
            models = await with_retries(c.list_models)
            if a.model and not any(m.key == a.model for m in models):
                raise UsageError(f"The server has no model with the key {a.model!r}.")
            ids = [i.id for m in models if a.all or m.key == a.model for i in m.instances]
            done = []
            for iid in ids:
                try:
                    await c.unload(iid)
                except NotFoundError:
                    continue  # another client unloaded it first: not an error, go on
                done.append(iid)
            after = await with_retries(c.list_models)
            left = [i.id for m in after if a.all or m.key == a.model for i in m.instances]
            if left:
                raise ApiError(still_loaded_sentence(left))
        if self.json:
            emit_json({"unloaded": done}, self.out)
        elif done:
            for iid in done:
                self.out.write(f"Unloaded {iid}.\n")
        else:
            self.note("Nothing was loaded.")

    # ------------------------------------------------------------------ the timeline

    async def events(self, c: LMStudioClient) -> None:
        path = self.paths.data_dir / EVENTS_FILE
        if not path.exists():
            self.note("No events recorded yet: lmgui records them while its window or tray runs.")
            if not self.args.follow:
                return
        store = EventStore(path)  # following: the file lmgui will write to, made now
        try:
            f = EventFilter(server=c.base_url, since=time.time() - self.args.since)
            shown = list(reversed(store.events(f, limit=1_000_000)))
            if not shown and not self.args.follow:
                self.note(f"No events for {c.display_url} in that time.")
            self._print_events(shown, follow=self.args.follow)
            last = shown[-1].id if shown and shown[-1].id is not None else 0
            while self.args.follow:
                await asyncio.sleep(1.0)
                new = store.after(last, EventFilter(server=c.base_url))
                if new:
                    self._print_events(new, follow=True)
                    last = new[-1].id or last
        finally:
            store.close()

    def _print_events(self, events: Sequence[Event], *, follow: bool) -> None:
        if self.json and not follow:
            emit_json([dataclasses.asdict(e) for e in events], self.out)
            return
        for e in events:
            if self.json:  # one JSON object a line while following
                self.out.write(json.dumps(dataclasses.asdict(e), ensure_ascii=False) + "\n")
            else:
                self.out.write(e.line() + "\n")
        self.out.flush()

    # ------------------------------------------------------------------ snapshots

    def _store(self, c: LMStudioClient) -> SavedSetStore:
        return SavedSetStore(self.paths.snapshots(c.base_url))

    def _infos(self, c: LMStudioClient) -> dict[str, InstanceInfo]:
        return InstanceLedger(self.paths.ledger(c.base_url)).infos()

    async def snapshot(self, c: LMStudioClient) -> None:
        a = self.args
        store = self._store(c)
        if a.action == "ls":
            sets = store.all()
            if self.json:
                emit_json([s.to_dict() for s in sets], self.out)
            elif not sets:
                self.note("No snapshots yet: lmgui snapshot save NAME keeps what is loaded.")
            else:
                rows = [["NAME", "SAVED", "INSTANCES"]]
                for saved in sets:
                    ids = ", ".join(i.identifier for i in saved.instances) or "(none)"
                    rows.append([saved.name, local_time(saved.saved_at), ids])
                table(rows, self.out)
            return
        try:
            name = check_name(a.name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if a.action == "rm":
            if not store.remove(name):
                raise UsageError(f'There is no snapshot called "{name}" (lmgui snapshot ls).')
            self.out.write(f'Forgot the snapshot "{name}".\n')
        elif a.action == "save":
            models = await with_retries(functools.partial(c.list_models, with_truth=True))
            saved = saved_set_of(name, c.base_url, models, self._infos(c))
            self._keep(store, saved)
            if self.json:
                emit_json(saved.to_dict(), self.out)
            else:
                n = len(saved.instances)
                self.out.write(f'Saved {n} instance(s) as "{name}".\n')
        else:
            await self._restore(c, store, name)

    def _keep(self, store: SavedSetStore, saved: SavedSet) -> None:
        try:
            store.save(saved)
        except OSError as exc:
            raise UsageError(
                f"Cannot save the snapshot to {store.path}: {exc.strerror or exc}."
            ) from None

    async def restore(self, c: LMStudioClient) -> None:
        await self._restore(c, self._store(c), check_name(self.args.name))

    async def _restore(self, c: LMStudioClient, store: SavedSetStore, name: str) -> None:
        saved = store.get(name)
        if saved is None:
            raise UsageError(f'There is no snapshot called "{name}" (lmgui snapshot ls).')

        def step(n: int, total: int, entry: SavedInstance) -> None:
            if not self.json:
                self.note(f"Loading {entry.identifier} ({n + 1} of {total})…")

        summary = await saved_sets.restore(c, saved, on_step=step)
        if self.json:
            emit_json(
                {
                    "snapshot": name,
                    "loaded": [e.identifier for e, _ in summary.loaded],
                    "already_loaded": [e.identifier for e in summary.already],
                    "failed": [{"id": e.identifier, "reason": why} for e, why in summary.failed],
                },
                self.out,
            )
        else:
            self.out.write(summary.sentence() + "\n")
        if summary.failed:
            raise ApiError(f"{len(summary.failed)} of the snapshot's instances did not load.")

    async def free(self, c: LMStudioClient) -> None:
        store = self._store(c)
        pins = store.pinned()
        if not self.args.force:
            models = await with_retries(functools.partial(c.list_models, with_truth=True))
            busy = [i for m in models for i in m.instances if i.busy and i.id not in pins]
            question = busy_unload_question(busy)
            if question is not None:
                said = question.rpartition(";")[0]
                raise UsageError(f"{said}: lmgui free --force unloads busy instances too.")
        try:
            summary = await saved_sets.free(c, store, infos=self._infos(c), keep=pins)
        except OSError as exc:
            raise UsageError(
                f"Cannot save the loaded set to {store.path} ({exc.strerror or exc}); "
                "nothing was unloaded."
            ) from None
        if self.json:
            emit_json(
                {
                    "snapshot": summary.saved.name,
                    "unloaded": summary.unloaded,
                    "kept": sorted(pins),
                    "failed": [{"id": i, "reason": why} for i, why in summary.failed],
                },
                self.out,
            )
        else:
            self.out.write(summary.sentence() + "\n")
        if summary.failed:
            raise ApiError(still_loaded_sentence([i for i, _ in summary.failed]))

    async def _make_room(self, c: LMStudioClient, request: LoadRequest) -> list[str]:
        """Unload what the planner picks so ``request`` fits; the identifiers unloaded."""
        models = await with_retries(functools.partial(c.list_models, with_truth=True))
        model = next((m for m in models if m.key == request.model_key), None)
        if model is None:
            raise UsageError(f"The server has no model with the key {request.model_key!r}.")
        hardware = await c.server_hardware()
        if hardware is None:
            raise UsageError(
                "lmgui cannot tell how much VRAM the server has (it gives no hardware survey), "
                "so it cannot make room; load without --make-room."
            )
        kwargs = request.client_kwargs()
        del kwargs["ttl"], kwargs["identifier"]
        theirs = await c.estimate_load(
            request.model_key, embedding=model.type == "embedding", **kwargs
        )
        gpu = request.gpu_fraction
        needed = (
            theirs.vram_bytes
            if theirs is not None
            else estimate_instance(
                model,
                context_length=request.context_length,
                gpu_fraction=1.0 if gpu is None else gpu,
                kv_on_gpu=request.offload_kv_cache_to_gpu,
            ).vram_bytes
        )
        cands = room_candidates(models, self._infos(c), self._store(c).pinned())
        free_bytes = max(0, hardware.vram_bytes - sum(x.vram_bytes for x in cands))
        plan = plan_room(needed, free_bytes, cands)
        if not plan.enough:
            raise UsageError(
                f"{request.model_key} needs about {human_bytes(needed)} of VRAM and even "
                f"unloading every idle, unpinned instance frees only "
                f"{human_bytes(free_bytes + plan.freed_bytes)}; nothing was unloaded."
            )
        done = []
        for cand in plan.unload:
            await c.unload(cand.instance_id)
            done.append(cand.instance_id)
        if done and not self.json:
            self.note(
                f"Unloaded {', '.join(done)} to make room (about {human_bytes(plan.freed_bytes)})."
            )
        return done

    async def chat(self, c: LMStudioClient) -> None:
        a = self.args
        text = sys.stdin.read() if a.text == "-" else a.text
        memory = LastResponses(self.paths.state_dir / "last_responses.json")
        previous = a.previous_response_id
        if a.continue_:
            previous = memory.get(c.base_url, a.model)
            if previous is None:
                self.note("No earlier response to continue for this model; starting a new thread.")
        options: dict[str, Any] = {
            "previous_response_id": previous,
            "system_prompt": a.system,
            "temperature": a.temperature,
            "max_output_tokens": a.max_output_tokens,
            "reasoning": a.reasoning,
            "store": not a.no_store,
        }
        error: str | None = None
        if a.stream:
            stream = c.chat_stream(a.model, text, **options)
            async with stream:
                async for ev in stream:
                    if self.json:
                        continue
                    if isinstance(ev, MessageDelta):
                        self.out.write(ev.content)
                        self.out.flush()
                    elif isinstance(ev, ReasoningDelta):
                        self.err.write(ev.content)
                        self.err.flush()
                    elif isinstance(ev, (ReasoningEnd, ModelLoadEnd)):
                        self.err.write("\n")
                    elif isinstance(ev, ModelLoadProgress):
                        self.err.write(f"\rLoading model… {ev.progress:.0%}")
                        self.err.flush()
                    elif isinstance(ev, ErrorEvent):
                        error = ev.message
            result = stream.result
            assert result is not None
            if not self.json:
                self.out.write("\n")
        else:
            result = await c.chat(a.model, text, **options)
            if not self.json:
                if result.reasoning:
                    self.note(result.reasoning.strip())
                self.out.write(result.text + "\n")
        if result.response_id:
            memory.set(c.base_url, a.model, result.response_id)
        if self.json:
            emit_json(
                {
                    "response_id": result.response_id,
                    "previous_response_id": previous,
                    "model_instance_id": result.model_instance_id,
                    "text": result.text,
                    "reasoning": result.reasoning,
                    "output": result.output,
                    "stats": result.stats,
                    "error": error,
                },
                self.out,
            )
        else:
            s = result.stats
            bits = [f"{s.total_output_tokens} tokens" if s.total_output_tokens is not None else ""]
            if s.tokens_per_second:
                bits.append(f"{s.tokens_per_second:.1f} tok/s")
            if s.time_to_first_token_seconds is not None:
                bits.append(f"first token {s.time_to_first_token_seconds:.2f} s")
            if s.model_load_time_seconds is not None:
                bits.append(f"model load {s.model_load_time_seconds:.1f} s")
            bits.append(f"response {result.response_id}" if result.response_id else "not stored")
            self.note("[" + ", ".join(b for b in bits if b) + "]")
        if a.unload_after and result.model_instance_id:
            await c.unload(result.model_instance_id)
            if not self.json:
                self.note(f"Unloaded {result.model_instance_id}.")
        if error is not None:
            raise ApiError(f"The server reported an error during the answer: {error}")

    async def download(self, c: LMStudioClient) -> None:
        a = self.args
        job = await c.download(a.model, a.quantization)
        job_id = job.job_id
        waited = False
        while job_id and not job.finished and not a.no_wait:
            if not self.json:
                total = job.total_size_bytes or 0
                done = job.downloaded_bytes or 0
                pct = f" {done / total:.0%}" if total else ""
                self.err.write(f"\rDownloading {a.model}…{pct} of {human_bytes(total)}")
                self.err.flush()
            await asyncio.sleep(1.0)
            job = await with_retries(functools.partial(c.download_status, job_id))
            waited = True
        if waited and not self.json:
            self.err.write("\n")
        if self.json:
            emit_json(job, self.out)
        elif job.status == "already_downloaded":
            self.out.write(f"{a.model} is already downloaded.\n")
        elif job.status == "failed":
            raise ApiError(f"The download of {a.model} failed.")
        elif job.finished:
            self.out.write(f"Downloaded {a.model}.\n")
        else:
            self.out.write(f"Download of {a.model} started: job {job.job_id} ({job.status}).\n")

    async def download_status(self, c: LMStudioClient) -> None:
        job_id: str = self.args.job_id
        job = await with_retries(functools.partial(c.download_status, job_id))
        if self.json:
            emit_json(job, self.out)
        else:
            total, done = job.total_size_bytes, job.downloaded_bytes
            self.out.write(
                f"{job.job_id}: {job.status}, {human_bytes(done)} of {human_bytes(total)}\n"
            )


def _ttl(
    inst: Instance, info: InstanceInfo | None, now: float
) -> tuple[tuple[float, float] | None, str | None]:
    """((total, left) seconds, "server" or "lmgui"), the server's TTL winning; (None, None)."""
    left = inst.ttl_left(now)
    if inst.ttl_seconds is not None and left is not None:
        return (inst.ttl_seconds, left), "server"
    if info is not None and info.enforced_by_lmgui and info.ttl_seconds and info.idle_deadline:
        return (float(info.ttl_seconds), max(0.0, info.idle_deadline - now)), "lmgui"
    return None, None


def _duration(text: str) -> float:
    """ "90s", "30m", "2h", "7d" (a bare number is seconds) as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: give a number with s, m, h or d (2h, 30m)."
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("Give an age above zero (2h, 30m).")
    return value * units[unit]


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat(timespec="seconds")


def _resolve_token(args: argparse.Namespace, server: str) -> str | None:
    token: str | None = getattr(args, "token", None) or os.environ.get("LM_API_TOKEN") or None
    if token is None or not token.strip():
        token = TokenStore().get(server)
    # A token file saved on Windows, or $(cat file), ends in a line break: never part of it.
    return clean_token(token)


def _exchange_logger(path: str) -> tuple[Callable[[Exchange], None], IO[str]]:
    try:
        handle = open_private(Path(path))
    except OSError as exc:
        raise UsageError(f"Cannot open the log file {path}: {exc.strerror}.") from None

    def write(exchange: Exchange) -> None:
        handle.write(json.dumps(exchange, ensure_ascii=False) + "\n")
        handle.flush()

    return write, handle


async def _run(args: argparse.Namespace, paths: AppPaths, out: TextIO, err: TextIO) -> int:
    targets, fleet = _targets(args, paths)
    if fleet:
        if args.command not in FLEET_COMMANDS:
            raise UsageError(
                f"lmgui {args.command} works on one server at a time: give --server once "
                "(only ls and ps ask several)."
            )
        return await Cli(args, paths, out, err).fleet(targets)
    server = targets[0].url
    token = _resolve_token(args, server)
    log_handle: IO[str] | None = None
    on_exchange = None
    if args.command == "chat" and args.log:
        on_exchange, log_handle = _exchange_logger(args.log)
    cli = Cli(args, paths, out, err)
    handler = getattr(cli, args.command.replace("-", "_"))
    try:
        async with LMStudioClient(server, token, on_exchange=on_exchange) as client:
            await handler(client)
    finally:
        if log_handle is not None:
            log_handle.close()
    return EXIT_OK


def _log_crash(paths: AppPaths) -> Path:
    """Append the current exception's traceback to lmgui's log file; return the file's path."""
    path = paths.log_dir / "lmgui.log"
    try:
        with open_private(path) as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} lmgui {__version__}\n")
            f.write(traceback.format_exc())
    except OSError:
        pass
    return path


def main(
    argv: Sequence[str] | None = None,
    *,
    paths: AppPaths | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    # --server before the command and after it, in the order given.
    args.server = [
        *getattr(args, "server_before_command", ()),
        *getattr(args, "server", ()),
    ]
    if hasattr(args, "server_before_command"):
        del args.server_before_command
    if args.servers is not None and not args.demo:
        err.write("lmgui: --servers starts simulated servers, so it needs --demo.\n")
        return EXIT_USAGE
    args.servers = args.servers or 1
    if args.command is None:
        if len(args.server) > 1:
            err.write("lmgui: The window shows one server at a time: give --server once.\n")
            return EXIT_USAGE
        args.server = _window_server(args.server[0], paths) if args.server else None
        from lmgui.app import run_gui  # Qt only for the window, never for the commands

        return run_gui(args, paths)
    if args.command == "desktop-entry":
        return desktop_entry(args.action, out, err)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="lmgui: %(message)s",
        stream=err,
    )
    if not getattr(args, "verbose", False):
        logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()
    paths = paths or AppPaths.default()
    paths.tighten()
    try:
        code = asyncio.run(_run(args, paths, out, err))
    except (UsageError, InvalidServerUrl) as exc:
        err.write(f"lmgui: {exc}\n")
        return EXIT_USAGE
    except ApiError as exc:
        err.write(f"lmgui: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("lmgui: interrupted.\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line for the user, the traceback in the log file
        where = _log_crash(paths)
        err.write(
            f"lmgui: unexpected error ({type(exc).__name__}: {exc}); details are in {where}.\n"
        )
        return EXIT_ERROR
    logging.getLogger(__name__).info("done in %.2f s", time.monotonic() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
