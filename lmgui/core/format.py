"""How sizes, counts and durations are written for people (CLI and GUI alike)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from lmgui.api.records import Instance, Model

__all__ = [
    "NOT_SAID",
    "UNREADABLE",
    "UNREADABLE_TIP",
    "activity_phrase",
    "busy_unload_question",
    "capabilities",
    "field_text",
    "gpu_offload_text",
    "human_bytes",
    "human_count",
    "human_duration",
    "local_time",
    "status_text",
    "status_words",
    "waiting_requests",
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


def gpu_offload_text(fraction: float | None) -> str:
    """A GPU offload ratio: "max" (1), "off" (0), else a percentage ("50 %"); "-" unknown.

    A value strictly between the ends never rounds to "0 %" or "100 %", so "off" and "max" are
    only ever said of exactly none and all of the model on the GPU."""
    if fraction is None:
        return NOT_SAID
    if not 0.0 <= fraction <= 1.0:  # NaN fails every comparison
        return UNREADABLE
    if fraction == 1.0:
        return "max"
    if fraction == 0.0:
        return "off"
    return f"{min(99, max(1, round(fraction * 100)))} %"


_STATUS_WORDS = {
    "idle": "idle",
    "processingPrompt": "reading prompt",
    "generating": "generating",
    "computingEmbedding": "embedding",
}


def status_words(status: str | None) -> str | None:
    """LM Studio's processing state in words ("generating", "reading prompt"); a state this
    lmgui does not know is shown as the server wrote it (plain text), None when not said."""
    if status is None:
        return None
    return _STATUS_WORDS.get(status, status)


_ACTIVE = frozenset({"processingPrompt", "generating", "computingEmbedding"})


def waiting_requests(status: str | None, queued: int | None) -> int:
    """Requests waiting behind the one in progress. LM Studio's ``queued`` counts the request
    it is working on too (lmstudio-js: "Number of requests that are currently in the queue
    (Including the current one)"), so one chat in flight is "generating", not "+1 queued"."""
    if not isinstance(queued, int) or queued <= 0:
        return 0
    return queued - 1 if status in _ACTIVE else queued


def status_text(status: str | None, queued: int | None) -> str:
    """An instance's activity for a cell: "generating (+2 queued)", "idle", "-" when unknown.
    The count is of the requests waiting behind the one in progress."""
    words = status_words(status)
    waiting = waiting_requests(status, queued)
    if words is None:
        return f"{waiting} queued" if waiting else NOT_SAID
    return f"{words} (+{waiting} queued)" if waiting else words


_ACTIVITY = {
    "generating": "is generating an answer",
    "processingPrompt": "is reading a prompt",
    "computingEmbedding": "is computing embeddings",
}


def activity_phrase(inst: Instance) -> str | None:
    """What a busy instance is doing, as the rest of a sentence after its id ("is generating an
    answer"); None when it is not busy."""
    if not inst.busy:
        return None
    waiting = waiting_requests(inst.status, inst.queued)
    doing = _ACTIVITY.get(inst.status or "")
    if doing is None:  # busy only because requests wait for it
        if not waiting:
            return "is busy"
        return f"has {waiting} request{'s' if waiting != 1 else ''} waiting"
    return doing + (f" ({waiting} more waiting)" if waiting else "")


def busy_unload_question(instances: Sequence[Instance]) -> str | None:
    """The question to ask before unloading instances that are answering right now:
    "qwen-1 is generating an answer; unload it anyway?"; None when none of them is busy."""
    said = [f"{i.id} {phrase}" for i in instances if (phrase := activity_phrase(i)) is not None]
    if not said:
        return None
    them = "it" if len(said) == 1 else "them"
    listed = said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]
    return f"{listed}; unload {them} anyway?"


def local_time(wall: float, now: float | None = None) -> str:
    """A wall-clock time (time.time()) in the local zone: "14:05:12" today, else with the date."""
    if not math.isfinite(wall):
        return UNREADABLE
    try:
        when = time.localtime(wall)
    except (OverflowError, OSError, ValueError):  # a year the platform cannot represent
        return UNREADABLE
    today = time.localtime(time.time() if now is None else now)
    if when[:3] == today[:3]:
        return time.strftime("%H:%M:%S", when)
    return time.strftime("%Y-%m-%d %H:%M", when)
