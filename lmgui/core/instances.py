"""Facts about a loaded instance that LM Studio's list does not carry."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InstanceInfo"]


@dataclass(frozen=True)
class InstanceInfo:
    gpu_fraction: float | None = None
    """GPU offload lmgui loaded it with (None: unknown, estimated as full offload)."""
    ttl_seconds: int | None = None
    idle_deadline: float | None = None
    """Wall-clock time (time.time()) at which it unloads if idle; None when unknown."""
    enforced_by_lmgui: bool = False
    """True when the server did not take the TTL and lmgui unloads it at the deadline."""
