"""Sentences the CLI, the window and the tray all say: written once, here."""

from __future__ import annotations

from lmgui.api.records import LoadResult

__all__ = ["not_applied_sentence"]


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
