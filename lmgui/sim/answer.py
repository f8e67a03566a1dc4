"""One answer, whatever surface asked: the deterministic text, reasoning, a tool call or a JSON
object, cut to the request's token budget. Each surface then says it in its own wire shape.

The OpenAI-compatible, Anthropic-compatible and v0 endpoints take the whole conversation in the
request (or, for ``/v1/responses``, a stored thread plus new input); ``Prompt`` is that
conversation reduced to what ``textgen.generate`` needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lmgui.sim.engine import count_tokens
from lmgui.sim.textgen import Turn, generate, snippet, tokens_of

__all__ = ["Answer", "Prompt", "Tool", "ToolCall", "compose", "fill_schema"]

_WORDS = re.compile(r"[a-z0-9]+")
_COMMON = frozenset({"get", "set", "the", "and", "for", "with", "tool", "call", "run", "use"})


@dataclass(frozen=True)
class Prompt:
    turns: tuple[Turn, ...] = ()
    """Earlier (user, assistant) exchanges of the conversation."""
    user_text: str = ""
    system: str | None = None
    images: int = 0
    tool_result: str | None = None
    """The conversation ends with a tool's result (the model answers it, never calls again)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Answer:
    reasoning: list[str]
    message: list[str]
    tool_call: ToolCall | None
    truncated: bool
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.message)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def completion_tokens(self) -> int:
        n = len(self.reasoning) + len(self.message)
        if self.tool_call is not None:
            n += len(tokens_of(self.tool_call.arguments_json)) + 4
        return n

    @property
    def finish_reason(self) -> str:
        """OpenAI's words: ``tool_calls``, ``length`` or ``stop``."""
        if self.tool_call is not None:
            return "tool_calls"
        return "length" if self.truncated else "stop"


def _words(text: str) -> set[str]:
    return {w for w in _WORDS.findall(text.lower()) if len(w) > 2 and w not in _COMMON}


def pick_tool(tools: Sequence[Tool], choice: str, prompt: Prompt) -> Tool | None:
    """The tool the simulated model calls, if any.

    ``choice``: ``auto``, ``none``, ``required`` or ``function:<name>``. Never after a tool's
    result (the model answers it). With ``auto``, a tool whose name shares a word with the
    user's text ("weather" in ``get_weather``): what a model trained for tools would do.
    """
    if not tools or choice == "none" or prompt.tool_result is not None:
        return None
    if choice.startswith("function:"):
        name = choice.removeprefix("function:")
        return next((t for t in tools if t.name == name), None)
    said = _words(prompt.user_text)
    for tool in tools:
        if _words(tool.name.replace("_", " ").replace("-", " ")) & said:
            return tool
    return tools[0] if choice == "required" else None


def subject(text: str) -> str:
    """What a tool call is most likely about: the last capitalized word that does not start a
    sentence ("Paris" in "What is the weather in Paris?"), else the text itself, shortened."""
    words = text.split()
    for i in range(len(words) - 1, 0, -1):
        word = words[i].strip(".,;:!?\"'()[]")
        if word[:1].isupper() and not words[i - 1].endswith((".", "!", "?")):
            return word
    return snippet(text, 40)


def fill_schema(schema: Any, text: str, depth: int = 0) -> Any:
    """A value that satisfies a JSON schema, strings taken from ``text`` (deterministic)."""
    if not isinstance(schema, dict) or depth > 8:
        return snippet(text, 40)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for union in ("anyOf", "oneOf", "allOf"):
        options = schema.get(union)
        if isinstance(options, list) and options:
            return fill_schema(options[0], text, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {name: fill_schema(sub, text, depth + 1) for name, sub in props.items()}
    if kind == "array":
        count = schema.get("minItems")
        count = count if isinstance(count, int) and count > 0 else 1
        return [fill_schema(schema.get("items"), text, depth + 1) for _ in range(min(count, 8))]
    if kind == "integer":
        low = schema.get("minimum")
        return int(low) if isinstance(low, (int, float)) and low > 1 else 1
    if kind == "number":
        low = schema.get("minimum")
        return float(low) if isinstance(low, (int, float)) and low > 1 else 1.0
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return snippet(text, 40)


def compose(
    *,
    seed: int,
    entry: dict[str, Any],
    prompt: Prompt,
    length: int | None = None,
    tools: Sequence[Tool] = (),
    tool_choice: str = "auto",
    schema: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    reasoning: bool | None = None,
) -> Answer:
    """The answer to ``prompt`` from the model ``entry``.

    ``reasoning``: None for the model's default, False to turn it off where the model allows.
    ``schema``: the answer is a JSON object of that shape (structured output).
    ``max_tokens``: the budget, reasoning first (None or <= 0: no limit).
    """
    caps = entry.get("capabilities") or {}
    options = (caps.get("reasoning") or {}).get("allowed_options") or []
    default = (caps.get("reasoning") or {}).get("default")
    thinks = bool(options) and default != "off"
    if reasoning is False and "off" in options:
        thinks = False
    elif reasoning is True and options:
        thinks = True
    user_text = prompt.user_text
    if prompt.tool_result is not None:
        user_text = f"(tool result) {prompt.tool_result}"
    thought, message = generate(
        seed=seed,
        model_name=entry.get("display_name") or entry["key"],
        history=prompt.turns,
        user_text=user_text,
        images=prompt.images,
        reasoning=thinks,
        system_prompt=prompt.system,
        length=length,
    )
    tool = pick_tool(tools, tool_choice, prompt)
    call = None
    if tool is not None:
        call = ToolCall(tool.name, fill_schema(tool.parameters or {}, subject(prompt.user_text)))
        message = ""
    elif schema is not None:
        message = json.dumps(fill_schema(schema, message), ensure_ascii=False)
    budget = max_tokens if max_tokens is not None and max_tokens > 0 else 1 << 30
    reasoning_tokens = tokens_of(thought) if thought else []
    message_tokens = tokens_of(message) if message else []
    truncated = len(reasoning_tokens) + len(message_tokens) > budget
    reasoning_tokens = reasoning_tokens[:budget]
    message_tokens = message_tokens[: max(0, budget - len(reasoning_tokens))]
    words = " ".join(
        [t.user + " " + t.assistant for t in prompt.turns] + [user_text, prompt.system or ""]
    )
    prompt_tokens = count_tokens(words) + 256 * prompt.images + 4
    return Answer(reasoning_tokens, message_tokens, call, truncated, prompt_tokens)
