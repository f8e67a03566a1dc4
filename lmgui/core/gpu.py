"""Real GPU memory, and which processes hold it, for a server on this machine.

A reader is anything with ``read()`` (memory per GPU) and ``processes()`` (who holds it): the
``GpuReader`` protocol. ``NvmlReader`` is the one for NVIDIA (nvidia-ml-py, the optional extra
``nvidia``); other vendors (ROCm SMI, Apple) can be added beside it (docs/architecture.md says
what each would need). Without the library, a driver or a GPU, a reader returns None and lmgui
shows estimates only. Only meaningful when the LM Studio server runs on this machine.

``is_lm_studio`` decides which processes are LM Studio's own (its app, its headless daemon and
its engine workers); every other process holding VRAM is another program's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "GpuKind",
    "GpuMemory",
    "GpuProcess",
    "GpuReader",
    "NvmlReader",
    "ProcessIdentity",
    "describe_process",
    "is_lm_studio",
]

log = logging.getLogger(__name__)

GpuKind = Literal["compute", "graphics", "compute+graphics"]
"""How a process uses the GPU, as the driver lists it (CUDA/compute contexts, graphics
contexts, or both)."""


@dataclass(frozen=True)
class GpuMemory:
    name: str
    used_bytes: int
    total_bytes: int
    index: int = 0
    """The GPU's index as the driver numbers it (what ``GpuProcess.gpu_index`` refers to)."""

    @property
    def free_bytes(self) -> int:
        return max(0, self.total_bytes - self.used_bytes)


@dataclass(frozen=True)
class ProcessIdentity:
    """What lmgui could learn of a process to tell whose it is."""

    name: str
    """Its executable's name ("blender", "LM Studio.exe"), or "pid N" when it cannot be read."""
    path: str | None = None
    """Its executable's path (or, where that is hidden, the first word of its command line)."""
    ancestry: tuple[str, ...] = ()
    """The names and paths of its parent processes, the closest first."""


@dataclass(frozen=True)
class GpuProcess:
    """One process's use of one GPU."""

    pid: int
    name: str
    vram_bytes: int | None
    """None when the driver does not say (NVML on Windows with the WDDM driver model): the
    process is seen, its size is unknown."""
    gpu_index: int = 0
    kind: GpuKind = "compute"
    path: str | None = None
    ancestry: tuple[str, ...] = field(default=())


class GpuReader(Protocol):
    """A vendor's reader. Both calls are cheap enough to run once per poll, never raise, and
    return None when the figures cannot be had (then or from now on)."""

    def read(self) -> list[GpuMemory] | None:
        """Used and total memory of each GPU."""
        ...

    def processes(self) -> list[GpuProcess] | None:
        """Every process holding memory on a GPU: one entry per process and GPU."""
        ...


# ----------------------------------------------------------------------------- LM Studio's own

_LMS_NAME = re.compile(r"(?<![a-z])(lm[ -]?studio|llmster)", re.IGNORECASE)
"""A base name that is LM Studio's: "LM Studio", "LM Studio Helper (GPU)", "lm-studio" (Linux,
the AppImage's binary), "lmstudio", and "llmster" (its headless daemon)."""
_LMS_EXACT = {"lms"}
"""Its command line tool, by exact base name only (a substring would catch unrelated names)."""
_LMS_DIRS = {".lmstudio", "lm-studio", "lm studio", "lm studio.app"}
"""A folder that is LM Studio's: ``~/.lmstudio`` (its home: the daemon, lms, the engines and
their ``.internal/utils/node`` worker), ``~/.cache/lm-studio`` (older Linux releases put the
worker there), ``...\\Programs\\LM Studio`` (Windows), ``/Applications/LM Studio.app``."""
_EXE_SUFFIX = re.compile(r"\.(exe|app)$", re.IGNORECASE)


def _parts(text: str) -> list[str]:
    return [p for p in re.split(r"[\\/]", text) if p]


def _is_lm_studio_text(text: str) -> bool:
    parts = _parts(text)
    if not parts:
        return False
    base = _EXE_SUFFIX.sub("", parts[-1])
    if _LMS_NAME.search(base) or base.lower() in _LMS_EXACT:
        return True
    return any(p.lower() in _LMS_DIRS for p in parts[:-1])


def is_lm_studio(process: GpuProcess | ProcessIdentity) -> bool:
    """Whether a process is LM Studio's own: its name, its executable's path, or one of its
    parent processes names LM Studio.

    LM Studio runs its llama.cpp and MLX engines in worker processes that are a plain ``node``
    (Linux: ``~/.lmstudio/.internal/utils/node``, formerly ``~/.cache/lm-studio/...``) or an
    Electron utility process ("LM Studio.exe --type=utility"), started by the app or by its
    headless daemon ``llmster``: the worker's path, or else its parent, gives it away. A
    process lmgui cannot identify at all ("pid N", no path) counts as another program's.
    """
    texts = [process.name, *([process.path] if process.path else []), *process.ancestry]
    return any(_is_lm_studio_text(t) for t in texts)


# ----------------------------------------------------------------------------- process names

MAX_ANCESTRY = 8
"""Parents looked at, the closest first: LM Studio's workers are two or three levels down."""


def describe_process(pid: int) -> ProcessIdentity:
    """Name, path and parents of ``pid``: through psutil where installed (every OS), else
    ``/proc`` (Linux), else only "pid N". Never raises."""
    psutil = _psutil()
    if psutil is not None:
        with contextlib.suppress(Exception):  # gone, or not ours to look at
            return _describe_psutil(psutil, pid)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            return _describe_proc(Path("/proc"), pid)
    return ProcessIdentity(f"pid {pid}")


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def _describe_psutil(psutil: Any, pid: int) -> ProcessIdentity:
    proc = psutil.Process(pid)
    ancestry: list[str] = []
    for parent in proc.parents()[:MAX_ANCESTRY]:
        with contextlib.suppress(Exception):
            ancestry.append(parent.name())
        path = _psutil_path(parent)
        if path:
            ancestry.append(path)
    return ProcessIdentity(proc.name() or f"pid {pid}", _psutil_path(proc), tuple(ancestry))


def _psutil_path(proc: Any) -> str | None:
    with contextlib.suppress(Exception):
        exe = proc.exe()
        if exe:
            return str(exe)
    with contextlib.suppress(Exception):  # another user's process: its command line is readable
        cmd = proc.cmdline()
        if cmd:
            return str(cmd[0])
    return None


def _describe_proc(proc: Path, pid: int) -> ProcessIdentity:
    """From ``/proc``: ``comm`` and ``cmdline`` are readable for any user's process, ``exe``
    only for one's own."""
    name, path, ppid = _proc_entry(proc, pid)
    if name is None:
        return ProcessIdentity(f"pid {pid}")
    ancestry: list[str] = []
    seen = {pid}
    while ppid and ppid not in seen and len(seen) <= MAX_ANCESTRY:
        seen.add(ppid)
        pname, ppath, ppid = _proc_entry(proc, ppid)
        ancestry += [t for t in (pname, ppath) if t]
    return ProcessIdentity(name, path, tuple(ancestry))


def _proc_entry(proc: Path, pid: int) -> tuple[str | None, str | None, int]:
    base = proc / str(pid)
    try:
        name = (base / "comm").read_text(encoding="utf-8", errors="replace").strip()
        stat = (base / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None, 0
    # The name in stat is in parentheses and may itself hold ")": the fields follow the last.
    fields = stat.rpartition(")")[2].split()
    ppid = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    path: str | None = None
    with contextlib.suppress(OSError):
        path = os.readlink(base / "exe")
    if not path:
        with contextlib.suppress(OSError):
            raw = (base / "cmdline").read_bytes().split(b"\0", 1)[0]
            path = raw.decode("utf-8", "replace") or None
    return name or None, path, ppid


# ----------------------------------------------------------------------------- NVML

_NOT_AVAILABLE = 2**64 - 1
"""NVML's "not available" for a process's memory (nvidia-ml-py already turns it into None)."""
_KINDS: tuple[tuple[Literal["compute", "graphics"], str], ...] = (
    ("compute", "nvmlDeviceGetComputeRunningProcesses"),
    ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
)


class NvmlReader:
    """Reads device memory and the processes holding it through NVML.

    ``read()`` turns itself off for good after its first failure (estimates only from then on).
    ``processes()`` is separate: a kind of process list the driver refuses (graphics processes
    on a compute-only GPU) is dropped with one line in the log, the other kind goes on; when
    none is left, or listing fails otherwise, it returns None from then on, and ``read()`` is
    untouched.

    ``nvml``: the nvidia-ml-py module to use (tests pass a fake; None imports ``pynvml``).
    ``describe``: how a pid becomes a name, a path and parents (``describe_process``).
    """

    def __init__(
        self,
        nvml: Any = None,
        *,
        describe: Callable[[int], ProcessIdentity] = describe_process,
    ) -> None:
        self._nvml: Any = None
        self._describe = describe
        self._names: dict[int, ProcessIdentity] = {}
        self._kinds = [kind for kind, _ in _KINDS]
        self.available = True
        self.processes_available = True
        try:
            if nvml is None:
                import pynvml  # type: ignore[import-not-found,unused-ignore]

                nvml = pynvml
            nvml.nvmlInit()
            self._nvml = nvml
        except Exception as exc:  # no library, no driver, no GPU: estimates only
            log.info("NVML not available: %s", exc)
            self.available = False
            self.processes_available = False

    def read(self) -> list[GpuMemory] | None:
        if not self.available:
            return None
        nv = self._nvml
        try:
            out = []
            for i in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                mem = nv.nvmlDeviceGetMemoryInfo(handle)
                name = nv.nvmlDeviceGetName(handle)
                out.append(
                    GpuMemory(
                        name.decode() if isinstance(name, bytes) else str(name),
                        int(mem.used),
                        int(mem.total),
                        i,
                    )
                )
            return out
        except Exception as exc:
            log.info("NVML read failed, showing estimates only: %s", exc)
            self.available = False
            return None

    def processes(self) -> list[GpuProcess] | None:
        """Compute and graphics processes on every GPU, one entry per process and GPU (a
        process in both lists is one entry of kind "compute+graphics", with the larger size)."""
        if not (self.available and self.processes_available):
            return None
        nv = self._nvml
        found: dict[tuple[int, int], tuple[set[str], int | None]] = {}
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                for kind, call in _KINDS:
                    if kind not in self._kinds:
                        continue
                    try:
                        listed = getattr(nv, call)(handle)
                    except Exception as exc:
                        log.info("NVML cannot list %s processes, reading the rest: %s", kind, exc)
                        self._kinds.remove(kind)
                        continue
                    for p in listed:
                        key = (int(p.pid), i)
                        size = _size(getattr(p, "usedGpuMemory", None))
                        kinds, known = found.get(key, (set(), None))
                        kinds.add(kind)
                        # A size one list gives and the other does not is still a size.
                        if size is not None:
                            known = size if known is None else max(known, size)
                        found[key] = (kinds, known)
            if not self._kinds:
                raise RuntimeError("neither compute nor graphics processes can be listed")
        except Exception as exc:
            log.info("NVML cannot list the processes on the GPU: %s", exc)
            self.processes_available = False
            return None
        return self._processes(found)

    def _processes(
        self, found: dict[tuple[int, int], tuple[set[str], int | None]]
    ) -> list[GpuProcess]:
        pids = {pid for pid, _ in found}
        for gone in set(self._names) - pids:
            del self._names[gone]
        out = []
        for (pid, index), (kinds, known) in sorted(found.items()):
            ident = self._names.get(pid)
            if ident is None:
                ident = self._names[pid] = self._describe(pid)
            kind: GpuKind = "compute+graphics" if len(kinds) == 2 else _one_kind(kinds)
            out.append(
                GpuProcess(
                    pid=pid,
                    name=ident.name,
                    vram_bytes=known,
                    gpu_index=index,
                    kind=kind,
                    path=ident.path,
                    ancestry=ident.ancestry,
                )
            )
        return out


def _one_kind(kinds: Iterable[str]) -> GpuKind:
    return "graphics" if "graphics" in kinds else "compute"


def _size(value: Any) -> int | None:
    if value is None:
        return None
    try:
        size = int(value)
    except (TypeError, ValueError):
        return None
    return None if size < 0 or size >= _NOT_AVAILABLE else size
