"""LM Studio's OpenAI-compatible ``POST /v1/responses``, stateful through the same stored
threads as ``/api/v1/chat``.

A response id (``resp_`` and 48 hex digits) can be continued with ``previous_response_id`` here
or on ``/api/v1/chat``: one store behind both, as LM Studio keeps one prediction history. An
unknown id is a 400 ``previous_response_not_found``. Validation errors are in OpenAI's shape with
zod's words, as LM Studio sends them here (``{"message": "Required", "type":
"invalid_request_error", "param": "text.format", "code": "missing_required_parameter"}`` for a
``text`` without ``format``). Streams are ``event:`` + ``data:`` frames from
``response.created`` to ``response.completed``, with no ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmgui.sim.answer import Answer, Prompt, Tool, compose
from lmgui.sim.engine import Acquired, Ids, Pacer, guarded, sse
from lmgui.sim.openai_compat import (
    OpenAICompat,
    openai_error,
    positive_ttl,
    read_object,
    reasoning_wish,
)
from lmgui.sim.state import SimError, SimState
from lmgui.sim.textgen import Turn

__all__ = ["ResponsesApi"]


def _required(param: str) -> SimError:
    return openai_error(400, "Required", param, "missing_required_parameter")


def _invalid(param: str, expected: str, value: Any) -> SimError:
    got = "null" if value is None else type(value).__name__
    names = {"str": "string", "int": "number", "float": "number", "bool": "boolean"}
    return openai_error(
        400, f"Expected {expected}, received {names.get(got, got)}", param, "invalid_type"
    )


def _text_of(content: Any, param: str) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise _invalid(param, "string or array", content)
    texts: list[str] = []
    images = 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("input_image", "image_url"):
            images += 1
        elif kind != "refusal":
            raise openai_error(
                400,
                f"Invalid content part type '{kind}'. Expected 'input_text' or 'input_image'",
                param,
                "invalid_union",
            )
    return "\n".join(texts), images


@dataclass
class _Input:
    turns: list[Turn] = field(default_factory=list)
    system: list[str] = field(default_factory=list)
    pending: str | None = None
    images: int = 0
    tool_result: str | None = None


def parse_input(raw: Any) -> _Input:
    """``input``: a string, or message items, function calls and their outputs."""
    out = _Input()
    if raw is None:
        raise _required("input")
    if isinstance(raw, str):
        out.pending = raw
        return out
    if not isinstance(raw, list):
        raise _invalid("input", "string or array", raw)
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _invalid(f"input.{n}", "object", item)
        kind = item.get("type", "message")
        out.tool_result = None
        if kind == "message":
            role = item.get("role")
            text, images = _text_of(item.get("content"), f"input.{n}.content")
            if role in ("system", "developer"):
                out.system.append(text)
            elif role == "user":
                out.pending = text if out.pending is None else f"{out.pending}\n{text}"
                out.images += images
            elif role == "assistant":
                if out.pending is not None:
                    out.turns.append(Turn(out.pending, text))
                    out.pending, out.images = None, 0
            else:
                raise openai_error(
                    400,
                    f"Invalid role '{role}'. Expected 'user', 'assistant', 'system' or 'developer'",
                    f"input.{n}.role",
                    "invalid_value",
                )
        elif kind == "function_call":
            if out.pending is not None:
                out.turns.append(Turn(out.pending, ""))
                out.pending, out.images = None, 0
        elif kind == "function_call_output":
            output = item.get("output")
            out.tool_result = output if isinstance(output, str) else json.dumps(output)
        elif kind != "reasoning":
            raise openai_error(
                400, f"Invalid input item type '{kind}'", f"input.{n}.type", "invalid_union"
            )
    return out


def parse_tools(body: dict[str, Any]) -> tuple[list[Tool], str]:
    """Responses-style tools (``{"type": "function", "name", "parameters"}``); remote MCP and
    other tool types are accepted and never called."""
    raw = body.get("tools")
    tools: list[Tool] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise _invalid("tools", "array", raw)
        for t in raw:
            if isinstance(t, dict) and t.get("type") == "function":
                if not isinstance(t.get("name"), str):
                    raise _required("tools.name")
                params = t.get("parameters")
                tools.append(
                    Tool(
                        t["name"],
                        str(t.get("description") or ""),
                        params if isinstance(params, dict) else {},
                    )
                )
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return tools, f"function:{choice['name']}"
    if choice not in ("auto", "none", "required"):
        raise openai_error(400, "Invalid value for 'tool_choice'", "tool_choice", "invalid_value")
    return tools, str(choice)


class ResponsesApi:
    def __init__(self, state: SimState, compat: OpenAICompat) -> None:
        self.state = state
        self.compat = compat
        self.ids: Ids = compat.ids

    def routes(self) -> list[Route]:
        return [Route("/v1/responses", guarded(self.create), methods=["POST"])]

    async def create(self, request: Request) -> Response:
        body = await read_object(request)
        model = body.get("model")
        if model is None:
            raise _required("model")
        if not isinstance(model, str):
            raise _invalid("model", "string", model)
        parsed = parse_input(body.get("input"))
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise _invalid("instructions", "string", instructions)
        prev = body.get("previous_response_id")
        if prev is not None and not isinstance(prev, str):
            raise _invalid("previous_response_id", "string", prev)
        text_opt = body.get("text")
        schema = None
        if text_opt is not None:
            fmt = text_opt.get("format") if isinstance(text_opt, dict) else None
            if fmt is None:
                raise _required("text.format")
            kind = fmt.get("type") if isinstance(fmt, dict) else None
            if kind not in ("text", "json_schema"):
                raise openai_error(
                    400,
                    "Invalid discriminator value. Expected 'text' | 'json_schema'",
                    "text.format.type",
                    "invalid_union_discriminator",
                )
            if kind == "json_schema":
                assert isinstance(fmt, dict)
                schema = fmt.get("schema")
                if not isinstance(schema, dict):
                    raise _required("text.format.schema")
        tools, choice = parse_tools(body)
        reasoning_opt = body.get("reasoning")
        effort = reasoning_opt.get("effort") if isinstance(reasoning_opt, dict) else None
        budget = body.get("max_output_tokens")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
            raise _invalid("max_output_tokens", "number", budget)
        store = body.get("store", True) is not False
        stream = body.get("stream") is True
        history = self.state.history(prev)
        if history is None:
            raise openai_error(
                400,
                f"Prediction history node with id '{prev}' not found while attempting to "
                "build chat history chain that includes this node.",
                "previous_response_id",
                "previous_response_not_found",
            )
        system = [instructions] if instructions else []
        system += parsed.system
        prompt = Prompt(
            (*history, *parsed.turns),
            parsed.pending or "",
            "\n".join(system) or None,
            parsed.images,
            parsed.tool_result,
        )
        got = await self.compat.llm(model, positive_ttl(body), prompt.images)
        answer = compose(
            seed=self.state.config.seed,
            entry=got.entry,
            prompt=prompt,
            length=self.state.config.answer_tokens,
            tools=tools,
            tool_choice=choice,
            schema=schema,
            max_tokens=budget,
            reasoning=reasoning_wish(effort),
        )
        rid = self.state.response_id()
        fmt_echo = {"type": "json_schema", "schema": schema} if schema else {"type": "text"}
        head = {
            "id": rid,
            "object": "response",
            "created_at": self.compat.now(),
            "model": model,
            "instructions": instructions,
            "max_output_tokens": budget,
            "previous_response_id": prev,
            "reasoning": {"effort": effort, "summary": None},
            "store": store,
            "text": {"format": fmt_echo},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "temperature": body.get("temperature", 1.0),
            "top_p": body.get("top_p", 1.0),
            "parallel_tool_calls": True,
            "truncation": "disabled",
            "background": False,
            "user": None,
            "metadata": {},
        }
        items = self.output_items(answer)

        def keep() -> None:
            if store:
                turns = (*prompt.turns, Turn(prompt.user_text, answer.text))
                self.state.store(got.entry["key"], got.inst.id, turns, rid)

        if stream:
            return sse(self.events(got, answer, head, items, keep))
        await self.compat.produce(got.inst, answer)
        keep()
        return JSONResponse(self.finished(head, answer, items))

    def output_items(self, answer: Answer) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if answer.reasoning:
            items.append(
                {
                    "id": self.ids.make("rs_"),
                    "type": "reasoning",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": answer.reasoning_text}],
                }
            )
        call = answer.tool_call
        if call is not None:
            items.append(
                {
                    "id": self.ids.make("fc_"),
                    "type": "function_call",
                    "call_id": self.ids.make("call_"),
                    "name": call.name,
                    "arguments": call.arguments_json,
                    "status": "completed",
                }
            )
        else:
            items.append(
                {
                    "id": self.ids.make("msg_"),
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": answer.text,
                            "annotations": [],
                            "logprobs": [],
                        }
                    ],
                }
            )
        return items

    @staticmethod
    def finished(
        head: dict[str, Any], answer: Answer, items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        incomplete = answer.truncated and answer.tool_call is None
        return {
            **head,
            "status": "incomplete" if incomplete else "completed",
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "output": items,
            "usage": {
                "input_tokens": answer.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": answer.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": len(answer.reasoning)},
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            },
        }

    async def events(
        self,
        got: Acquired,
        answer: Answer,
        head: dict[str, Any],
        items: list[dict[str, Any]],
        keep: Callable[[], None],
    ) -> AsyncGenerator[bytes, None]:
        seq = 0

        def event(kind_: str, **data: Any) -> bytes:
            nonlocal seq
            payload = {"type": kind_, "sequence_number": seq, **data}
            seq += 1
            text = json.dumps(payload, ensure_ascii=False)
            return f"event: {kind_}\ndata: {text}\n\n".encode()

        pending = {
            **head,
            "status": "in_progress",
            "error": None,
            "incomplete_details": None,
            "output": [],
            "usage": None,
        }
        yield event("response.created", response=pending)
        yield event("response.in_progress", response=pending)
        with self.state.work(got.inst.id) as work:
            if work is not None:
                work.generating()
            pacer = Pacer(self.state.config.tokens_per_second)
            for index, item in enumerate(items):
                iid = item["id"]
                where = {"item_id": iid, "output_index": index}
                if item["type"] == "reasoning":
                    yield event(
                        "response.output_item.added",
                        output_index=index,
                        item={**item, "content": []},
                    )
                    for tok in answer.reasoning:
                        await pacer.tick()
                        yield event(
                            "response.reasoning_text.delta", **where, content_index=0, delta=tok
                        )
                    yield event(
                        "response.reasoning_text.done",
                        **where,
                        content_index=0,
                        text=answer.reasoning_text,
                    )
                elif item["type"] == "message":
                    yield event(
                        "response.output_item.added",
                        output_index=index,
                        item={**item, "status": "in_progress", "content": []},
                    )
                    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    yield event("response.content_part.added", **where, content_index=0, part=part)
                    for tok in answer.message:
                        await pacer.tick()
                        yield event(
                            "response.output_text.delta",
                            **where,
                            content_index=0,
                            delta=tok,
                            logprobs=[],
                        )
                    yield event(
                        "response.output_text.done",
                        **where,
                        content_index=0,
                        text=answer.text,
                        logprobs=[],
                    )
                    yield event(
                        "response.content_part.done",
                        **where,
                        content_index=0,
                        part={**part, "text": answer.text},
                    )
                else:
                    yield event(
                        "response.output_item.added",
                        output_index=index,
                        item={**item, "arguments": "", "status": "in_progress"},
                    )
                    args = item["arguments"]
                    for i in range(0, len(args), 16):
                        await pacer.tick()
                        yield event(
                            "response.function_call_arguments.delta",
                            **where,
                            delta=args[i : i + 16],
                        )
                    yield event(
                        "response.function_call_arguments.done",
                        **where,
                        name=item["name"],
                        arguments=args,
                    )
                yield event("response.output_item.done", output_index=index, item=item)
            keep()
            if work is not None:
                work.done()
        done = self.finished(head, answer, items)
        name = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
        yield event(name, response=done)
