"""How much lmgui reads from a server, and for how long it waits: chosen far above anything a real
LM Studio sends, so only a broken or hostile server meets them (docs/architecture.md, "Limits").

Past a size limit the client stops reading, closes the connection and says one sentence; an
answer that was too large is not retried. Each request also has an overall deadline besides the
per-read timeout, so a server that drips one byte every few seconds cannot hold lmgui for ever.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KIB", "MIB", "Deadlines", "Limits"]

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Limits:
    models_body: int = 64 * MIB
    """The model list: about 0.4 kB a model, so this is over 100,000 models."""
    body: int = 64 * MIB
    """Any other JSON answer: a load, a non-streamed chat (with every output item), a download."""
    error_body: int = 64 * KIB
    """An error answer is read only this far; its first readable line is what the user sees."""
    sse_line: int = 16 * MIB
    """One line of a chat stream (one event's data): a delta is a few bytes, the final
    ``chat.end`` carries the whole answer."""


@dataclass(frozen=True)
class Deadlines:
    """Seconds from sending a request to the end of its answer."""

    models: float = 20.0
    unload: float = 60.0
    load: float = 1200.0
    """A big model from a slow disk takes minutes; twenty is far past any real load."""
    chat: float = 900.0
    """A non-streamed chat: the whole answer is generated before the first byte is sent."""
    download: float = 30.0
    """Starting a download or asking its status (the download itself runs on the server)."""
    stream_idle: float = 180.0
    """A streamed chat that sends no event for this long ends; SSE comments (keep-alives) do not
    count. LM Studio sends progress events while it loads a model or reads a long prompt."""
