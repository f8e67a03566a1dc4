"""How full a chat's context is: the last turn's input tokens against the instance's context.

Qt-free; the pane's meter shows ``ContextUse.text`` and warns when ``near`` is true.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lmgui.api.records import Model
from lmgui.core.chat_store import TurnRecord
from lmgui.core.format import human_count

__all__ = ["NEAR_FULL", "ContextUse", "context_use", "find_model"]

NEAR_FULL = 0.85
"""The share of the context from which the meter warns."""


@dataclass(frozen=True)
class ContextUse:
    used: int | None
    """Input tokens of the last turn (None: not known)."""
    size: int | None
    """The instance's context length (None: not known, or the instance is gone)."""

    @property
    def near(self) -> bool:
        if self.used is None or not self.size:
            return False
        return self.used >= NEAR_FULL * self.size

    @property
    def text(self) -> str:
        if self.used is None:
            return "context: -"
        if not self.size:
            return f"context: {self.used} tokens"
        note = " — nearly full" if self.near else ""
        return f"context: {self.used} of {human_count(self.size)} tokens{note}"


def find_model(models: Iterable[Model], name: str) -> Model | None:
    """The model whose key is ``name``, or which has an instance of that id."""
    for m in models:
        if m.key == name or any(i.id == name for i in m.instances):
            return m
    return None


def context_use(turn: TurnRecord | None, models: Iterable[Model]) -> ContextUse:
    if turn is None:
        return ContextUse(None, None)
    used = turn.stats.get("input_tokens")
    if isinstance(used, bool) or not isinstance(used, int):
        used = None  # stats come from the server: anything but a count is not shown
    m = find_model(models, turn.instance_id or turn.model)
    inst = next((i for i in m.instances if i.id == turn.instance_id), None) if m else None
    return ContextUse(used, inst.context_length if inst else None)
