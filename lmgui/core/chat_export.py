"""A branch of a chat thread as Markdown or JSON (reasoning optional)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the store imports this module to export on its thread
    from lmgui.core.chat_store import ThreadRecord, TurnRecord

__all__ = ["branch_json", "branch_markdown", "transcript"]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def branch_markdown(
    thread: ThreadRecord, turns: list[TurnRecord], *, reasoning: bool = False
) -> str:
    lines = [f"# {thread.title}", "", f"Model: `{thread.model}` · server: {thread.server}", ""]
    system = thread.settings.get("system_prompt")
    if system:
        lines += ["> **System prompt**", *[f"> {line}" for line in system.splitlines()], ""]
    for n, t in enumerate(turns, 1):
        lines += [f"## {n}. You ({_when(t.created)})", "", t.user_text]
        images = [i for i in t.input if i.get("type") == "image"]
        if images:
            lines += ["", f"*({len(images)} image{'s' if len(images) > 1 else ''} attached)*"]
        lines += ["", f"## {n}. {t.instance_id or t.model}", ""]
        if reasoning and t.reasoning:
            quoted = [f"> {line}" for line in t.reasoning.strip().splitlines()]
            lines += ["> **Reasoning**", ">", *quoted, ""]
        for item in t.output:
            if item.get("type") == "tool_call":
                lines += [
                    f"*Tool call* `{item.get('tool')}`: `{json.dumps(item.get('arguments'))}`",
                    "",
                ]
            elif item.get("type") == "invalid_tool_call":
                lines += [f"*Invalid tool call*: {item.get('reason')}", ""]
        lines += [t.text or "*(no answer)*", ""]
        if t.status != "complete":
            lines += [f"*({t.status}{': ' + t.error if t.error else ''})*", ""]
        if t.response_id:
            lines += [f"<sub>response {t.response_id}</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"


def branch_json(thread: ThreadRecord, turns: list[TurnRecord], *, reasoning: bool = False) -> str:
    def turn(t: TurnRecord) -> dict[str, Any]:
        output = [i for i in t.output if reasoning or i.get("type") != "reasoning"]
        return {
            "id": t.id,
            "parent_id": t.parent_id,
            "created": t.created,
            "input": t.input,
            "output": output,
            "stats": t.stats,
            "response_id": t.response_id,
            "previous_response_id": t.settings.get("previous_response_id"),
            "model": t.model,
            "instance_id": t.instance_id,
            "status": t.status,
            "error": t.error,
        }

    data = {
        "thread": {
            "id": thread.id,
            "title": thread.title,
            "server": thread.server,
            "model": thread.model,
            "settings": thread.settings,
        },
        "turns": [turn(t) for t in turns],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def transcript(turns: list[TurnRecord]) -> str:
    """The branch as plain text, to seed a new thread's system prompt."""
    parts = []
    for t in turns:
        parts.append(f"User: {t.user_text}")
        if t.text:
            parts.append(f"Assistant: {t.text}")
    return "\n\n".join(parts)
