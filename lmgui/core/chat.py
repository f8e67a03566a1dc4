"""A chat thread as the server keeps it: turns threaded through ``previous_response_id``.

``ChatSession`` (QtCore) owns one open thread. ``send()`` continues from the current tip of the
branch (its ``response_id`` becomes the next ``previous_response_id``), streams the answer as
signals, saves it as it grows (at most every ``SAVE_INTERVAL`` seconds) and closes the turn as
complete, stopped, interrupted or error. ``continue_from()`` moves the tip to an earlier turn: the
next turn starts a branch there; ``switch_sibling()`` moves it to another branch at a fork
(the tree logic is ``core.branches``). Every store call is awaited on the store's worker thread;
the streaming task runs on the session's ``TaskSet``, which reports a failure as a sentence.

A thread belongs to one server (``ThreadRecord.server``): the session asks for that server's
client at each request (a new token replaces the client), and sends nothing when lmgui no longer
watches that server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import msgspec
from PySide6.QtCore import QObject, Signal

from lmgui.api.client import LMStudioClient
from lmgui.api.errors import ApiError, BadRequestError, NotFoundError, ServerUnreachable
from lmgui.api.events import (
    ChatEnd,
    ChatStart,
    ErrorEvent,
    MessageDelta,
    ModelLoadProgress,
    ModelLoadStart,
    ReasoningDelta,
    ToolCallFailure,
    ToolCallSuccess,
)
from lmgui.api.records import ChatStats, OutputItem, UnknownItem
from lmgui.api.urls import display_url
from lmgui.core.branches import SiblingInfo, TurnTree, reseed_prompt
from lmgui.core.chat_store import AsyncChatStore, ThreadRecord, TurnRecord
from lmgui.core.images import IMAGE_LIMIT_BYTES, image_problem
from lmgui.core.tasks import TaskSet

__all__ = [
    "IMAGE_LIMIT_BYTES",
    "ChatSession",
    "ServerNotWatchedError",
    "ThreadSettings",
    "is_lost_continuation",
    "item_note",
    "not_watched_sentence",
    "stats_dict",
    "stored_item",
]

log = logging.getLogger(__name__)

SAVE_INTERVAL = 0.5


@dataclass(frozen=True)
class ThreadSettings:
    system_prompt: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    reasoning: str | None = None
    store: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThreadSettings:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def not_watched_sentence(server: str) -> str:
    """What sending says when the thread's server is not one lmgui watches now."""
    return (
        f"This thread's server, {display_url(server)}, is not among the servers lmgui watches: "
        "turn it on in Settings."
    )


class ServerNotWatchedError(ValueError):
    """The thread's server is not one lmgui watches now: nothing was sent (the message is the
    sentence for the user)."""


def item_note(item: dict[str, Any]) -> str:
    """The line the transcript shows while streaming when an output item arrives."""
    kind = str(item.get("type") or "output item")
    if kind == "tool_call":
        return f"⚙ tool call {item.get('tool')}"
    if kind == "invalid_tool_call":
        return f"⚠ invalid tool call: {item.get('reason')}"
    return f"• {kind}"


def is_lost_continuation(code: str | None, message: str) -> bool:
    """The server no longer knows the previous response id (restart, expiry)."""
    text = message.lower()
    return (
        code == "previous_response_not_found"
        or ("previous" in text and "not found" in text)
        or ("response" in text and "not found" in text and "resp_" in text)
    )


class _Answer:
    """The output items of a turn, built up from stream events."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add_text(self, kind: str, text: str) -> None:
        if self.items and self.items[-1]["type"] == kind:
            self.items[-1]["content"] += text
        else:
            self.items.append({"type": kind, "content": text})

    def add(self, item: dict[str, Any]) -> None:
        self.items.append(item)


class ChatSession(QObject):
    turn_started = Signal(object)
    """TurnRecord of the new turn (status "streaming")."""
    delta = Signal(int, str, str)
    """(turn id, "message" or "reasoning", text)"""
    item_added = Signal(int, object)
    """(turn id, an output item dict: tool_call or invalid_tool_call)"""
    model_loading = Signal(int, float)
    """(turn id, progress 0..1) while the server loads the model for this turn (JIT)"""
    turn_finished = Signal(object)
    """TurnRecord, closed"""
    continuation_lost = Signal(int, str)
    """(turn id, a sentence): the server no longer knows the previous response"""
    busy_changed = Signal(bool)

    def __init__(
        self,
        store: AsyncChatStore,
        client: Callable[[], LMStudioClient | None],
        record: ThreadRecord,
        *,
        on_used: Callable[[str], None] = lambda instance_id: None,
        report: Callable[[str], None] | None = None,
        parent: QObject | None = None,
    ) -> None:
        """``client`` gives the client of the thread's server now, asked at each request (None:
        lmgui no longer watches that server); ``on_used`` hears each instance id the server
        answered with; ``report`` hears a failure of the session's own work as one sentence."""
        super().__init__(parent)
        self.store = store
        self._client = client
        self.record = record
        self._on_used = on_used
        self.tasks = TaskSet("chat session", report)
        self._task: asyncio.Task[TurnRecord | None] | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def settings(self) -> ThreadSettings:
        return ThreadSettings.from_dict(self.record.settings)

    async def set_settings(self, settings: ThreadSettings, model: str | None = None) -> None:
        self.record = await self.store.update_thread(
            self.record.id, settings=settings.to_dict(), model=model
        )

    async def rename(self, title: str) -> None:
        self.record = await self.store.rename_thread(self.record.id, title)

    @property
    def movable(self) -> bool:
        """True while the thread has no turns: it may still move to another server."""
        return self.record.current_turn is None and not self.busy

    async def move_to(self, server: str, model: str | None = None) -> None:
        """Talk to ``server`` (and ``model`` there) from now on; only before the first turn
        (ValueError with a sentence otherwise: the thread's answers live on its server)."""
        if self.busy:
            raise ValueError("A message is on its way; the thread stays on its server.")
        self.record = await self.store.set_thread_server(self.record.id, server, model=model)

    async def branch(self) -> list[TurnRecord]:
        return await self.store.branch(self.record.current_turn)

    async def continue_from(self, turn_id: int) -> None:
        """The next turn continues from ``turn_id``: a branch when it is not the tip."""
        self.record = await self.store.update_thread(self.record.id, current_turn=turn_id)

    async def siblings(self, branch: Sequence[TurnRecord]) -> dict[int, SiblingInfo]:
        """Where each turn of ``branch`` sits among the answers to the same earlier turn."""
        if not branch:
            return {}
        return TurnTree(await self.store.turns(self.record.id)).siblings(branch)

    async def switch_sibling(self, turn_id: int, *, forward: bool) -> bool:
        """Show the branch through the next (or previous) answer at ``turn_id``'s fork, down to
        its newest turn. False when ``turn_id`` is not on the branch or has no sibling there."""
        if all(t.id != turn_id for t in await self.branch()):
            return False
        tip = TurnTree(await self.store.turns(self.record.id)).switch(turn_id, forward=forward)
        if tip is None:
            return False
        await self.continue_from(tip)
        return True

    async def reseed_settings(self) -> ThreadSettings:
        """This thread's settings for a new thread that carries on its branch, which the server
        no longer knows: the branch's transcript goes into the system prompt."""
        s = self.settings
        return dataclasses.replace(
            s, system_prompt=reseed_prompt(s.system_prompt, await self.branch())
        )

    # ------------------------------------------------------------------ sending

    def send(
        self, text: str, images: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Task[TurnRecord | None]:
        if self.busy:
            raise RuntimeError("a turn is still streaming")
        if self._client() is None:
            raise ServerNotWatchedError(not_watched_sentence(self.record.server))
        for mime, data in images or ():
            problem = image_problem(mime, len(data))
            if problem:
                raise ValueError(problem)
        self._task = self.tasks.spawn(self._send(text, list(images or ())), "Sending the message")
        self.busy_changed.emit(True)
        self._task.add_done_callback(lambda _t: self.busy_changed.emit(False))
        return self._task

    def stop(self) -> None:
        """Cancel the streaming answer; the part already received is kept, marked "stopped"."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def aclose(self) -> None:
        """Stop the answer (kept as "stopped") and end the session's work."""
        self.stop()
        with contextlib.suppress(Exception):  # a failure was reported when it happened
            await self.wait()
        await self.tasks.aclose()

    async def _send(self, text: str, images: list[tuple[str, bytes]]) -> TurnRecord | None:
        settings = self.settings
        current = self.record.current_turn
        parent = await self.store.turn(current) if current else None
        previous = parent.response_id if parent is not None else None
        turn = await self.store.add_turn(
            self.record.id,
            parent.id if parent else None,
            [{"type": "text", "content": text}],
            model=self.record.model,
            settings={**settings.to_dict(), "previous_response_id": previous},
            images=images,
        )
        self.record = await self.store.thread(self.record.id)
        self.turn_started.emit(turn)
        wire_input: str | list[dict[str, str]] = text
        if images:
            wire_input = [{"type": "text", "content": text}] + [
                {"type": "image", "data_url": f"data:{m};base64,{base64.b64encode(d).decode()}"}
                for m, d in images
            ]
        answer = _Answer()
        instance_id: str | None = None
        last_save = time.monotonic()
        error: str | None = None
        error_code: str | None = None
        try:
            client = self._client()
            if client is None:  # the server was switched off since send() looked
                raise ServerNotWatchedError(not_watched_sentence(self.record.server))
            stream = client.chat_stream(
                self.record.model,
                wire_input,
                previous_response_id=previous,
                system_prompt=settings.system_prompt or None,
                temperature=settings.temperature,
                max_output_tokens=settings.max_output_tokens,
                reasoning=settings.reasoning,
                store=settings.store,
            )
            async with stream:
                async for ev in stream:
                    if isinstance(ev, ChatStart):
                        instance_id = ev.model_instance_id
                        if instance_id:
                            self._on_used(instance_id)
                    elif isinstance(ev, MessageDelta | ReasoningDelta):
                        kind = "message" if isinstance(ev, MessageDelta) else "reasoning"
                        answer.add_text(kind, ev.content)
                        self.delta.emit(turn.id, kind, ev.content)
                    elif isinstance(ev, ModelLoadStart):
                        self.model_loading.emit(turn.id, 0.0)
                    elif isinstance(ev, ModelLoadProgress):
                        self.model_loading.emit(turn.id, ev.progress)
                    elif isinstance(ev, ToolCallSuccess):
                        item = {
                            "type": "tool_call",
                            "tool": ev.tool,
                            "arguments": ev.arguments,
                            "output": ev.output,
                        }
                        answer.add(item)
                        self.item_added.emit(turn.id, item)
                    elif isinstance(ev, ToolCallFailure):
                        item = {
                            "type": "invalid_tool_call",
                            "reason": ev.reason,
                            "metadata": ev.metadata,
                        }
                        answer.add(item)
                        self.item_added.emit(turn.id, item)
                    elif isinstance(ev, ErrorEvent):
                        error, error_code = ev.message, ev.error.code
                    elif isinstance(ev, ChatEnd):
                        continue
                    now = time.monotonic()
                    if now - last_save >= SAVE_INTERVAL:
                        last_save = now
                        # A copy: the worker serialises it while new deltas extend the answer.
                        saved = [dict(i) for i in answer.items]
                        await self.store.save_progress(turn.id, saved, instance_id)
            result = stream.result
        except asyncio.CancelledError:
            done = await self._close(turn.id, "stopped", answer.items, instance_id=instance_id)
            self.turn_finished.emit(done)
            raise
        except (BadRequestError, NotFoundError) as exc:
            error, error_code = str(exc), exc.code
            result = None
        except ServerNotWatchedError as exc:
            done = await self._close(turn.id, "error", answer.items, error=str(exc))
            self.turn_finished.emit(done)
            return done
        except ServerUnreachable as exc:
            done = await self._close(
                turn.id, "interrupted", answer.items, instance_id=instance_id, error=str(exc)
            )
            self.turn_finished.emit(done)
            return done
        except ApiError as exc:
            error, result = str(exc), None
        if result is not None and error is None:
            output = [stored_item(i) for i in result.output] or answer.items
            done = await self._close(
                turn.id,
                "complete",
                output,
                stats={k: v for k, v in stats_dict(result.stats).items() if v is not None},
                response_id=result.response_id,
                instance_id=result.model_instance_id or instance_id,
            )
            if done.instance_id:
                self._on_used(done.instance_id)
        else:
            message = error or "The server ended the answer without a result."
            done = await self._close(
                turn.id, "error", answer.items, instance_id=instance_id, error=message
            )
            if previous and is_lost_continuation(error_code, message):
                self.continuation_lost.emit(
                    turn.id,
                    "The server no longer knows this conversation (it was restarted, or the "
                    "stored response expired), so this branch cannot be continued there.",
                )
        self.turn_finished.emit(done)
        return done

    async def _close(
        self,
        turn_id: int,
        status: str,
        output: list[dict[str, Any]],
        *,
        stats: dict[str, Any] | None = None,
        response_id: str | None = None,
        instance_id: str | None = None,
        error: str | None = None,
    ) -> TurnRecord:
        # Shielded: a Stop (cancel) while the turn is being closed must not leave it "streaming".
        return await asyncio.shield(
            self.store.finish_turn(
                turn_id,
                status=status,
                output=output,
                stats=stats,
                response_id=response_id,
                instance_id=instance_id,
                error=error,
            )
        )


def stored_item(item: OutputItem) -> dict[str, Any]:
    """An output item as the plain dict the store keeps (the wire shape)."""
    if isinstance(item, UnknownItem):
        return {"type": item.item_type, **item.data}
    data: dict[str, Any] = msgspec.to_builtins(item)
    return data


def stats_dict(stats: ChatStats) -> dict[str, Any]:
    """The answer's stats as the plain dict the store keeps."""
    data: dict[str, Any] = msgspec.structs.asdict(stats)
    return data
