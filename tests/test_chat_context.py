"""What the chat pane says about a turn, as plain logic: the context meter's reading and the line
for an output item that arrives while streaming."""

from __future__ import annotations

from typing import Any

from lmgui.api.records import Instance, Model
from lmgui.core.chat import item_note
from lmgui.core.chat_context import ContextUse, context_use, find_model
from lmgui.core.chat_store import TurnRecord

MODEL = Model(
    key="q/m",
    type="llm",
    display_name="M",
    instances=(Instance("q/m:2", "q/m", {"context_length": 4000}),),
)


def turn(stats: dict[str, Any], instance: str | None = "q/m:2") -> TurnRecord:
    return TurnRecord(
        id=1,
        thread_id=1,
        parent_id=None,
        input=[],
        output=[],
        stats=stats,
        response_id=None,
        model="q/m",
        instance_id=instance,
        settings={},
        status="complete",
        error=None,
        created=0.0,
        completed=0.0,
    )


def test_the_meter_compares_the_last_input_with_the_instances_context() -> None:
    assert find_model([MODEL], "q/m:2") is MODEL and find_model([MODEL], "q/m") is MODEL
    assert find_model([MODEL], "other") is None
    assert context_use(None, [MODEL]).text == "context: -"
    use = context_use(turn({"input_tokens": 1000}), [MODEL])
    assert use == ContextUse(1000, 4000) and not use.near
    assert use.text == "context: 1000 of 4k tokens"
    near = context_use(turn({"input_tokens": 3400}), [MODEL])
    assert near.near and near.text == "context: 3400 of 4k tokens — nearly full"
    gone = context_use(turn({"input_tokens": 50}, instance="q/m:9"), [MODEL])
    assert gone == ContextUse(50, None) and gone.text == "context: 50 tokens" and not gone.near
    # Stats come from the server: a count that is not one is not shown.
    assert context_use(turn({"input_tokens": "lots"}), [MODEL]).text == "context: -"
    assert context_use(turn({"input_tokens": True}), [MODEL]).used is None


def test_only_an_invalid_tool_call_is_called_one() -> None:
    assert item_note({"type": "tool_call", "tool": "search"}) == "⚙ tool call search"
    assert (
        item_note({"type": "invalid_tool_call", "reason": "bad JSON"})
        == "⚠ invalid tool call: bad JSON"
    )
    assert item_note({"type": "web_search", "query": "x"}) == "• web_search"
    assert item_note({}) == "• output item"
