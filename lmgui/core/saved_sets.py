"""Snapshots of a server's loaded set (the user's word; "saved sets" here, beside the poller's
``Snapshot``): save what is loaded, free the GPU, restore it later, and make room for a load.

Qt-free: the window, the tray and the command line all use it. A saved set is each instance's
identifier and load settings as the server reports them (its SDK channel's GPU offload and TTL,
else what lmgui's ledger knows). Restoring loads what is missing, in the saved order, and never
unloads anything. The store is one private JSON file per server, replaced whole on each change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmgui.api.client import LMStudioClient
from lmgui.api.errors import ApiError
from lmgui.api.records import Instance, LoadResult, Model
from lmgui.core.instances import InstanceInfo
from lmgui.core.paths import private_dir
from lmgui.core.requests import LoadRequest
from lmgui.core.vram import estimate_loaded

__all__ = [
    "FREEING",
    "MAKING_WAY",
    "FreeSummary",
    "RestoreSummary",
    "RoomCandidate",
    "RoomPlan",
    "SavedInstance",
    "SavedSet",
    "SavedSetStore",
    "check_name",
    "free",
    "plan_room",
    "restore",
    "room_candidates",
    "saved_set_of",
]

log = logging.getLogger(__name__)

FREEING = "before freeing"
"""The snapshot "Free the GPU" saves, and the tray's Restore brings back."""
MAKING_WAY = "before making way"
"""The snapshot lmgui saves before it steps aside for another program's VRAM."""
MAX_NAME = 100
MAX_SETS = 200
"""More snapshots than anyone keeps by hand; past it the oldest go (the file stays small)."""


def check_name(name: str) -> str:
    """The name, trimmed; ``ValueError`` with one sentence when it cannot be one."""
    name = name.strip()
    if not name:
        raise ValueError("Give the snapshot a name.")
    if len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"A snapshot name is at most {MAX_NAME} printable characters.")
    return name


@dataclass(frozen=True)
class SavedInstance:
    """One instance as it was: enough to load it again as it was."""

    model_key: str
    identifier: str
    context_length: int | None = None
    gpu_offload: float | None = None
    ttl_seconds: int | None = None
    parallel: int | None = None
    flash_attention: bool | None = None
    eval_batch_size: int | None = None
    num_experts: int | None = None
    offload_kv_cache_to_gpu: bool | None = None

    @classmethod
    def of(cls, inst: Instance, info: InstanceInfo | None = None) -> SavedInstance:
        """From the server's record, with lmgui's ledger where the server says nothing."""
        gpu = inst.gpu_offload
        if gpu is None and info is not None:
            gpu = info.gpu_fraction
        ttl = inst.ttl_seconds
        if ttl is None and info is not None:
            ttl = info.ttl_seconds
        return cls(
            model_key=inst.model_key,
            identifier=inst.id,
            context_length=inst.context_length,
            gpu_offload=gpu,
            ttl_seconds=round(ttl) if ttl is not None else None,
            parallel=inst.parallel,
            flash_attention=inst.flash_attention,
            eval_batch_size=inst.eval_batch_size,
            num_experts=inst.num_experts,
            offload_kv_cache_to_gpu=inst.offload_kv_cache_to_gpu,
        )

    def request(self) -> LoadRequest:
        gpu = self.gpu_offload
        return LoadRequest(
            self.model_key,
            context_length=self.context_length,
            gpu=None if gpu is None else "max" if gpu >= 1 else "off" if gpu <= 0 else gpu,
            ttl_seconds=self.ttl_seconds,
            identifier=self.identifier,
            flash_attention=self.flash_attention,
            eval_batch_size=self.eval_batch_size,
            num_experts=self.num_experts,
            offload_kv_cache_to_gpu=self.offload_kv_cache_to_gpu,
            parallel=self.parallel,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SavedInstance:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class SavedSet:
    name: str
    server: str
    saved_at: float
    instances: tuple[SavedInstance, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "instances": [asdict(i) for i in self.instances]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SavedSet:
        return cls(
            name=str(data["name"]),
            server=str(data.get("server", "")),
            saved_at=float(data.get("saved_at", 0.0)),
            instances=tuple(SavedInstance.from_dict(i) for i in data.get("instances", ())),
        )


def saved_set_of(
    name: str,
    server: str,
    models: Iterable[Model],
    infos: dict[str, InstanceInfo] | None = None,
    *,
    now: float | None = None,
) -> SavedSet:
    """Everything loaded in ``models`` as the snapshot ``name`` (in the server's order)."""
    infos = infos or {}
    return SavedSet(
        name=check_name(name),
        server=server,
        saved_at=time.time() if now is None else now,
        instances=tuple(SavedInstance.of(i, infos.get(i.id)) for m in models for i in m.instances),
    )


class SavedSetStore:
    """One server's snapshots, in a private JSON file (``state_dir/snapshots-<server>.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        """The file as last read, by (inode, size, mtime): the tray and the window ask after
        every poll, and a stat is far cheaper than reading and parsing it again. Another
        process replacing the file (``lmgui free``) changes the key."""

    def all(self) -> list[SavedSet]:
        """Every snapshot, newest first; an unreadable file is said in the log and read as none
        (it is kept: the next save moves it aside rather than losing it)."""
        return self._read()[0]

    def _read(self) -> tuple[list[SavedSet], bool]:
        """The snapshots, and whether the file was there but unreadable."""
        raw, unreadable = self._raw()
        try:
            sets = [SavedSet.from_dict(d) for d in raw.get("snapshots", ())]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("cannot read the snapshots in %s: %s", self.path, exc)
            return [], True
        return sorted(sets, key=lambda s: s.saved_at, reverse=True), unreadable

    def _raw(self) -> tuple[dict[str, Any], bool]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}, False
        except OSError as exc:
            log.warning("cannot read the snapshots in %s: %s", self.path, exc)
            return {}, True
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], False
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, False
        except (OSError, ValueError) as exc:
            log.warning("cannot read the snapshots in %s: %s", self.path, exc)
            return {}, True
        if not isinstance(raw, dict):
            log.warning("cannot read the snapshots in %s: not an object", self.path)
            return {}, True
        self._cache = (key, raw)
        return raw, False

    def pinned(self) -> set[str]:
        """The instances the user pinned: never unloaded to free the GPU or make room."""
        pins = self._raw()[0].get("pinned", [])
        return {p for p in pins if isinstance(p, str)} if isinstance(pins, list) else set()

    def set_pinned(self, identifier: str, pinned: bool) -> None:
        pins = self.pinned()
        pins = pins | {identifier} if pinned else pins - {identifier}
        self._write(self.all(), pins)

    def get(self, name: str) -> SavedSet | None:
        name = name.strip()
        return next((s for s in self.all() if s.name == name), None)

    def save(self, saved: SavedSet) -> None:
        """Keep ``saved``, replacing a snapshot of the same name. ``OSError`` when it cannot."""
        sets, unreadable = self._read()
        others = [s for s in sets if s.name != saved.name]
        if unreadable:
            # Never overwrite a file lmgui could not read: keep it beside, for the user.
            self.path.replace(self.path.with_suffix(f".unreadable-{int(time.time())}.json"))
        pins = self.pinned()
        self._write([saved, *others][:MAX_SETS], pins)

    def remove(self, name: str) -> bool:
        sets = self.all()
        kept = [s for s in sets if s.name != name.strip()]
        if len(kept) == len(sets):
            return False
        self._write(kept, self.pinned())
        return True

    def _write(self, sets: Sequence[SavedSet], pinned: set[str]) -> None:
        private_dir(self.path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".snapshots-")
        body = {"snapshots": [s.to_dict() for s in sets], "pinned": sorted(pinned)}
        self._cache = None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# ----------------------------------------------------------------------------- restore and free


@dataclass
class RestoreSummary:
    name: str
    loaded: list[tuple[SavedInstance, LoadResult]] = field(default_factory=list)
    already: list[SavedInstance] = field(default_factory=list)
    failed: list[tuple[SavedInstance, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def sentence(self) -> str:
        """One summary: "Restored "before freeing": loaded a, b; already loaded: c; failed: d
        (why)." """
        parts: list[str] = []
        if self.loaded:
            parts.append("loaded " + ", ".join(e.identifier for e, _ in self.loaded))
        if self.already:
            parts.append("already loaded: " + ", ".join(e.identifier for e in self.already))
        if self.failed:
            parts.append(
                "failed: " + "; ".join(f"{e.identifier} ({why})" for e, why in self.failed)
            )
        if not parts:
            return f'The snapshot "{self.name}" is empty: nothing to restore.'
        return f'Restored "{self.name}": ' + "; ".join(parts) + "."


async def restore(
    client: LMStudioClient,
    saved: SavedSet,
    *,
    on_step: Callable[[int, int, SavedInstance], None] | None = None,
) -> RestoreSummary:
    """Load what of ``saved`` is not loaded, in its order; never unloads anything.

    ``on_step(done, total, instance)`` hears each load as it starts. A failed load is put in the
    summary and the rest go on. ``ApiError`` only when the server cannot even be listed."""
    summary = RestoreSummary(saved.name)
    models = await client.list_models()
    loaded = {i.id for m in models for i in m.instances}
    todo: list[SavedInstance] = []
    for entry in saved.instances:
        (summary.already if entry.identifier in loaded else todo).append(entry)
    for n, entry in enumerate(todo):
        if on_step is not None:
            on_step(n, len(todo), entry)
        try:
            result = await client.load(entry.model_key, **entry.request().client_kwargs())
        except ApiError as exc:
            summary.failed.append((entry, _reason(exc)))
        else:
            summary.loaded.append((entry, result))
    return summary


@dataclass
class FreeSummary:
    saved: SavedSet
    unloaded: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def sentence(self) -> str:
        if not self.saved.instances:
            return "Nothing was loaded: the GPU is already free of LM Studio's models."
        text = (
            f"Unloaded {len(self.unloaded)} instance(s) and saved them as "
            f'"{self.saved.name}" to restore later.'
        )
        if self.failed:
            text += " Could not unload: " + "; ".join(f"{i} ({why})" for i, why in self.failed)
            text += "."
        return text


async def free(
    client: LMStudioClient,
    store: SavedSetStore,
    *,
    name: str = FREEING,
    infos: dict[str, InstanceInfo] | None = None,
    keep: Iterable[str] = (),
) -> FreeSummary:
    """Save what is loaded as ``name``, then unload it all (but ``keep``: pinned instances).

    Saving comes first and must succeed (``OSError``): nothing is unloaded that could not be
    restored. Whoever calls this has asked about busy instances already."""
    models = await client.list_models(with_truth=True)
    kept = set(keep)
    saved = saved_set_of(name, client.base_url, models, infos)
    saved = SavedSet(
        saved.name,
        saved.server,
        saved.saved_at,
        tuple(i for i in saved.instances if i.identifier not in kept),
    )
    summary = FreeSummary(saved)
    if not saved.instances:
        return summary
    store.save(saved)
    for entry in saved.instances:
        try:
            await client.unload(entry.identifier)
        except ApiError as exc:
            summary.failed.append((entry.identifier, _reason(exc)))
        else:
            summary.unloaded.append(entry.identifier)
    return summary


def _reason(exc: ApiError) -> str:
    return str(exc).rstrip(".")


# ----------------------------------------------------------------------------- make room


@dataclass(frozen=True)
class RoomCandidate:
    """A loaded instance as the planner sees it."""

    instance_id: str
    model_key: str
    vram_bytes: int
    last_used: float | None
    busy: bool = False
    pinned: bool = False


@dataclass(frozen=True)
class RoomPlan:
    needed_bytes: int
    free_bytes: int
    unload: tuple[RoomCandidate, ...] = ()

    @property
    def freed_bytes(self) -> int:
        return sum(c.vram_bytes for c in self.unload)

    @property
    def enough(self) -> bool:
        return self.free_bytes + self.freed_bytes >= self.needed_bytes


def plan_room(needed_bytes: int, free_bytes: int, candidates: Iterable[RoomCandidate]) -> RoomPlan:
    """The idle, unpinned instances to unload, least recently used first, until ``needed_bytes``
    fit; never a busy or pinned one. When even all of them are not enough, the plan says so
    (``enough`` False) and lists them all."""
    if needed_bytes <= free_bytes:
        return RoomPlan(needed_bytes, free_bytes)
    idle = sorted(
        (c for c in candidates if not c.busy and not c.pinned),
        # Never used since it loaded counts as least recently used.
        key=lambda c: (c.last_used is not None, c.last_used or 0.0, c.instance_id),
    )
    chosen: list[RoomCandidate] = []
    freed = 0
    for c in idle:
        if free_bytes + freed >= needed_bytes:
            break
        chosen.append(c)
        freed += c.vram_bytes
    return RoomPlan(needed_bytes, free_bytes, tuple(chosen))


def room_candidates(
    models: Iterable[Model],
    infos: dict[str, InstanceInfo] | None = None,
    pinned: Iterable[str] = (),
) -> list[RoomCandidate]:
    """Every loaded instance with its estimated VRAM (lmgui's one estimate, as the table shows)."""
    infos = infos or {}
    pins = set(pinned)
    out = []
    for m in models:
        for i in m.instances:
            info = infos.get(i.id)
            gpu = i.gpu_offload
            if gpu is None and info is not None:
                gpu = info.gpu_fraction
            out.append(
                RoomCandidate(
                    instance_id=i.id,
                    model_key=m.key,
                    vram_bytes=estimate_loaded(m, i, gpu) or 0,
                    last_used=i.last_used,
                    busy=i.busy,
                    pinned=i.id in pins,
                )
            )
    return out
