"""Other apps' traffic: a background client that chats with the simulator as an IDE agent or a
script would, through the OpenAI-compatible ``POST /v1/chat/completions``.

Real HTTP against the server's own port, so what it causes is real: JIT loads (with the TTL the
request asks for, and auto-evict of the previous JIT load), instances busy while it reads the
answer, idle timers started again. lmgui sees all of it as it would see another app's: loads it
did not make, busy instances, TTL countdowns that reset.

Requests go out at random (exponential) intervals averaging ``per_minute``; the models, prompts,
streaming and the intervals come from one seeded generator, so a seed gives the same sequence of
requests (their timing is real time). It runs on a thread of its own with its own event loop
(``start``/``stop``), or on the caller's loop (``await traffic.run()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import httpx

from lmgui.sim.catalog import GB

__all__ = ["Traffic", "TrafficRequest", "fitting_llms"]

PROMPTS = (
    "Summarize the changes in this diff in two sentences.",
    "Write a docstring for a function that parses ISO dates.",
    "What does HTTP status 429 mean, briefly?",
    "Suggest three names for a variable that holds a retry delay.",
    "Explain a Python context manager to a new colleague.",
    "Turn this list into a Markdown table: apples 3, pears 5.",
    "Why might a unit test pass locally and fail in CI?",
    "Rewrite this sentence to be shorter: the build has been failing for a while now.",
)
USER_AGENT = "lmgui-sim-traffic/1 (simulated other app)"


@dataclass(frozen=True)
class TrafficRequest:
    """One request the traffic sent and what came of it."""

    model: str
    stream: bool
    status: int | None
    """The HTTP status; None when no answer came (connection refused, timeout)."""
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    def describe(self) -> str:
        how = "stream" if self.stream else "plain"
        result = f"HTTP {self.status}" if self.status is not None else "no answer"
        tail = f": {self.error}" if self.error else ""
        return f"{self.model} ({how}) -> {result} in {self.seconds:.2f} s{tail}"


def fitting_llms(catalog: Iterable[dict[str, Any]], vram_gb: float) -> list[str]:
    """Keys of the catalog's LLMs that fit the VRAM budget with room for a KV cache (models
    that could never load would only make the traffic fail)."""
    budget = vram_gb * GB
    return [
        e["key"]
        for e in catalog
        if e.get("type", "llm") == "llm" and int(e.get("size_bytes") or 0) * 1.25 <= budget
    ]


class Traffic:
    """A simulated other app chatting at ``per_minute`` requests a minute on average.

    ``models``: the models it picks from; None discovers the LLMs from ``GET /api/v0/models``
    (as llm-lmstudio does). ``ttl``: sent with each request, the TTL of a JIT load it causes
    (None sends none: the server's JIT default). ``stickiness``: the chance of asking the same
    model again, so the same instance sees several requests (TTL resets) between switches.
    ``first_after``: seconds before the first request (None: a random interval like the rest).
    ``on_request``: called (on the traffic's thread) after each request.
    """

    def __init__(
        self,
        base_url: str,
        per_minute: float,
        *,
        models: Sequence[str] | None = None,
        seed: int = 0,
        token: str | None = None,
        ttl: float | None = 600.0,
        stickiness: float = 0.5,
        stream_share: float = 0.5,
        timeout: float = 600.0,
        first_after: float | None = None,
        on_request: Callable[[TrafficRequest], None] | None = None,
    ) -> None:
        if not per_minute > 0:
            raise ValueError("the traffic rate must be above 0 requests per minute")
        self.base_url = base_url.rstrip("/")
        self.per_minute = per_minute
        self.models = list(models) if models is not None else None
        self.token = token
        self.ttl = ttl
        self.stickiness = stickiness
        self.stream_share = stream_share
        self.timeout = timeout
        self.first_after = first_after
        self.on_request = on_request
        self.rng = random.Random(seed)
        self.sent = 0
        self.requests: deque[TrafficRequest] = deque(maxlen=200)
        """The latest requests, oldest first."""
        self._last_model: str | None = None
        self._discovered: list[str] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ running

    def start(self) -> Self:
        """Run on a daemon thread of its own until ``stop()``."""
        if self._thread is not None:
            return self
        self._stopping.clear()
        started = threading.Event()

        def main() -> None:
            async def go() -> None:
                self._loop = asyncio.get_running_loop()
                self._task = asyncio.current_task()
                started.set()
                if self._stopping.is_set():
                    return
                with contextlib.suppress(asyncio.CancelledError):
                    await self.run()

            with asyncio.Runner(loop_factory=_plain_loop) as runner:
                runner.run(go())

        self._thread = threading.Thread(target=main, name="lmgui-sim-traffic", daemon=True)
        self._thread.start()
        started.wait(timeout=5)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop at once, a request in flight included; waits for the thread to end."""
        self._stopping.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._loop = self._task = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def run(self) -> None:
        """Send requests forever at the configured rate (cancel to stop)."""
        async with self.client() as client:
            first = True
            while not self._stopping.is_set():
                wait = self.rng.expovariate(self.per_minute / 60)
                if first and self.first_after is not None:
                    wait = self.first_after
                first = False
                await asyncio.sleep(wait)
                await self.send_one(client)

    def client(self) -> httpx.AsyncClient:
        headers = {"User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout)

    # ------------------------------------------------------------------ one request

    async def choose_model(self, client: httpx.AsyncClient) -> str | None:
        if self._last_model is not None and self.rng.random() < self.stickiness:
            return self._last_model
        models = self.models
        if models is None:
            if not self._discovered or self.sent % 20 == 0:
                self._discovered = await self._discover(client) or self._discovered
            models = self._discovered
        if not models:
            return None
        self._last_model = self.rng.choice(sorted(models))
        return self._last_model

    @staticmethod
    async def _discover(client: httpx.AsyncClient) -> list[str]:
        try:
            r = await client.get("/api/v0/models")
            rows = r.json().get("data") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return []
        if not isinstance(rows, list):
            return []
        return [
            row["id"]
            for row in rows
            if isinstance(row, dict)
            and row.get("type") in ("llm", "vlm")
            and isinstance(row.get("id"), str)
        ]

    def body(self, model: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a concise coding assistant."},
                {"role": "user", "content": self.rng.choice(PROMPTS)},
            ],
            "temperature": 0.7,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if self.ttl is not None:
            body["ttl"] = self.ttl
        return body

    async def send_one(self, client: httpx.AsyncClient) -> TrafficRequest:
        """Send one chat request and read the whole answer, as the other app would."""
        model = await self.choose_model(client)
        stream = self.rng.random() < self.stream_share
        started = time.monotonic()
        if model is None:
            result = TrafficRequest("-", stream, None, 0.0, "no model to chat with")
        else:
            body = self.body(model, stream)
            try:
                result = await self._post(client, body, stream, model, started)
            except httpx.HTTPError as exc:
                error = str(exc) or type(exc).__name__
                result = TrafficRequest(model, stream, None, time.monotonic() - started, error)
        self.sent += 1
        self.requests.append(result)
        if self.on_request is not None:
            self.on_request(result)
        return result

    async def _post(
        self, client: httpx.AsyncClient, body: dict[str, Any], stream: bool, model: str, t0: float
    ) -> TrafficRequest:
        if not stream:
            r = await client.post("/v1/chat/completions", json=body)
            error = None if r.status_code == 200 else _error_text(r.text)
            return TrafficRequest(model, False, r.status_code, time.monotonic() - t0, error)
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                text = (await r.aread()).decode("utf-8", "replace")
                return TrafficRequest(
                    model, True, r.status_code, time.monotonic() - t0, _error_text(text)
                )
            done = False
            async for line in r.aiter_lines():
                if line.strip() == "data: [DONE]":
                    done = True
            error = None if done else "the stream ended without [DONE]"
            return TrafficRequest(model, True, r.status_code, time.monotonic() - t0, error)


def _plain_loop() -> asyncio.AbstractEventLoop:
    """The platform's own event loop for the traffic's thread. Not ``asyncio.run``: under
    lmgui's qasync the installed loop policy makes Qt event loops, which must never run off the
    GUI thread (the demo starts the traffic from there)."""
    if sys.platform == "win32":
        return asyncio.ProactorEventLoop()
    return asyncio.SelectorEventLoop()


def _error_text(text: str) -> str:
    """The server's error message, short."""
    try:
        err = json.loads(text).get("error")
    except (ValueError, AttributeError):
        err = text
    if isinstance(err, dict):
        err = err.get("message")
    return str(err)[:160]
