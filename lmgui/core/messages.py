"""Sentences and labels the CLI, the window and the tray all say: written once, here."""

from __future__ import annotations

import time
from collections.abc import Iterable

from lmgui.api.records import LoadResult, Quantization
from lmgui.core.status import ConnectionState, PollStatus

__all__ = [
    "loaded_sentence",
    "not_applied_sentence",
    "quantization_label",
    "state_text",
    "still_loaded_sentence",
]

STATE_TEXT = {
    ConnectionState.CONNECTING: "Connecting…",
    ConnectionState.CONNECTED: "Connected",
    ConnectionState.SLOW: "Slow to answer",
    ConnectionState.TOKEN_NEEDED: "Token needed",
    ConnectionState.TOKEN_REJECTED: "Token rejected",
    ConnectionState.UNREACHABLE: "Unreachable",
    ConnectionState.UNSUPPORTED: "Not an LM Studio 0.4 server",
    ConnectionState.FAILING: "Server error",
}


def state_text(status: PollStatus | ConnectionState) -> str:
    """The connection state as the status bar and the tray say it ("Unreachable since 14:05")."""
    state = status if isinstance(status, ConnectionState) else status.state
    text = STATE_TEXT[state]
    if isinstance(status, PollStatus) and state is ConnectionState.UNREACHABLE and status.since:
        text += " since " + time.strftime("%H:%M", time.localtime(status.since))
    return text


def loaded_sentence(model_key: str, result: LoadResult) -> str:
    """ "Loaded qwen/qwen3-4b as qwen/qwen3-4b:2 in 4.2 s (through lms)." """
    secs = f" in {result.load_time_seconds:.1f} s" if result.load_time_seconds else ""
    via = " (through lms)" if result.via == "lms" else ""
    return f"Loaded {model_key} as {result.instance_id}{secs}{via}."


def quantization_label(q: Quantization | None, *, bits: bool = False) -> str:
    """ "Q4_K_M", or "Q4_K_M (4.8 bits/weight)" with ``bits``; "" when the server said none."""
    name = (q.name if q else None) or ""
    if bits and q is not None and q.bits_per_weight:
        return f"{name or '?'} ({q.bits_per_weight:g} bits/weight)"
    return name


def still_loaded_sentence(instance_ids: Iterable[str]) -> str:
    """After an unload that the next list contradicts."""
    ids = list(instance_ids)
    if len(ids) == 1:
        return f"{ids[0]} is still loaded after unloading it; the server kept it."
    return f"{len(ids)} instances are still loaded after unloading them: {', '.join(ids)}."


def not_applied_sentence(result: LoadResult, *, ttl_enforced: bool = False) -> str:
    """Which requested load options the server did not apply, and the true reason why.

    ``ttl_enforced``: the caller (the window, not the command line) unloads the instance itself
    when its TTL runs out."""
    keys = ", ".join(result.not_applied)
    reason = result.not_applied_reason or "the server does not take them"
    text = f"The server did not apply {keys} ({reason})."
    if ttl_enforced and "ttl" in result.not_applied:
        text += " lmgui enforces the TTL itself while it runs."
    return text
