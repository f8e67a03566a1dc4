"""LM Studio's OpenAI-compatible endpoints, and the v0 REST endpoints that share their shapes.

``GET /v1/models``, ``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``;
``/api/v0/chat/completions``, ``/api/v0/completions`` and ``/api/v0/embeddings`` answer the same
bodies plus v0's ``stats``, ``model_info`` and ``runtime``. Shapes and error texts follow
lmstudio-api.md and the real bodies quoted in its research notes:

- a request that cannot be served is a plain-string error, ``{"error": "'messages' field is
  required"}`` (400), as LM Studio sends for this surface;
- an unknown model is a 404 in OpenAI's shape, ``{"error": {"message": "Model \\"x\\" not found.
  Please specify a valid model.\\n\\nYour models:...", "type": "invalid_request_error", "param":
  "model", "code": "model_not_found"}}``;
- streams are ``data: {chunk}`` lines ending with ``data: [DONE]``.

Requests JIT-load (``engine.acquire``): ``ttl`` in the body sets the TTL of the load it
triggers; the instance is busy while the answer is produced, paced at the configured
tokens per second, and its idle timer starts again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmgui.sim.answer import Answer, Prompt, Tool, compose
from lmgui.sim.engine import (
    Acquired,
    ErrorFor,
    Ids,
    Pacer,
    acquire,
    count_tokens,
    guarded,
    produce,
    sse,
)
from lmgui.sim.state import SimError, SimInstance, SimState
from lmgui.sim.textgen import Turn, embed

__all__ = [
    "OpenAICompat",
    "bad_request",
    "model_ids",
    "openai_error",
    "openai_not_found",
    "positive_ttl",
    "read_object",
]

ROLES = ("user", "assistant", "system", "tool")
DONE = b"data: [DONE]\n\n"
_STOP_REASONS = {"stop": "eosFound", "length": "maxPredictedTokensReached"}


# ----------------------------------------------------------------------------- errors, fields


def bad_request(message: str) -> SimError:
    """LM Studio's plain-string error for a request this surface cannot serve (400)."""
    return SimError(400, {"error": message})


def openai_error(status: int, message: str, param: str | None, code: str | None) -> SimError:
    return SimError(
        status,
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        },
    )


def model_ids(state: SimState) -> list[str]:
    """What ``GET /v1/models`` lists: every downloaded model while JIT loading is on (they all
    can be asked for), and the ids of loaded instances that are not a model's key (``key:2``,
    a custom identifier). With JIT off, only loaded instances."""
    keys = [m["key"] for m in state.list_models()] if state.config.jit else []
    known = set(keys)
    return keys + [i.id for i in state.loaded() if i.id not in known]


def openai_not_found(state: SimState) -> ErrorFor:
    def make(model: str) -> SimError:
        listing = "\n".join(model_ids(state))
        return openai_error(
            404,
            f'Model "{model}" not found. Please specify a valid model.\n\nYour models:\n\n'
            f"{listing}",
            "model",
            "model_not_found",
        )

    return make


def _wrong_kind(what: str) -> ErrorFor:
    def make(model: str) -> SimError:
        return openai_error(404, f'Model "{model}" is {what}.', "model", "model_not_found")

    return make


async def read_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise bad_request("Request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object.")
    return body


def required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise bad_request(f"'{name}' field is required")
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{name}' must be a non-empty string")
    return value


def optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be a boolean")
    return value


def positive_ttl(body: dict[str, Any]) -> float | None:
    """``ttl`` (seconds): the idle TTL of the JIT load this request triggers."""
    ttl = body.get("ttl")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
        raise bad_request("'ttl' must be a positive number of seconds")
    return float(ttl)


def max_tokens(body: dict[str, Any], *names: str) -> int | None:
    """The token budget; -1 (LM Studio's "no limit"), 0 or absent mean none."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"'{name}' must be an integer")
        return value if value > 0 else None
    return None


def reasoning_wish(value: Any) -> bool | None:
    """``reasoning_effort`` / ``reasoning.effort``: ``none`` turns reasoning off."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("'reasoning_effort' must be a string")
    return value not in ("none", "off")


def vision_check(images: int) -> Callable[[dict[str, Any]], None]:
    def check(entry: dict[str, Any]) -> None:
        if images and not (entry.get("capabilities") or {}).get("vision"):
            raise bad_request("Model does not support images. Please use a model that does.")

    return check


# ----------------------------------------------------------------------------- chat messages


def _content_text(content: Any, where: str) -> tuple[str, int]:
    """(text, image count) of a message's ``content``: a string, or an array of parts."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise bad_request(f"'{where}.content' must be a string or an array of content parts")
    texts: list[str] = []
    images = 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "input_image", "image"):
            images += 1
        else:
            raise bad_request(
                f"'{where}.content' parts must be of type 'text' or 'image_url', got '{kind}'"
            )
    return "\n".join(texts), images


def parse_messages(messages: Any) -> Prompt:
    """A chat-completions ``messages`` array as the conversation the answer continues."""
    if messages is None:
        raise bad_request("'messages' field is required")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' field must be a non-empty array")
    turns: list[Turn] = []
    system: list[str] = []
    pending: str | None = None
    images = 0
    tool_result: str | None = None
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ROLES:
            raise bad_request(
                "'messages' array must only contain objects with a 'role' field that is in "
                f"[{', '.join(ROLES)}]. Got '{role}'"
            )
        assert isinstance(m, dict)
        text, imgs = _content_text(m.get("content"), "messages[]")
        tool_result = None
        if role == "system":
            system.append(text)
        elif role == "user":
            pending = text if pending is None else f"{pending}\n{text}"
            images += imgs
        elif role == "assistant":
            if pending is not None:
                turns.append(Turn(pending, text))
                pending, images = None, 0
        else:
            tool_result = text
    return Prompt(
        tuple(turns),
        pending or "",
        "\n".join(system) or None,
        images,
        tool_result,
    )


def parse_tools(body: dict[str, Any]) -> tuple[list[Tool], str]:
    """Chat-completions ``tools`` and ``tool_choice`` (``auto``, ``none``, ``required`` or
    ``function:<name>``)."""
    raw = body.get("tools")
    tools: list[Tool] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise bad_request("'tools' must be an array")
        for t in raw:
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise bad_request("'tools' must only contain function tools with a name")
            params = fn.get("parameters")
            tools.append(
                Tool(
                    fn["name"],
                    str(fn.get("description") or ""),
                    params if isinstance(params, dict) else {},
                )
            )
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else choice.get("name")
        if not isinstance(name, str):
            raise bad_request("'tool_choice' must name a function")
        return tools, f"function:{name}"
    if choice not in ("auto", "none", "required"):
        raise bad_request("'tool_choice' must be 'auto', 'none', 'required' or a function")
    return tools, str(choice)


def parse_response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of structured output, or None for plain text."""
    rf = body.get("response_format")
    if rf is None:
        return None
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind not in ("json_schema", "text"):
        raise bad_request("'response_format.type' must be 'json_schema' or 'text'")
    if kind == "text":
        return None
    assert isinstance(rf, dict)
    spec = rf.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise bad_request("'response_format.json_schema.schema' must be a JSON schema object")
    return schema


@dataclass
class ChatRequest:
    model: str
    prompt: Prompt
    stream: bool
    include_usage: bool
    max_tokens: int | None
    tools: list[Tool]
    tool_choice: str
    schema: dict[str, Any] | None
    reasoning: bool | None
    ttl: float | None


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    model = required_str(body, "model")
    prompt = parse_messages(body.get("messages"))
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    tools, choice = parse_tools(body)
    return ChatRequest(
        model=model,
        prompt=prompt,
        stream=optional_bool(body, "stream"),
        include_usage=include_usage,
        max_tokens=max_tokens(body, "max_tokens", "max_completion_tokens"),
        tools=tools,
        tool_choice=choice,
        schema=parse_response_format(body),
        reasoning=reasoning_wish(body.get("reasoning_effort")),
        ttl=positive_ttl(body),
    )


# ----------------------------------------------------------------------------- the surface


def _data(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


class OpenAICompat:
    """The OpenAI-compatible routes (and v0's inference routes) over one ``SimState``."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.ids = Ids(state.config.seed)

    def routes(self) -> list[Route]:
        async def chat_v0(request: Request) -> Response:
            return await self.chat_completions(request, v0=True)

        async def completions_v0(request: Request) -> Response:
            return await self.completions(request, v0=True)

        return [
            Route("/v1/models", guarded(self.list_models), methods=["GET"]),
            Route("/v1/chat/completions", guarded(self.chat_completions), methods=["POST"]),
            Route("/v1/completions", guarded(self.completions), methods=["POST"]),
            Route("/v1/embeddings", guarded(self.embeddings), methods=["POST"]),
            Route("/api/v0/chat/completions", guarded(chat_v0), methods=["POST"]),
            Route("/api/v0/completions", guarded(completions_v0), methods=["POST"]),
            Route("/api/v0/embeddings", guarded(self.embeddings), methods=["POST"]),
        ]

    # ------------------------------------------------------------------ shared

    def now(self) -> int:
        """Unix seconds by the state's clock (a test's ManualClock moves it)."""
        return self.state.wall_ms(self.state.clock()) // 1000

    async def llm(self, model: str, ttl: float | None, images: int = 0) -> Acquired:
        return await acquire(
            self.state,
            model,
            kind="llm",
            ttl=ttl,
            not_found=openai_not_found(self.state),
            wrong_kind=_wrong_kind("an embedding model and cannot be used for completions"),
            check=vision_check(images),
        )

    async def produce(self, inst: SimInstance, answer: Answer) -> None:
        """Hold the instance busy for as long as generating the answer takes."""
        await produce(self.state, inst, answer.completion_tokens)

    def answer(self, got: Acquired, req: ChatRequest) -> Answer:
        return compose(
            seed=self.state.config.seed,
            entry=got.entry,
            prompt=req.prompt,
            length=self.state.config.answer_tokens,
            tools=req.tools,
            tool_choice=req.tool_choice,
            schema=req.schema,
            max_tokens=req.max_tokens,
            reasoning=req.reasoning,
        )

    @staticmethod
    def usage(answer: Answer) -> dict[str, int]:
        return {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        }

    def v0_extras(self, got: Acquired, answer: Answer) -> dict[str, Any]:
        """What v0 adds to an answer: ``stats``, ``model_info`` and ``runtime``."""
        tps = self.state.config.tokens_per_second
        n = answer.completion_tokens
        fmt = got.entry.get("format")
        runtime = (
            {
                "name": "mlx-llm-mac-arm64-apple-metal-advsimd",
                "version": "0.30.0",
                "supported_formats": ["safetensors"],
            }
            if fmt == "mlx"
            else {
                "name": "llama.cpp-linux-x86_64-nvidia-cuda12-avx2",
                "version": "1.52.0",
                "supported_formats": ["gguf"],
            }
        )
        return {
            "stats": {
                "tokens_per_second": float(tps) if tps > 0 else 9999.0,
                "time_to_first_token": round(0.02 + answer.prompt_tokens / 20000, 3),
                "generation_time": round(n / tps, 3) if tps > 0 else 0.0,
                "stop_reason": "toolCalls"
                if answer.tool_call
                else _STOP_REASONS[answer.finish_reason],
            },
            "model_info": {
                "arch": got.entry.get("architecture"),
                "quant": (got.entry.get("quantization") or {}).get("name"),
                "format": fmt,
                "context_length": got.inst.config.get("context_length"),
            },
            "runtime": runtime,
        }

    def tool_calls(self, answer: Answer) -> list[dict[str, Any]]:
        call = answer.tool_call
        if call is None:
            return []
        return [
            {
                "id": self.ids.numeric(),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
        ]

    # ------------------------------------------------------------------ GET /v1/models

    async def list_models(self, request: Request) -> Response:
        data = [
            {"id": mid, "object": "model", "owned_by": "organization_owner"}
            for mid in model_ids(self.state)
        ]
        return JSONResponse({"object": "list", "data": data})

    # ------------------------------------------------------------------ chat completions

    async def chat_completions(self, request: Request, v0: bool = False) -> Response:
        req = parse_chat(await read_object(request))
        got = await self.llm(req.model, req.ttl, req.prompt.images)
        answer = self.answer(got, req)
        cid = self.ids.make("chatcmpl-")
        iid = got.inst.id
        if req.stream:
            return sse(self.chat_chunks(got, answer, cid, req.include_usage))
        await self.produce(got.inst, answer)
        message: dict[str, Any] = {"role": "assistant"}
        calls = self.tool_calls(answer)
        if calls:
            message["tool_calls"] = calls
        else:
            message["content"] = answer.text
        if answer.reasoning:
            message["reasoning_content"] = answer.reasoning_text
        body: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": self.now(),
            "model": iid,
            "choices": [
                {
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                    "message": message,
                }
            ],
            "usage": self.usage(answer),
        }
        if v0:
            body.update(self.v0_extras(got, answer))
        else:
            body["stats"] = {}
            body["system_fingerprint"] = iid
        return JSONResponse(body)

    async def chat_chunks(
        self, got: Acquired, answer: Answer, cid: str, include_usage: bool
    ) -> AsyncGenerator[bytes, None]:
        iid = got.inst.id
        base: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": self.now(),
            "model": iid,
            "system_fingerprint": iid,
        }
        first = True

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            nonlocal first
            if first:
                delta = {"role": "assistant", **delta}
                first = False
            out = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                out["usage"] = None
            return _data(out)

        with self.state.work(iid) as work:
            if work is not None:
                work.generating()
            pacer = Pacer(self.state.config.tokens_per_second)
            for tok in answer.reasoning:
                await pacer.tick()
                yield chunk({"reasoning_content": tok})
            for tok in answer.message:
                await pacer.tick()
                yield chunk({"content": tok})
            for call in self.tool_calls(answer):
                fn = call["function"]
                head = {"index": 0, "id": call["id"], "type": "function"}
                yield chunk({"tool_calls": [{**head, "function": {"name": fn["name"]}}]})
                args = fn["arguments"]
                for i in range(0, len(args), 16):
                    await pacer.tick()
                    part = {"index": 0, "function": {"arguments": args[i : i + 16]}}
                    yield chunk({"tool_calls": [part]})
            if work is not None:
                work.done()  # before the last chunks: a client reading to [DONE] sees it idle
            yield chunk({}, answer.finish_reason)
        if include_usage:
            yield _data({**base, "choices": [], "usage": self.usage(answer)})
        yield DONE

    # ------------------------------------------------------------------ completions

    async def completions(self, request: Request, v0: bool = False) -> Response:
        body = await read_object(request)
        model = required_str(body, "model")
        raw = body.get("prompt")
        if raw is None:
            raise bad_request("'prompt' field is required")
        if isinstance(raw, list) and all(isinstance(p, str) for p in raw) and raw:
            text = "\n".join(raw)
        elif isinstance(raw, str):
            text = raw
        else:
            raise bad_request("'prompt' must be a string or an array of strings")
        stream = optional_bool(body, "stream")
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        budget = max_tokens(body, "max_tokens")
        got = await self.llm(model, positive_ttl(body))
        answer = compose(
            seed=self.state.config.seed,
            entry=got.entry,
            prompt=Prompt(user_text=text),
            length=self.state.config.answer_tokens,
            max_tokens=budget,
            reasoning=False,
        )
        cid = self.ids.make("cmpl-")
        iid = got.inst.id
        if stream:
            return sse(self.completion_chunks(got, answer, cid, include_usage))
        await self.produce(got.inst, answer)
        out: dict[str, Any] = {
            "id": cid,
            "object": "text_completion",
            "created": self.now(),
            "model": iid,
            "choices": [
                {
                    "index": 0,
                    "text": answer.text,
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": self.usage(answer),
        }
        if v0:
            out.update(self.v0_extras(got, answer))
        else:
            out["stats"] = {}
            out["system_fingerprint"] = iid
        return JSONResponse(out)

    async def completion_chunks(
        self, got: Acquired, answer: Answer, cid: str, include_usage: bool
    ) -> AsyncGenerator[bytes, None]:
        iid = got.inst.id
        base = {"id": cid, "object": "text_completion", "created": self.now(), "model": iid}

        def chunk(text: str, finish: str | None = None) -> bytes:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            return _data({**base, "choices": [choice]})

        with self.state.work(iid) as work:
            if work is not None:
                work.generating()
            pacer = Pacer(self.state.config.tokens_per_second)
            for tok in answer.message:
                await pacer.tick()
                yield chunk(tok)
            if work is not None:
                work.done()
            yield chunk("", answer.finish_reason)
        if include_usage:
            yield _data({**base, "choices": [], "usage": self.usage(answer)})
        yield DONE

    # ------------------------------------------------------------------ embeddings

    async def embeddings(self, request: Request) -> Response:
        """The same body on ``/v1`` and ``/api/v0`` (v0's documented example has no more)."""
        body = await read_object(request)
        model = required_str(body, "model")
        texts = embedding_inputs(body.get("input"))
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise bad_request("'encoding_format' must be 'float' or 'base64'")
        got = await acquire(
            self.state,
            model,
            kind="embedding",
            ttl=positive_ttl(body),
            not_found=openai_not_found(self.state),
            wrong_kind=_wrong_kind("not an embedding model"),
        )
        n_tokens = sum(count_tokens(t) for t in texts)
        with self.state.work(got.inst.id) as work:
            if work is not None:
                work.embedding()
            tps = self.state.config.tokens_per_second
            if tps > 0:  # embedding is fast: a tenth of generating as many tokens
                await asyncio.sleep(n_tokens / tps / 10)
        dims = int(got.entry.get("_sim_dimensions") or 768)
        seed = self.state.config.seed
        data = []
        for i, text in enumerate(texts):
            vec = embed(seed=seed, model=got.entry["key"], text=text, dimensions=dims)
            value: Any = vec
            if fmt == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
            data.append({"object": "embedding", "embedding": value, "index": i})
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": got.inst.id,
                "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
            }
        )


def embedding_inputs(raw: Any) -> list[str]:
    """``input``: a string, strings, or token arrays (embedded as their numbers' text)."""
    if raw is None:
        raise bad_request("'input' field is required")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, str) for x in raw):
            return list(raw)
        if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
            return [" ".join(map(str, raw))]
        if all(
            isinstance(x, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in x)
            for x in raw
        ):
            return [" ".join(map(str, x)) for x in raw]
    raise bad_request("'input' must be a string or a non-empty array of strings")
