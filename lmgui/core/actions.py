"""Load and unload as tasks owned in one place: progress, failures, and what lmgui caused.

Dialogs hand over value objects (``LoadRequest``); this runner keeps a reference to every task,
reports each outcome as a signal with a sentence a user understands, cancels everything at quit,
and remembers which instance changes lmgui itself made, so the table marks only the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from lmgui.api.client import LMStudioClient
from lmgui.api.errors import ApiError
from lmgui.api.records import LoadResult
from lmgui.core.ledger import InstanceLedger
from lmgui.core.poller import Poller
from lmgui.core.requests import LoadRequest

__all__ = ["Actions", "LoadRequest"]

log = logging.getLogger(__name__)

EXPECT_SECONDS = 60.0


class Actions(QObject):
    load_started = Signal(object)
    """LoadRequest"""
    load_finished = Signal(object, object)
    """(LoadRequest, LoadResult)"""
    load_failed = Signal(object, str)
    """(LoadRequest, a sentence)"""
    unload_finished = Signal(str)
    """instance id, confirmed gone by the next poll"""
    unload_failed = Signal(str, str)
    """(instance id, a sentence)"""
    ttl_expired = Signal(str)
    """instance id that lmgui unloads because its lmgui-enforced TTL ran out"""
    pending_changed = Signal()

    def __init__(
        self,
        client: Callable[[], LMStudioClient],
        poller: Poller,
        ledger: InstanceLedger,
        parent: QObject | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(parent)
        self._client = client
        self._poller = poller
        self.ledger = ledger
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loading: dict[int, LoadRequest] = {}
        self._load_ids = 0
        self._expect_added: dict[str, float] = {}
        self._expect_removed: dict[str, float] = {}
        self.unloading: set[str] = set()
        self._ttl_timer = QTimer(self)
        self._ttl_timer.setInterval(1000)
        self._ttl_timer.timeout.connect(self._on_ttl_timer_timeout)
        self._ttl_timer.start()

    # ------------------------------------------------------------------ what lmgui caused

    def pending(self) -> set[str]:
        """Model keys with a load in flight."""
        return {r.model_key for r in self.loading.values()}

    def expected(self, kind: str, instance_id: str, model_key: str) -> bool:
        now = self._clock()
        if kind == "added":
            if any(r.model_key == model_key for r in self.loading.values()):
                return True  # the server lists an instance as soon as its load starts
            return self._expect_added.get(instance_id, 0.0) > now
        return self._expect_removed.get(instance_id, 0.0) > now

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        self._ttl_timer.stop()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # ------------------------------------------------------------------ load

    def load(self, request: LoadRequest) -> asyncio.Task[LoadResult | None]:
        self._load_ids += 1
        ticket = self._load_ids
        self.loading[ticket] = request
        self.pending_changed.emit()
        self.load_started.emit(request)
        self._poller.poke()  # the new instance shows at once, as "loading"
        return self._spawn(self._load(ticket, request))

    async def _load(self, ticket: int, req: LoadRequest) -> LoadResult | None:
        try:
            result = await self._client().load(req.model_key, **req.client_kwargs())
        except ApiError as exc:
            self.load_failed.emit(req, f"Loading {req.model_key} failed: {exc}")
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("load failed")
            self.load_failed.emit(req, f"Loading {req.model_key} failed unexpectedly: {exc}")
            return None
        finally:
            self.loading.pop(ticket, None)
            self.pending_changed.emit()
            self._poller.poke()
        self._expect_added[result.instance_id] = self._clock() + EXPECT_SECONDS
        ttl = req.ttl_seconds
        self.ledger.record_load(
            result.instance_id,
            req.model_key,
            context_length=result.load_config.get("context_length", req.context_length),
            gpu_fraction=req.gpu_fraction if "gpu" not in result.not_applied else None,
            ttl_seconds=ttl,
            enforced=ttl is not None and "ttl" in result.not_applied,
        )
        self.load_finished.emit(req, result)
        return result

    # ------------------------------------------------------------------ unload

    def unload(self, instance_ids: Sequence[str]) -> asyncio.Task[list[str]]:
        """Unload these instances; each is confirmed by the next poll, or reported as remaining."""
        now = self._clock()
        for iid in instance_ids:
            self._expect_removed[iid] = now + EXPECT_SECONDS
            self.unloading.add(iid)
        self.pending_changed.emit()
        return self._spawn(self._unload(list(instance_ids)))

    async def _unload(self, ids: list[str]) -> list[str]:
        asked: list[str] = []
        try:
            for iid in ids:
                try:
                    await self._client().unload(iid)
                    asked.append(iid)
                except ApiError as exc:
                    self.unload_failed.emit(iid, f"Unloading {iid} failed: {exc}")
            if not asked:
                return []
            await self._next_poll()
            present = {i.id for _, i in self._poller.snapshot.instances}
            gone = []
            for iid in asked:
                if iid in present:
                    self.unload_failed.emit(
                        iid, f"{iid} is still loaded after unloading it; the server kept it."
                    )
                else:
                    self.ledger.forget(iid)
                    gone.append(iid)
                    self.unload_finished.emit(iid)
            return gone
        finally:
            self.unloading.difference_update(ids)
            self.pending_changed.emit()

    async def _next_poll(self) -> None:
        """Wait for a poll that started after now (a poll already in flight may be stale)."""
        for _ in range(2 if self._poller.in_flight else 1):
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            finished = functools.partial(_resolve, done)
            self._poller.poll_finished.connect(finished)
            try:
                self._poller.poke()
                await asyncio.wait_for(done, 30)
            except TimeoutError:
                return
            finally:
                self._poller.poll_finished.disconnect(finished)

    # ------------------------------------------------------------------ TTL that lmgui enforces

    def _on_ttl_timer_timeout(self) -> None:
        if not self._poller.status.state.online:
            return  # the countdown is not a reason to fire requests at an offline server
        expired = [iid for iid in self.ledger.expired() if iid not in self.unloading]
        if expired:
            for iid in expired:
                self.ttl_expired.emit(iid)
            self.unload(expired)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
