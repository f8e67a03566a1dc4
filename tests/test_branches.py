"""Branches of a thread as pure logic (no Qt, no store): where a turn sits among its siblings,
which branch a switch shows, and what a new thread carries when the server has lost one."""

from __future__ import annotations

from lmgui.core.branches import (
    RESEED_INTRO,
    SiblingInfo,
    TurnTree,
    continued_title,
    reseed_prompt,
)
from lmgui.core.chat_store import TurnRecord


def turn(
    turn_id: int, parent: int | None, question: str = "", answer: str = "", status: str = "complete"
) -> TurnRecord:
    return TurnRecord(
        id=turn_id,
        thread_id=1,
        parent_id=parent,
        input=[{"type": "text", "content": question or f"q{turn_id}"}],
        output=[{"type": "message", "content": answer}] if answer else [],
        stats={},
        response_id=f"resp_{turn_id}",
        model="m",
        instance_id="m",
        settings={},
        status=status,
        error=None,
        created=float(turn_id),
        completed=float(turn_id),
    )


# 1 ─ 2 ─ 5
#   ├ 3
#   └ 4 ─ 6
#         └ 7
TREE = [turn(1, None), turn(2, 1), turn(3, 1), turn(4, 1), turn(5, 2), turn(6, 4), turn(7, 4)]


def test_each_turn_of_a_branch_knows_its_place_among_its_siblings() -> None:
    tree = TurnTree(reversed(TREE))  # read in any order: siblings are ordered oldest first
    branch = [TREE[0], TREE[3], TREE[6]]  # 1, 4, 7
    assert tree.siblings(branch) == {
        1: SiblingInfo(1, 1, None, None),
        4: SiblingInfo(3, 3, 3, None),
        7: SiblingInfo(2, 2, 6, None),
    }
    assert tree.children(1) == [2, 3, 4] and tree.children(None) == [1]


def test_several_first_turns_are_siblings_too() -> None:
    tree = TurnTree([turn(1, None), turn(2, None)])
    assert tree.info(2) == SiblingInfo(2, 2, 1, None)


def test_a_switch_shows_the_newest_branch_through_the_sibling() -> None:
    tree = TurnTree(TREE)
    assert tree.newest_leaf(1) == 7  # the newest answer, its newest answer, ...
    assert tree.newest_leaf(5) == 5
    assert tree.switch(3, forward=False) == 5  # 3 -> sibling 2 -> its newest leaf 5
    assert tree.switch(3, forward=True) == 7  # 3 -> sibling 4 -> 7
    assert tree.switch(2, forward=False) is None  # the first of its siblings
    assert tree.switch(4, forward=True) is None  # the last
    assert tree.switch(99, forward=True) is None  # not in the thread


def test_a_turn_not_in_the_tree_stands_alone_and_a_loop_ends() -> None:
    assert TurnTree([]).info(5) == SiblingInfo(1, 1, None, None)
    # A damaged file (a turn that is its own ancestor) must not hang the pane.
    looped = TurnTree([turn(1, 2), turn(2, 1)])
    assert looped.newest_leaf(1) in (1, 2)


def test_a_lost_branch_is_carried_on_with_its_complete_turns_as_a_transcript() -> None:
    branch = [
        turn(1, None, "Remember heron", "I will remember heron."),
        turn(2, 1, "And owl?", "Half an answ", status="stopped"),
        turn(3, 2, "Which word?", "Heron."),
    ]
    prompt = reseed_prompt("Be brief.", branch)
    assert prompt == (
        "Be brief.\n\n"
        + RESEED_INTRO
        + "User: Remember heron\n\nAssistant: I will remember heron.\n\n"
        + "User: Which word?\n\nAssistant: Heron."
    )
    assert reseed_prompt(None, branch).startswith(RESEED_INTRO)
    assert continued_title("Birds") == "Birds (continued)"
