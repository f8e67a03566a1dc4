"""What every inference surface shares: finding the instance a request runs on (loading it just
in time when needed), pacing tokens, and the ids and token counts the answers carry.

One state behind every surface: a request on ``/v1/chat/completions``, ``/v1/messages`` or
``/api/v0/embeddings`` JIT-loads exactly as ``/api/v1/chat`` does (the JIT TTL, or the request's
own ``ttl``, and auto-evict of the previous JIT load), counts as busy while it runs
(``SimState.work``) and resets the instance's idle timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from lmgui.sim.state import SimError, SimInstance, SimState

__all__ = [
    "Acquired",
    "ErrorFor",
    "Ids",
    "Pacer",
    "acquire",
    "count_tokens",
    "guarded",
    "produce",
    "sse",
    "until_ready",
    "wait_loaded",
]

ErrorFor = Callable[[str], SimError]
"""Builds a surface's own error body for a model name."""
Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """A route handler whose ``SimError`` becomes its HTTP answer."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except SimError as exc:
            return JSONResponse(exc.body, status_code=exc.status)

    return run


def sse(frames: AsyncGenerator[bytes, None]) -> StreamingResponse:
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


class Pacer:
    """Sleeps so that token i goes out at start + i / rate (batching sub-4 ms waits)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = asyncio.get_running_loop().time()
        self.count = 0

    async def tick(self) -> None:
        self.count += 1
        if self.rate <= 0:
            if self.count % 64 == 0:
                await asyncio.sleep(0)
            return
        delay = self.start + self.count / self.rate - asyncio.get_running_loop().time()
        if delay > 0.004:
            await asyncio.sleep(delay)


async def wait_loaded(state: SimState, inst: SimInstance) -> bool:
    """Wait out an instance's load (real time); False when it was unloaded meanwhile."""
    await asyncio.sleep(inst.load_seconds)
    return state.finish_load(inst.id) is not None


async def until_ready(state: SimState, inst: SimInstance) -> None:
    """Wait while another request (or a REST/SDK load) is still loading this instance."""
    # The state is shared with other threads (tests), so it holds no asyncio.Event; a short
    # poll inside the simulator is fine.
    while inst.loading and inst.id in state.instances:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


@dataclass
class Acquired:
    entry: dict[str, Any]
    inst: SimInstance
    jit: SimInstance | None
    """The instance this request loaded just in time, else None."""

    @property
    def load_seconds(self) -> float | None:
        return self.jit.load_seconds if self.jit is not None else None


async def acquire(
    state: SimState,
    model: str,
    *,
    kind: str,
    ttl: float | None,
    not_found: ErrorFor,
    wrong_kind: ErrorFor,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Acquired:
    """The loaded instance a request runs on, JIT-loading the model when it has none.

    ``kind`` is the catalog ``type`` the surface serves (``llm`` or ``embedding``). Finding and
    starting the load happen under the state's lock, so concurrent requests for an unloaded
    model share one JIT load instead of stacking ``key:2``. A load that does not fit raises the
    state's own error (a 500 ``internal_error``, as on every surface). ``check`` validates the
    request against the model (images for a model without vision) before anything loads.
    """
    with state.lock:
        entry, inst = state.find_target(model)
        if entry is None:
            raise not_found(model)
        if entry["type"] != kind:
            raise wrong_kind(model)
        if check is not None:
            check(entry)
        jit = None
        if inst is None:
            if not state.config.jit:
                raise not_found(model)
            options: dict[str, Any] = {} if ttl is None else {"ttl": ttl}
            jit = inst = state.begin_load(entry["key"], options, jit=True)
    if jit is not None:
        if not await wait_loaded(state, jit):
            raise SimError.of(
                500,
                f"Loading of '{jit.id}' was cancelled: the instance was unloaded.",
                "internal_error",
            )
    else:
        await until_ready(state, inst)
    return Acquired(entry, inst, jit)


async def produce(state: SimState, inst: SimInstance, tokens: int) -> None:
    """Hold the instance busy (prompt, then generating) for as long as ``tokens`` take at the
    configured rate; its idle timer starts again when done. For answers sent in one body."""
    with state.work(inst.id) as work:
        if work is not None:
            work.generating()
        tps = state.config.tokens_per_second
        if tps > 0:
            await asyncio.sleep(tokens / tps)


def count_tokens(text: str) -> int:
    """The simulator's token count for input text: 1.3 per word, at least 1."""
    return max(1, int(len(text.split()) * 1.3))


class Ids:
    """Deterministic ids per surface: ``chatcmpl-`` + 21 base-36 digits and the like."""

    _DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._n = itertools.count(1)

    def _digits(self, width: int) -> str:
        h = int.from_bytes(
            hashlib.sha256(f"{self.seed}:{next(self._n)}".encode()).digest()[:16], "big"
        )
        out = []
        for _ in range(width):
            h, r = divmod(h, 36)
            out.append(self._DIGITS[r])
        return "".join(out)

    def make(self, prefix: str, width: int = 21) -> str:
        return prefix + self._digits(width)

    def numeric(self) -> str:
        """A tool call id as LM Studio's OpenAI-compatible API gives them: 9 digits."""
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:t{next(self._n)}".encode()).digest()[:8])
        return str(100_000_000 + h % 900_000_000)
