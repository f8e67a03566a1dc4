"""The simulator's HTTP layer (Starlette on uvicorn) and a runner for a background thread.

Routing, SSE framing, auth, unknown-route behaviour and fault injection live here; what the
server knows lives in ``state.py``. It never runs on a GUI event loop: ``Simulator.start()`` gives
it a thread (and an asyncio loop) of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import random
import socket
import threading
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lmgui.sim import engine
from lmgui.sim.anthropic_compat import MessagesApi
from lmgui.sim.catalog import DEMO_CATALOG
from lmgui.sim.openai_compat import OpenAICompat
from lmgui.sim.responses_compat import ResponsesApi
from lmgui.sim.sdk import SdkApi, refuse
from lmgui.sim.state import SimConfig, SimError, SimInstance, SimState, Work
from lmgui.sim.textgen import Turn, generate, tokens_of
from lmgui.sim.tokens import malformed
from lmgui.sim.traffic import Traffic
from lmgui.sim.v0 import V0Models
from lmgui.sim.validation import (
    as_object,
    check_field,
    check_keys,
    check_reasoning,
    validate_chat,
    validate_load,
    validate_unload,
)

__all__ = ["RecordedRequest", "Simulator", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_AUTH_REQUIRED = (
    "An LM Studio API token is required to make requests to this server. Provide one via the "
    "'Authorization: Bearer $LM_API_TOKEN' header."
)
_HTML_500 = (
    "<!DOCTYPE html><html><head><title>500 Internal Server Error</title>"
    "<style>body{font-family:sans-serif}</style></head><body><h1>Internal Server Error</h1>"
    "<p>llama_decode returned -3 (simulated fault)</p></body></html>"
)
STREAM_ERROR: dict[str, Any] = {
    "error": {
        "type": "internal_error",
        "message": "Model crashed while generating (simulated fault)",
        "code": "model_crashed",
    }
}
"""The body of the SSE ``error`` event a ``stream_error`` fault sends (after ``type: error``)."""
KEEP_ALIVE = b": keep-alive\n\n"
_DELTAS = (b"event: reasoning.delta\n", b"event: message.delta\n")
_POLL = 0.05  # seconds between checks of a stalled stream for the simulator's shutdown
GREETING_PATH = "/lmstudio-greeting"
"""The SDKs' probe: ``{"lmstudio": true}`` here means the websocket API is on this port."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _unexpected(method: str, path: str) -> dict[str, Any]:
    return {"error": f"Unexpected endpoint or method. ({method} {path})"}


def _error_response(exc: SimError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise SimError.of(400, "Request body is not valid JSON.", code="invalid_json") from None


def _frame(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()


class _Turn:
    """Everything one chat turn will say, computed before any byte is sent."""

    def __init__(self, state: SimState, body: dict[str, Any], entry: dict[str, Any]) -> None:
        cfg = state.config
        self.body = body
        self.entry = entry
        inp = body["input"]
        items = [{"type": "text", "content": inp}] if isinstance(inp, str) else inp
        self.user_text = " ".join(i["content"] for i in items if i["type"] == "text")
        self.images = sum(1 for i in items if i["type"] == "image")
        caps = entry.get("capabilities") or {}
        if self.images and not caps.get("vision"):
            raise SimError.of(
                400,
                f"Model '{entry['key']}' does not support image input.",
                code="invalid_value",
                param="input",
            )
        check_reasoning(body.get("reasoning"), caps)
        reasoning_caps = caps.get("reasoning") or {}
        level = body.get("reasoning") or reasoning_caps.get("default")
        self.history = state.history(body.get("previous_response_id"))
        thought, message = generate(
            seed=cfg.seed,
            model_name=entry.get("display_name") or entry["key"],
            history=self.history or (),
            user_text=self.user_text,
            images=self.images,
            reasoning=bool(reasoning_caps) and level not in (None, "off"),
            system_prompt=body.get("system_prompt"),
            length=cfg.answer_tokens,
        )
        budget = body.get("max_output_tokens") or 1 << 30
        self.reasoning_tokens = tokens_of(thought)[:budget] if thought else []
        self.message_tokens = tokens_of(message)[: max(0, budget - len(self.reasoning_tokens))]
        self.tool_call = bool(body.get("integrations"))
        self.bad_tool = self.tool_call and "bad tool" in self.user_text.lower()
        words = sum(len(t.user.split()) + len(t.assistant.split()) for t in self.history or ())
        words += len(self.user_text.split()) + len((body.get("system_prompt") or "").split())
        self.input_tokens = int(words * 1.3) + 256 * self.images + 4
        self.tps = cfg.tokens_per_second

    @property
    def unknown_previous(self) -> bool:
        return self.history is None

    def output(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.reasoning_tokens:
            out.append({"type": "reasoning", "content": "".join(self.reasoning_tokens)})
        if self.tool_call:
            if self.bad_tool:
                out.append({"type": "invalid_tool_call", **self.invalid_tool_fields()})
            else:
                out.append({"type": "tool_call", **self.tool_call_fields()})
        if self.message_tokens:
            out.append({"type": "message", "content": "".join(self.message_tokens)})
        return out

    @staticmethod
    def invalid_tool_fields() -> dict[str, Any]:
        return {
            "reason": "Cannot find tool with name open_browser.",
            "metadata": {"type": "invalid_name", "tool_name": "open_browser"},
        }

    def tool_call_fields(self) -> dict[str, Any]:
        return {
            "tool": "sim_search",
            "arguments": {"query": self.user_text[:40]},
            "output": '[{"type":"text","text":"3 simulated results"}]',
            "provider_info": {"type": "ephemeral_mcp", "server_label": "simulator"},
        }

    def result(
        self, instance_id: str, response_id: str | None, load_seconds: float | None
    ) -> dict[str, Any]:
        n_out = len(self.reasoning_tokens) + len(self.message_tokens)
        stats: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "total_output_tokens": n_out,
            "reasoning_output_tokens": len(self.reasoning_tokens),
            "tokens_per_second": float(self.tps) if self.tps > 0 else 9999.0,
            "time_to_first_token_seconds": round(0.02 + self.input_tokens / 20000, 3),
        }
        if load_seconds is not None:
            stats["model_load_time_seconds"] = load_seconds
        body: dict[str, Any] = {
            "model_instance_id": instance_id,
            "output": self.output(),
            "stats": stats,
        }
        if response_id is not None:
            body["response_id"] = response_id
        return body

    def store(self, state: SimState, instance_id: str) -> str | None:
        if self.body.get("store") is False:
            return None
        assistant = "".join(self.message_tokens)
        turns = (*(self.history or ()), Turn(self.user_text, assistant))
        return state.store(self.entry["key"], instance_id, turns)


def _token_matches(given: bytes, expected: str) -> bool:
    """Constant-time comparison, on bytes so that any token (non-ASCII too) compares."""
    return hmac.compare_digest(given, expected.encode("utf-8"))


async def _linger(seconds: float, stopping: threading.Event) -> bool:
    """Sleep up to ``seconds`` in short steps; False when the simulator began to stop."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while not stopping.is_set():
        left = until - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(_POLL, left))
    return False


def create_app(state: SimState, stopping: threading.Event | None = None) -> Starlette:
    """The ASGI app over ``state``; ``stopping``, once set, ends stalled fault streams."""
    cfg = state.config
    stopping = stopping or threading.Event()

    async def list_models(request: Request) -> Response:
        if cfg.models_shape == "v0":
            return JSONResponse({"object": "list", "data": state.list_models_v0()})
        return JSONResponse({"models": state.list_models()})

    async def wait_loaded(inst: SimInstance) -> bool:
        return await engine.wait_loaded(state, inst)

    async def load(request: Request) -> Response:
        body = validate_load(await _json_body(request), cfg.accept_load_extensions)
        inst = state.begin_load(body["model"], body)
        if not await wait_loaded(inst):
            raise SimError.of(
                500,
                f"Loading of '{inst.id}' was cancelled: the instance was unloaded.",
                "internal_error",
            )
        out: dict[str, Any] = {
            "type": (state.entry(inst.model_key) or {}).get("type", "llm"),
            "instance_id": inst.id,
            "load_time_seconds": inst.load_seconds,
            "status": "loaded",
        }
        if body.get("echo_load_config"):
            out["load_config"] = dict(inst.config)
        return JSONResponse(out)

    async def unload(request: Request) -> Response:
        instance_id = validate_unload(await _json_body(request))
        state.unload(instance_id)
        return JSONResponse({"instance_id": instance_id})

    async def until_ready(inst: SimInstance) -> None:
        await engine.until_ready(state, inst)

    async def chat(request: Request) -> Response:
        body = validate_chat(await _json_body(request))
        entry, inst = state.resolve_chat_target(body["model"])
        turn = _Turn(state, body, entry)
        if body.get("stream") and cfg.stream_comments_only:
            return _sse(comments_only())
        if inst is None and not cfg.jit:
            raise SimError.of(
                404,
                f"Model '{body['model']}' is not loaded, and just-in-time loading is off.",
                "model_not_found",
                "model_not_found",
            )
        jit = None
        if inst is None and not turn.unknown_previous:
            jit = inst = state.begin_load(entry["key"], {}, jit=True)
        if body.get("stream"):
            frames = stream(turn, inst, jit)
            if not turn.unknown_previous and inst is not None:
                frames = faulty(frames, inst.id)
            return _sse(frames)
        if turn.unknown_previous:
            raise _unknown_previous(body["previous_response_id"])
        assert inst is not None
        if jit is not None and not await wait_loaded(jit):
            raise SimError.of(500, "The model was unloaded while loading.", "internal_error")
        await until_ready(inst)
        with state.work(inst.id) as work:
            n = len(turn.reasoning_tokens) + len(turn.message_tokens)
            if work is not None:
                work.generating()
            if turn.tps > 0:
                await asyncio.sleep(n / turn.tps)
            rid = turn.store(state, inst.id)
        load_s = jit.load_seconds if jit else None
        return JSONResponse(turn.result(inst.id, rid, load_s))

    async def stream(
        turn: _Turn, inst: SimInstance | None, jit: SimInstance | None
    ) -> AsyncGenerator[bytes, None]:
        iid = inst.id if inst else turn.entry["key"]
        yield _frame("chat.start", {"model_instance_id": iid})
        if turn.unknown_previous or inst is None:
            err = _unknown_previous(turn.body.get("previous_response_id") or "")
            yield _frame("error", err.body)
            end: dict[str, Any] = {"model_instance_id": iid, "output": [], "stats": {}}
            yield _frame("chat.end", {"result": end})
            return
        if jit is not None:
            yield _frame("model_load.start", {"model_instance_id": iid})
            for step in (0, 0.25, 0.5, 0.75, 1.0):
                yield _frame("model_load.progress", {"model_instance_id": iid, "progress": step})
                if step < 1.0:
                    await asyncio.sleep(jit.load_seconds / 4)
            if state.finish_load(jit.id) is None:
                err = SimError.of(500, "The model was unloaded while loading.", "internal_error")
                yield _frame("error", err.body)
                yield _frame("chat.end", {"result": {"model_instance_id": iid, "output": []}})
                return
            yield _frame(
                "model_load.end", {"model_instance_id": iid, "load_time_seconds": jit.load_seconds}
            )
        await until_ready(inst)
        # The instance is busy (processing, then generating) while this stream runs, however it
        # ends: the SDK's processing state reads it, and the idle timer waits for it.
        with state.work(inst.id) as work:
            async with contextlib.aclosing(generate_frames(turn, inst, jit, work)) as frames:
                async for frame in frames:
                    yield frame

    async def generate_frames(
        turn: _Turn, inst: SimInstance, jit: SimInstance | None, work: Work | None
    ) -> AsyncGenerator[bytes, None]:
        yield _frame("prompt_processing.start", {})
        for p in (0.5, 1.0):
            yield _frame("prompt_processing.progress", {"progress": p})
        yield _frame("prompt_processing.end", {})
        if work is not None:
            work.generating()
        pacer = engine.Pacer(turn.tps)
        if turn.reasoning_tokens:
            yield _frame("reasoning.start", {})
            for tok in turn.reasoning_tokens:
                await pacer.tick()
                yield _frame("reasoning.delta", {"content": tok})
            yield _frame("reasoning.end", {})
        if turn.tool_call:
            fields = turn.tool_call_fields()
            info = fields["provider_info"]
            yield _frame("tool_call.start", {"tool": fields["tool"], "provider_info": info})
            if turn.bad_tool:
                yield _frame("tool_call.failure", turn.invalid_tool_fields())
            else:
                args = {"tool": fields["tool"], "arguments": fields["arguments"]}
                yield _frame("tool_call.arguments", {**args, "provider_info": info})
                yield _frame("tool_call.success", fields)
        if turn.message_tokens:
            yield _frame("message.start", {})
            for tok in turn.message_tokens:
                await pacer.tick()
                yield _frame("message.delta", {"content": tok})
            yield _frame("message.end", {})
        rid = turn.store(state, inst.id)
        if work is not None:
            work.done()  # before chat.end: a client that stops reading there sees it idle
        load_s = jit.load_seconds if jit else None
        yield _frame("chat.end", {"result": turn.result(inst.id, rid, load_s)})

    async def comments_only() -> AsyncGenerator[bytes, None]:
        """The ``stream_comments_only`` fault: keep-alive comments, never an event."""
        interval = max(cfg.stream_comment_interval_ms, 1.0) / 1000
        deadline = asyncio.get_running_loop().time() + cfg.stream_fault_seconds
        while True:
            yield KEEP_ALIVE
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or not await _linger(min(interval, left), stopping):
                return

    async def faulty(frames: AsyncGenerator[bytes, None], iid: str) -> AsyncGenerator[bytes, None]:
        """Pass a stream's frames on, applying ``stream_stall_after`` and ``stream_error``.

        A fault fires before the content delta that would exceed its count, or before
        ``chat.end`` when the answer has fewer deltas. Either way the rest of the turn is
        dropped: nothing is stored, so the turn has no ``response_id``.
        """
        stall_at = cfg.stream_stall_after
        error_mode = cfg.stream_error
        error_at = cfg.stream_error_after
        fault_seconds = cfg.stream_fault_seconds
        if stall_at is None and error_mode is None:
            async for frame in frames:
                yield frame
            return
        sent = 0
        async with contextlib.aclosing(frames):
            async for frame in frames:
                is_delta = frame.startswith(_DELTAS)
                is_end = frame.startswith(b"event: chat.end\n")
                if is_delta or is_end:
                    if stall_at is not None and (is_end or sent >= stall_at):
                        await _linger(fault_seconds, stopping)
                        return  # close without chat.end
                    if error_mode is not None and (is_end or sent >= error_at):
                        yield _frame("error", STREAM_ERROR)
                        if error_mode == "end":
                            end = {"model_instance_id": iid, "output": [], "stats": {}}
                            yield _frame("chat.end", {"result": end})
                        return
                sent += is_delta
                yield frame

    async def download(request: Request) -> Response:
        body = as_object(await _json_body(request))
        check_keys(body, {"model", "quantization"}, ["model"])
        check_field(body, "model", str)
        check_field(body, "quantization", str)
        return JSONResponse(state.start_download(body["model"], body.get("quantization")))

    async def download_status(request: Request) -> Response:
        return JSONResponse(state.download_status(request.path_params["job_id"]))

    async def greeting(request: Request) -> Response:
        if not cfg.sdk_api:
            return JSONResponse(_unexpected(request.method, request.url.path), status_code=404)
        return JSONResponse({"lmstudio": True})

    async def unknown(request: Request) -> Response:
        path = request.url.path
        status = 404 if path.startswith("/api/v1/") else 200
        return JSONResponse(_unexpected(request.method, path), status_code=status)

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SimError as exc:
                return _error_response(exc)

        return run

    compat = OpenAICompat(state)
    routes = [
        Route("/api/v1/models", guarded(list_models), methods=["GET"]),
        Route("/api/v1/models/load", guarded(load), methods=["POST"]),
        Route("/api/v1/models/unload", guarded(unload), methods=["POST"]),
        Route("/api/v1/chat", guarded(chat), methods=["POST"]),
        Route("/api/v1/models/download", guarded(download), methods=["POST"]),
        Route(
            "/api/v1/models/download/status/{job_id}",
            guarded(download_status),
            methods=["GET"],
        ),
        *V0Models(state).routes(),
        *compat.routes(),
        *ResponsesApi(state, compat).routes(),
        *MessagesApi(state).routes(),
        Route(GREETING_PATH, greeting, methods=["GET"]),
        Route(
            "/{path:path}",
            unknown,
            methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
        ),
    ]
    return Starlette(routes=routes)


def _sse(frames: AsyncGenerator[bytes, None]) -> StreamingResponse:
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _unknown_previous(rid: str) -> SimError:
    return SimError.of(
        400,
        f"Previous response with id '{rid}' not found.",
        code="previous_response_not_found",
        param="previous_response_id",
    )


class SimMiddleware:
    """Records requests, then applies latency, faults, legacy mode and auth, in that order."""

    def __init__(
        self,
        app: ASGIApp,
        state: SimState,
        requests: deque[RecordedRequest],
        sdk: SdkApi | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.requests = requests
        self.sdk = sdk or SdkApi(state)
        self.rng = random.Random(state.config.seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path: str = scope["path"]
        self.requests.append(RecordedRequest(scope["method"], path, headers, body))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        cfg = self.state.config
        if cfg.latency_ms > 0:
            await asyncio.sleep(cfg.latency_ms / 1000)
        roll = self.rng.random()
        if roll < cfg.error_rate:
            await _send_raw(send, 500, _HTML_500.encode(), "text/html; charset=utf-8")
            return
        roll -= cfg.error_rate
        if roll < cfg.drop_rate:
            # Promise a body, send a sliver of it, stop: the client sees the connection drop.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"4096"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b'{"mod', "more_body": False})
            return
        roll -= cfg.drop_rate
        if roll < cfg.truncate_rate:
            send = _truncating(send)
        if cfg.legacy and (path.startswith("/api/v1") or path == "/v1/messages"):
            await _send_json(send, 200, _unexpected(scope["method"], path))
            return
        # The SDKs probe the greeting without credentials, before they authenticate on the
        # websocket, so it answers without a token.
        if cfg.token is not None and path != GREETING_PATH:
            raw_token = _given_token(scope["headers"], path)
            if not _token_matches(raw_token, cfg.token):
                token = raw_token.decode("utf-8", "replace")
                if not token:
                    message_text = _AUTH_REQUIRED
                elif malformed(token, cfg.token):
                    message_text = f"Malformed LM Studio API token provided: {token}"
                else:
                    message_text = "Invalid LM Studio API token provided."
                err = {
                    "type": "invalid_request",
                    "code": "invalid_api_key",
                    "message": message_text,
                }
                await _send_json(send, 401, {"error": err})
                return
        await self.app(scope, replay, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The SDK API's sockets; every upgrade is refused (a 403) when ``sdk_api`` is off.

        Recorded as method ``WEBSOCKET``. Credentials travel inside the socket (the first
        message), so the HTTP token check and the fault injection do not apply here.
        """
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append(RecordedRequest("WEBSOCKET", scope["path"], headers, None))
        if not self.state.config.sdk_api:
            if (await receive())["type"] == "websocket.connect":
                await refuse(send)
            return
        await self.sdk(scope, receive, send)


def _given_token(headers: list[tuple[bytes, bytes]], path: str) -> bytes:
    """The raw token bytes a request carries (ASGI headers are bytes): ``Authorization:
    Bearer``, or on the Anthropic-compatible path also ``x-api-key`` / ``x-api-token``, which
    Anthropic's SDKs send and LM Studio accepts there."""
    found: dict[bytes, bytes] = {}
    for k, v in headers:
        found.setdefault(k.lower(), v)
    given = found.get(b"authorization", b"")
    if given.startswith(b"Bearer "):
        return given.removeprefix(b"Bearer ").strip()
    if path == "/v1/messages":
        return (found.get(b"x-api-key") or found.get(b"x-api-token") or b"").strip()
    return b""


async def _send_raw(send: Send, status: int, body: bytes, ctype: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(send: Send, status: int, obj: Any) -> None:
    await _send_raw(send, status, json.dumps(obj).encode(), "application/json")


def _truncating(send: Send) -> Send:
    """A send that cuts a response short: half a JSON body, or a stream after a few frames."""
    start: Message | None = None
    parts: list[bytes] = []
    frames = 0
    done = False

    async def wrapped(message: Message) -> None:
        nonlocal start, frames, done
        if done:
            return
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        assert start is not None
        headers = dict(start.get("headers", []))
        if b"content-length" in headers:  # a whole body: send the first half of it
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return
            whole = b"".join(parts)
            cut = whole[: max(1, len(whole) // 2)]
            hdrs = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            hdrs.append((b"content-length", str(len(cut)).encode()))
            await send({**start, "headers": hdrs})
            await send({"type": "http.response.body", "body": cut, "more_body": False})
            done = True
            return
        if frames == 0:
            await send(start)
        frames += 1
        if frames > 4:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            done = True
            return
        await send(message)

    return wrapped


class Simulator:
    """An LM Studio simulator on a real loopback socket, in a background thread.

    ``with Simulator(SimConfig(port=0)) as sim: ... sim.url ...``. ``state`` is the live server
    state (thread-safe); ``requests`` the last 1000 requests received, for tests to inspect.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        catalog: list[dict[str, Any]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config or SimConfig()
        kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self.state = SimState(
            catalog if catalog is not None else DEMO_CATALOG, self.config, **kwargs
        )
        self.requests: deque[RecordedRequest] = deque(maxlen=1000)
        self._stopping = threading.Event()
        self.sdk = SdkApi(self.state)
        self.app = SimMiddleware(
            create_app(self.state, self._stopping), self.state, self.requests, self.sdk
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = self.config.port
        self.traffic: Traffic | None = None
        """Other apps' simulated traffic, while ``start_traffic`` has it running."""

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
        self.port = sock.getsockname()[1]
        self._sock = sock
        return sock

    def _make_server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        return uvicorn.Server(config)

    def start(self) -> Self:
        """Serve in a daemon thread; returns once the socket accepts connections."""
        sock = self.bind()
        self._stopping.clear()
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="lmgui-sim", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until interrupted (the ``lmgui-sim`` command)."""
        sock = self._sock or self.bind()
        self._server = self._make_server()
        self._server.run(sockets=[sock])

    @property
    def exiting(self) -> bool:
        """The server was told to stop (Ctrl+C on ``lmgui-sim``) and is shutting down."""
        return self._stopping.is_set() or (self._server is not None and self._server.should_exit)

    def start_traffic(self, per_minute: float, **options: Any) -> Traffic:
        """Start (or restart at a new rate) a simulated other app chatting with this server
        through ``/v1/chat/completions``; ``options`` go to ``Traffic`` (``models``, ``ttl``,
        ``seed``...). It sends the server's token, and stops with the server."""
        self.stop_traffic()
        options.setdefault("seed", self.config.seed)
        options.setdefault("token", self.config.token)
        self.traffic = Traffic(self.url, per_minute, **options).start()
        return self.traffic

    def stop_traffic(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None

    def stop(self) -> None:
        self.stop_traffic()
        self._stopping.set()  # stalled and comments-only fault streams end at once
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def active_requests(self) -> int:
        """Requests the server is still handling (a stalled stream counts until it ends)."""
        server = self._server
        return len(server.server_state.tasks) if server is not None else 0

    def received(self, method: str, path: str) -> list[RecordedRequest]:
        """Requests received for one route, oldest first."""
        return [r for r in list(self.requests) if r.method == method and r.path == path]
