"""The NVML reader (core/gpu.py) with a fake nvidia-ml-py, never a GPU: memory per GPU as before,
the compute and graphics processes holding it, sizes the driver does not report, NVML failing
part-way; how a process gets its name; and the rule for which processes are LM Studio's."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lmgui.core import gpu as gpu_module
from lmgui.core.gpu import (
    GpuMemory,
    GpuProcess,
    NvmlReader,
    ProcessIdentity,
    describe_process,
    is_lm_studio,
)

GB = 10**9
NOT_AVAILABLE = 2**64 - 1


class NVMLError(Exception):
    """As nvidia-ml-py raises them."""


@dataclass
class FakeDevice:
    name: str | bytes
    used: int
    total: int
    compute: list[tuple[int, int | None]] = field(default_factory=list)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)


class FakeNvml:
    """The part of nvidia-ml-py's ``pynvml`` module lmgui calls, over scripted devices; a
    function named in ``failing`` raises NVMLError."""

    def __init__(self, *devices: FakeDevice) -> None:
        self.devices = list(devices)
        self.failing: set[str] = set()
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.failing:
            raise NVMLError(f"{name}: Not Supported")

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeDevice:
        self._call("nvmlDeviceGetHandleByIndex")
        return self.devices[i]

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice) -> Any:
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(
            used=handle.used, total=handle.total, free=handle.total - handle.used
        )

    def nvmlDeviceGetName(self, handle: FakeDevice) -> str | bytes:
        self._call("nvmlDeviceGetName")
        return handle.name

    @staticmethod
    def _procs(listed: list[tuple[int, int | None]]) -> list[Any]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in listed]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[Any]:
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return self._procs(handle.compute)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeDevice) -> list[Any]:
        self._call("nvmlDeviceGetGraphicsRunningProcesses")
        return self._procs(handle.graphics)


NAMES = {
    100: ProcessIdentity("node", "/home/u/.lmstudio/.internal/utils/node"),
    200: ProcessIdentity("blender", "/usr/bin/blender"),
    300: ProcessIdentity("Xorg", "/usr/lib/xorg/Xorg"),
}


class Names:
    """A ``describe`` that counts its calls."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, pid: int) -> ProcessIdentity:
        self.asked.append(pid)
        return NAMES.get(pid, ProcessIdentity(f"pid {pid}"))


def rtx(**procs: list[tuple[int, int | None]]) -> FakeDevice:
    return FakeDevice(b"NVIDIA GeForce RTX 4090", 12 * GB, 24 * GB, **procs)


# ----------------------------------------------------------------------------- memory per GPU


def test_reading_memory_is_as_before_with_each_gpus_index() -> None:
    nvml = FakeNvml(rtx(), FakeDevice("RTX 3060", 2 * GB, 12 * GB))
    reader = NvmlReader(nvml)
    assert reader.read() == [
        GpuMemory("NVIDIA GeForce RTX 4090", 12 * GB, 24 * GB, 0),
        GpuMemory("RTX 3060", 2 * GB, 12 * GB, 1),
    ]
    assert reader.read() is not None and reader.available
    (first, _) = reader.read() or []
    assert first.free_bytes == 12 * GB
    # Positional construction and equality as the window and the tray use them still hold.
    assert GpuMemory("RTX 4090", 1, 2) == GpuMemory("RTX 4090", 1, 2, 0)


def test_the_installed_module_is_imported_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeNvml(rtx())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    reader = NvmlReader()
    assert reader.available and fake.calls[0] == "nvmlInit"
    assert reader.read() == [GpuMemory("NVIDIA GeForce RTX 4090", 12 * GB, 24 * GB)]


def test_without_nvml_both_readings_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(rtx())
    nvml.failing.add("nvmlInit")  # the library is there, the driver is not
    reader = NvmlReader(nvml)
    assert not reader.available and reader.read() is None and reader.processes() is None
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: the import fails
    assert NvmlReader().processes() is None


def test_a_read_that_fails_turns_nvml_off_for_good() -> None:
    nvml = FakeNvml(rtx(compute=[(200, GB)]))
    reader = NvmlReader(nvml, describe=Names())
    nvml.failing.add("nvmlDeviceGetMemoryInfo")
    assert reader.read() is None
    nvml.failing.clear()
    assert reader.read() is None and reader.processes() is None


# ----------------------------------------------------------------------------- processes


def test_compute_and_graphics_processes_on_every_gpu() -> None:
    nvml = FakeNvml(
        rtx(compute=[(100, 6 * GB), (200, 3 * GB)], graphics=[(300, GB // 2), (200, 3 * GB)]),
        FakeDevice("RTX 3060", 2 * GB, 12 * GB, compute=[(100, 2 * GB)]),
    )
    reader = NvmlReader(nvml, describe=Names())
    lms = NAMES[100].path
    assert reader.processes() == [
        GpuProcess(100, "node", 6 * GB, 0, "compute", lms),
        GpuProcess(100, "node", 2 * GB, 1, "compute", lms),
        # In both lists: one entry, both kinds, the size once (not twice).
        GpuProcess(200, "blender", 3 * GB, 0, "compute+graphics", "/usr/bin/blender"),
        GpuProcess(300, "Xorg", GB // 2, 0, "graphics", "/usr/lib/xorg/Xorg"),
    ]


def test_a_process_whose_size_the_driver_does_not_report_is_seen_without_one() -> None:
    # Windows' WDDM driver model: nvidia-ml-py gives None; an older one the raw sentinel.
    nvml = FakeNvml(rtx(compute=[(200, None)], graphics=[(300, NOT_AVAILABLE), (400, None)]))
    nvml.devices[0].graphics.append((200, 3 * GB))  # one list knows its size: that is its size
    reader = NvmlReader(nvml, describe=Names())
    procs = {p.pid: p for p in reader.processes() or []}
    assert procs[200].vram_bytes == 3 * GB and procs[200].kind == "compute+graphics"
    assert procs[300].vram_bytes is None and procs[300].name == "Xorg"
    assert procs[400].vram_bytes is None and procs[400].name == "pid 400"


def test_a_list_the_driver_refuses_is_dropped_once_and_the_other_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = FakeNvml(rtx(compute=[(200, 3 * GB)], graphics=[(300, GB)]))
    nvml.failing.add("nvmlDeviceGetGraphicsRunningProcesses")  # a compute-only GPU
    reader = NvmlReader(nvml, describe=Names())
    with caplog.at_level(logging.INFO, logger="lmgui.core.gpu"):
        for _ in range(3):
            assert [p.pid for p in reader.processes() or []] == [200]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("NVML cannot list graphics processes")
    assert nvml.calls.count("nvmlDeviceGetGraphicsRunningProcesses") == 1  # never asked again
    assert reader.read() is not None


def test_when_no_process_list_can_be_read_processes_stop_but_memory_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = FakeNvml(rtx(compute=[(200, 3 * GB)]))
    reader = NvmlReader(nvml, describe=Names())
    assert reader.processes()
    nvml.failing |= {
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses",
    }
    with caplog.at_level(logging.INFO, logger="lmgui.core.gpu"):
        assert reader.processes() is None
        nvml.failing.clear()
        assert reader.processes() is None  # off for good: said once, not every poll
    assert sum("cannot list the processes" in r.getMessage() for r in caplog.records) == 1
    assert not reader.processes_available and reader.available
    assert reader.read() == [GpuMemory("NVIDIA GeForce RTX 4090", 12 * GB, 24 * GB)]


def test_nvml_failing_mid_listing_stops_the_process_readings() -> None:
    nvml = FakeNvml(rtx(compute=[(200, 3 * GB)]), rtx(compute=[(100, GB)]))
    reader = NvmlReader(nvml, describe=Names())
    nvml.failing.add("nvmlDeviceGetHandleByIndex")  # the driver went away (a GPU reset)
    assert reader.processes() is None and not reader.processes_available


def test_a_process_is_named_once_while_it_runs() -> None:
    names = Names()
    nvml = FakeNvml(rtx(compute=[(200, 3 * GB)]))
    reader = NvmlReader(nvml, describe=names)
    for _ in range(3):
        reader.processes()
    assert names.asked == [200]
    nvml.devices[0].compute = []
    reader.processes()
    nvml.devices[0].compute = [(200, GB)]  # a new process with the same pid: named anew
    reader.processes()
    assert names.asked == [200, 200]


# ----------------------------------------------------------------------------- process names


def test_this_process_has_a_name_and_a_path() -> None:
    me = describe_process(os.getpid())
    assert me.name and not me.name.startswith("pid ")
    if sys.platform.startswith("linux"):
        assert me.path and Path(me.path).name.startswith(("python", "pytest"))
        assert me.ancestry  # at least the shell or the runner that started the tests


def test_a_process_that_is_gone_is_named_by_its_pid() -> None:
    assert describe_process(2**31 - 2) == ProcessIdentity(f"pid {2**31 - 2}")


def test_without_psutil_linux_names_come_from_proc(tmp_path: Path) -> None:
    def proc(pid: int, comm: str, ppid: int, argv0: str | None) -> None:
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "comm").write_text(comm + "\n")
        # A name with ") " in it must not shift the fields read after it.
        (d / "stat").write_text(f"{pid} ({comm} x) y) S {ppid} 1 1 0")
        (d / "cmdline").write_bytes(b"" if argv0 is None else argv0.encode() + b"\0--type=x\0")

    # Another user's LM Studio worker: its exe link is not readable, its command line is.
    proc(10, "node", 9, "/home/ann/.lmstudio/.internal/utils/node")
    proc(9, "llmster", 1, None)
    proc(1, "systemd", 0, "/sbin/init")
    worker = gpu_module._describe_proc(tmp_path, 10)
    assert worker == ProcessIdentity(
        "node", "/home/ann/.lmstudio/.internal/utils/node", ("llmster", "systemd", "/sbin/init")
    )
    assert is_lm_studio(worker)
    assert gpu_module._describe_proc(tmp_path, 77) == ProcessIdentity("pid 77")


# ----------------------------------------------------------------------------- LM Studio's own


@pytest.mark.parametrize(
    ("name", "path", "ancestry"),
    [
        ("node", "/home/u/.lmstudio/.internal/utils/node", ()),  # the engine worker (0.3.2x+)
        ("node", "/home/u/.cache/lm-studio/.internal/utils/node", ()),  # older Linux releases
        ("lm-studio", "/tmp/.mount_LM-StuAbc123/lm-studio", ()),  # the AppImage
        ("LM Studio.exe", r"C:\Users\u\AppData\Local\Programs\LM Studio\LM Studio.exe", ()),
        ("LM Studio Helper (GPU)", None, ()),  # macOS Electron helpers
        ("llmster", "/home/u/.lmstudio/llmster/0.0.3/llmster", ()),  # the headless daemon
        ("lms", None, ()),
        ("lmstudio", None, ()),
        ("node", None, ("lm-studio",)),  # a worker whose path is hidden: its parent says
        ("pid 4242", None, ("llmster", "systemd")),
        ("python3", "/usr/bin/python3", ("LM Studio.exe",)),  # started by LM Studio
    ],
)
def test_lm_studio_s_own_processes(name: str, path: str | None, ancestry: tuple[str, ...]) -> None:
    assert is_lm_studio(GpuProcess(1, name, GB, path=path, ancestry=ancestry))


@pytest.mark.parametrize(
    ("name", "path", "ancestry"),
    [
        ("blender", "/usr/bin/blender", ("bash", "/usr/bin/bash")),
        ("node", "/usr/bin/node", ("code", "/usr/share/code/code")),  # someone else's node
        ("python3", "/home/u/ComfyUI/venv/bin/python3", ("bash",)),
        ("Xorg", "/usr/lib/xorg/Xorg", ()),
        ("lmsensors", None, ()),  # "lms" only as the whole name
        ("pid 77", None, ()),  # cannot be identified: another program's
        ("film-studio", "/opt/film-studio/bin/film-studio", ()),
        ("python3", "/home/u/lmstudio-notes/venv/bin/python3", ()),  # not LM Studio's folder
    ],
)
def test_other_programs(name: str, path: str | None, ancestry: tuple[str, ...]) -> None:
    assert not is_lm_studio(GpuProcess(1, name, GB, path=path, ancestry=ancestry))
