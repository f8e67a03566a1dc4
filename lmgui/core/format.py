"""How sizes, counts and durations are written for people (CLI and GUI alike)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmgui.api.records import Instance, Model

__all__ = [
    "NOT_SAID",
    "UNREADABLE",
    "UNREADABLE_TIP",
    "capabilities",
    "field_text",
    "human_bytes",
    "human_count",
    "human_duration",
]

NOT_SAID = "-"
"""Written for a value the server did not send."""
UNREADABLE = "?"
"""Written for a value the server sent but lmgui could not read (wrong type, negative, absurd):
the field is named in the record's ``malformed``. Never the value itself."""
UNREADABLE_TIP = "The server sent a value lmgui could not read."
_ABSURD_BYTES = 1e30


def field_text(record: Model | Instance, name: str, render: Callable[[Any], str]) -> str:
    """Field ``name`` of ``record`` as written for people: ``UNREADABLE`` ("?") when the server
    sent a value lmgui could not read (``name in record.malformed``), else ``render`` of the
    value, which is None when the server did not say (``human_bytes`` and ``human_count`` write
    ``NOT_SAID``, "-", for it). ``name`` is an attribute of the record, dotted for a nested one
    ("quantization.bits_per_weight"); for an Instance, a config property ("context_length").

        field_text(model, "size_bytes", human_bytes)           # "4.1 GB", "-" or "?"
        field_text(instance, "context_length", human_count)    # "32k", "-" or "?"
    """
    if name in record.malformed:
        return UNREADABLE
    value: Any = record
    for part in name.split("."):
        value = None if value is None else getattr(value, part)
    return render(value)


def capabilities(m: Model) -> list[str]:
    """A model's capability marks: vision, tools, reasoning."""
    marks = [("vision", m.vision), ("tools", m.tool_use), ("reasoning", bool(m.reasoning_options))]
    return [name for name, on in marks if on]


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return NOT_SAID
    # A negative, NaN or absurd size is a defect, never shown as a number (and dividing an int
    # past ~1e308 below would raise).
    if not 0 <= n <= _ABSURD_BYTES:
        return UNREADABLE
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def human_count(n: int | None) -> str:
    """Context lengths as model cards write them: 128000 -> "128k", 32768 -> "32k",
    131072 -> "128k", 4000 -> "4k", 1500 -> "1500"."""
    if n is None:
        return NOT_SAID
    if n < 0:  # a defect, never shown as a number
        return UNREADABLE
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
