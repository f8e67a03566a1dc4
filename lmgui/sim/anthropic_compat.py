"""LM Studio's Anthropic-compatible ``POST /v1/messages`` (LM Studio 0.4.1+).

Anthropic's wire shapes: a ``message`` with ``content`` blocks (``thinking``, ``text``,
``tool_use``), ``stop_reason`` ``end_turn`` / ``max_tokens`` / ``tool_use``, and ``usage``;
streams of ``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``,
``message_delta`` and ``message_stop`` events. Errors are Anthropic's ``{"type": "error",
"error": {"type", "message"}}`` (LM Studio's own text for them is not known). The token may come
as ``x-api-key`` (what Anthropic's SDKs send) as well as ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmgui.sim.answer import Answer, Prompt, Tool, compose
from lmgui.sim.engine import Acquired, Ids, Pacer, acquire, guarded, produce, sse
from lmgui.sim.state import SimError, SimState
from lmgui.sim.textgen import Turn

__all__ = ["MessagesApi", "anthropic_error"]


def anthropic_error(status: int, kind: str, message: str) -> SimError:
    return SimError(status, {"type": "error", "error": {"type": kind, "message": message}})


def _bad(message: str) -> SimError:
    return anthropic_error(400, "invalid_request_error", message)


def _text_blocks(blocks: list[Any]) -> str:
    return "\n".join(
        str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"
    )


def _blocks_text(content: Any, where: str) -> tuple[str, int, str | None, bool]:
    """(text, images, tool result text, has tool_use) of a message's ``content``."""
    if isinstance(content, str):
        return content, 0, None, False
    if not isinstance(content, list):
        raise _bad(f"{where}: Input should be a valid string or a list of content blocks")
    texts: list[str] = []
    images = 0
    result: str | None = None
    tool_use = False
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        assert kind is None or isinstance(block, dict)
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "image":
            images += 1
        elif kind == "tool_use":
            tool_use = True
        elif kind == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                inner = _text_blocks(inner)
            result = inner if isinstance(inner, str) else json.dumps(inner)
        elif kind not in ("thinking", "redacted_thinking", "document"):
            raise _bad(f"{where}: unknown content block type '{kind}'")
    return "\n".join(texts), images, result, tool_use


def parse_messages(body: dict[str, Any]) -> Prompt:
    messages = body.get("messages")
    if messages is None:
        raise _bad("messages: Field required")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: at least one message is required")
    system = body.get("system")
    if isinstance(system, list):
        system = _text_blocks(system)
    if system is not None and not isinstance(system, str):
        raise _bad("system: Input should be a valid string or a list of text blocks")
    turns: list[Turn] = []
    pending: str | None = None
    images = 0
    tool_result: str | None = None
    for n, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise _bad(f"messages.{n}.role: Input should be 'user' or 'assistant'")
        assert isinstance(m, dict)
        text, imgs, result, _ = _blocks_text(m.get("content"), f"messages.{n}.content")
        tool_result = None
        if role == "user":
            if result is not None:
                tool_result = result
            if text or result is None:
                pending = text if pending is None else f"{pending}\n{text}"
            images += imgs
        elif pending is not None:
            turns.append(Turn(pending, text))
            pending, images = None, 0
    return Prompt(tuple(turns), pending or "", system or None, images, tool_result)


def parse_tools(body: dict[str, Any]) -> tuple[list[Tool], str]:
    raw = body.get("tools")
    tools: list[Tool] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise _bad("tools: Input should be a valid list")
        for n, t in enumerate(raw):
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise _bad(f"tools.{n}.name: Field required")
            schema = t.get("input_schema")
            tools.append(
                Tool(
                    t["name"],
                    str(t.get("description") or ""),
                    schema if isinstance(schema, dict) else {},
                )
            )
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return tools, f"function:{choice['name']}"
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if mapped is None:
        raise _bad("tool_choice: Input should be 'auto', 'any', 'tool' or 'none'")
    return tools, mapped


class MessagesApi:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.ids = Ids(state.config.seed + 7)

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", guarded(self.create), methods=["POST"])]

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            raise _bad("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _bad("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _bad("model: Field required")
        limit = body.get("max_tokens")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise _bad("max_tokens: Input should be a valid integer")
        prompt = parse_messages(body)
        tools, choice = parse_tools(body)
        thinking = body.get("thinking")
        wish = None
        if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled"):
            wish = thinking["type"] == "enabled"
        ttl = body.get("ttl")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0
        ):
            raise _bad("ttl: Input should be a positive number of seconds")

        def not_found(name: str) -> SimError:
            return anthropic_error(404, "not_found_error", f"model: {name}")

        def check(entry: dict[str, Any]) -> None:
            if prompt.images and not (entry.get("capabilities") or {}).get("vision"):
                raise _bad("Model does not support images. Please use a model that does.")

        got = await acquire(
            self.state,
            model,
            kind="llm",
            ttl=float(ttl) if ttl is not None else None,
            not_found=not_found,
            wrong_kind=not_found,
            check=check,
        )
        answer = compose(
            seed=self.state.config.seed,
            entry=got.entry,
            prompt=prompt,
            length=self.state.config.answer_tokens,
            tools=tools,
            tool_choice=choice,
            max_tokens=limit,
            reasoning=wish,
        )
        mid = self.ids.make("msg_", 24)
        blocks = self.blocks(answer)
        if body.get("stream") is True:
            return sse(self.events(got, answer, mid, model, blocks))
        await produce(self.state, got.inst, answer.completion_tokens)
        return JSONResponse(
            {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": self.stop_reason(answer),
                "stop_sequence": None,
                "usage": self.usage(answer),
            }
        )

    def blocks(self, answer: Answer) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if answer.reasoning:
            out.append({"type": "thinking", "thinking": answer.reasoning_text, "signature": ""})
        if answer.tool_call is not None:
            out.append(
                {
                    "type": "tool_use",
                    "id": self.ids.make("toolu_", 24),
                    "name": answer.tool_call.name,
                    "input": answer.tool_call.arguments,
                }
            )
        else:
            out.append({"type": "text", "text": answer.text})
        return out

    @staticmethod
    def stop_reason(answer: Answer) -> str:
        return {"tool_calls": "tool_use", "length": "max_tokens"}.get(
            answer.finish_reason, "end_turn"
        )

    @staticmethod
    def usage(answer: Answer) -> dict[str, int]:
        return {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens}

    async def events(
        self, got: Acquired, answer: Answer, mid: str, model: str, blocks: list[dict[str, Any]]
    ) -> AsyncGenerator[bytes, None]:
        def event(name: str, **data: Any) -> bytes:
            payload = json.dumps({"type": name, **data}, ensure_ascii=False)
            return f"event: {name}\ndata: {payload}\n\n".encode()

        start: dict[str, Any] = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 0},
        }
        yield event("message_start", message=start)
        yield event("ping")
        with self.state.work(got.inst.id) as work:
            if work is not None:
                work.generating()
            pacer = Pacer(self.state.config.tokens_per_second)
            for index, block in enumerate(blocks):
                kind = block["type"]
                if kind == "thinking":
                    yield event(
                        "content_block_start",
                        index=index,
                        content_block={"type": "thinking", "thinking": "", "signature": ""},
                    )
                    for tok in answer.reasoning:
                        await pacer.tick()
                        delta = {"type": "thinking_delta", "thinking": tok}
                        yield event("content_block_delta", index=index, delta=delta)
                elif kind == "text":
                    yield event(
                        "content_block_start",
                        index=index,
                        content_block={"type": "text", "text": ""},
                    )
                    for tok in answer.message:
                        await pacer.tick()
                        delta = {"type": "text_delta", "text": tok}
                        yield event("content_block_delta", index=index, delta=delta)
                else:
                    yield event(
                        "content_block_start",
                        index=index,
                        content_block={**block, "input": {}},
                    )
                    args = json.dumps(block["input"], ensure_ascii=False)
                    for i in range(0, len(args), 16):
                        await pacer.tick()
                        delta = {"type": "input_json_delta", "partial_json": args[i : i + 16]}
                        yield event("content_block_delta", index=index, delta=delta)
                yield event("content_block_stop", index=index)
            if work is not None:
                work.done()
        yield event(
            "message_delta",
            delta={"stop_reason": self.stop_reason(answer), "stop_sequence": None},
            usage={"output_tokens": answer.completion_tokens},
        )
        yield event("message_stop")
