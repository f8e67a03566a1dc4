"""How sizes, counts and durations are written for people (CLI and GUI alike)."""

from __future__ import annotations

from lmgui.api.records import Model

__all__ = ["capabilities", "human_bytes", "human_count", "human_duration"]


def capabilities(m: Model) -> list[str]:
    """A model's capability marks: vision, tools, reasoning."""
    marks = [("vision", m.vision), ("tools", m.tool_use), ("reasoning", bool(m.reasoning_options))]
    return [name for name, on in marks if on]


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def human_count(n: int | None) -> str:
    """Context lengths as model cards write them: 128000 -> "128k", 32768 -> "32k",
    131072 -> "128k", 4000 -> "4k", 1500 -> "1500"."""
    if n is None:
        return "-"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)


def human_duration(seconds: float) -> str:
    """A countdown: "45 s", "12:05", "3 h 20 min"."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    h, rest = divmod(s, 3600)
    return f"{h} h {rest // 60} min" if rest >= 60 else f"{h} h"
