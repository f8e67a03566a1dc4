"""The branches of a chat thread, as pure logic beside the session (Qt-free).

A thread's turns form a tree: a turn's parent is the turn it continued from, and answers to the
same earlier turn are siblings ("branch 2 of 3"). A branch is the path from a root turn down to
the thread's current turn. This module says where each turn of a branch sits among its siblings,
which branch a switch to a sibling shows, and what a new thread carries when the server has lost
a branch (its transcript, in the system prompt).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lmgui.core.chat_export import transcript
from lmgui.core.chat_store import TurnRecord

__all__ = ["SiblingInfo", "TurnTree", "continued_title", "reseed_prompt"]

RESEED_INTRO = "This conversation continues an earlier one. Its transcript so far:\n\n"


@dataclass(frozen=True)
class SiblingInfo:
    """Where a turn sits among the answers to the same earlier turn (the branches there)."""

    index: int
    """1-based, oldest first."""
    count: int
    previous: int | None
    """The id of the sibling before this one, if any."""
    next: int | None


class TurnTree:
    """Every turn of one thread, each under its parent, siblings oldest first."""

    def __init__(self, turns: Iterable[TurnRecord]) -> None:
        self._parent: dict[int, int | None] = {}
        self._children: dict[int | None, list[int]] = {}
        # Ids grow as turns are made, so sorting by id orders siblings by age whatever order
        # the turns were read in.
        for t in sorted(turns, key=lambda t: t.id):
            self._parent[t.id] = t.parent_id
            self._children.setdefault(t.parent_id, []).append(t.id)

    def children(self, turn_id: int | None) -> list[int]:
        """The answers that continued from ``turn_id`` (None: the thread's first turns)."""
        return list(self._children.get(turn_id, ()))

    def info(self, turn_id: int) -> SiblingInfo:
        if turn_id not in self._parent:
            return SiblingInfo(1, 1, None, None)  # not in the tree: alone
        group = self._children[self._parent[turn_id]]
        i = group.index(turn_id)
        return SiblingInfo(
            i + 1,
            len(group),
            group[i - 1] if i > 0 else None,
            group[i + 1] if i + 1 < len(group) else None,
        )

    def siblings(self, branch: Iterable[TurnRecord]) -> dict[int, SiblingInfo]:
        """For each turn of ``branch``: where it sits among its siblings."""
        return {t.id: self.info(t.id) for t in branch}

    def newest_leaf(self, turn_id: int) -> int:
        """The end of the newest branch through ``turn_id``: its newest answer, that answer's
        newest answer, and so on."""
        tip, seen = turn_id, {turn_id}
        while (kids := self._children.get(tip)) and kids[-1] not in seen:
            tip = kids[-1]
            seen.add(tip)  # a damaged file with a loop in it ends here rather than never
        return tip

    def switch(self, turn_id: int, *, forward: bool) -> int | None:
        """The turn to continue from to show the sibling after (or before) ``turn_id``: that
        sibling's newest leaf. None when there is no sibling that way."""
        info = self.info(turn_id)
        target = info.next if forward else info.previous
        return None if target is None else self.newest_leaf(target)


def reseed_prompt(system_prompt: str | None, branch: Sequence[TurnRecord]) -> str:
    """The system prompt of a new thread that carries on a branch the server no longer knows:
    the old prompt, then the transcript of the branch's complete turns."""
    done = [t for t in branch if t.status == "complete"]
    return (system_prompt + "\n\n" if system_prompt else "") + RESEED_INTRO + transcript(done)


def continued_title(title: str) -> str:
    """The title of the thread that carries on ``title``."""
    return f"{title} (continued)"
