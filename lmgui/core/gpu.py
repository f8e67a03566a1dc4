"""Real GPU memory through NVML, when an NVIDIA GPU and nvidia-ml-py are present.

Optional: without the library, a driver or a GPU, ``read_gpus()`` returns None and lmgui shows
estimates only. Only meaningful when the LM Studio server runs on this machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuMemory", "NvmlReader"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuMemory:
    name: str
    used_bytes: int
    total_bytes: int


class NvmlReader:
    """Reads device memory; turns itself off for good after the first failure."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self.available = True
        try:
            import pynvml  # type: ignore[import-not-found,unused-ignore]

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as exc:  # no library, no driver, no GPU: estimates only
            log.info("NVML not available: %s", exc)
            self.available = False

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
                    )
                )
            return out
        except Exception as exc:
            log.info("NVML read failed, showing estimates only: %s", exc)
            self.available = False
            return None
