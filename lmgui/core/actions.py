"""Load and unload as tasks owned in one place: progress, failures, and what lmgui caused.

Dialogs hand over value objects (``LoadRequest``); ``Actions`` runs each on the current server's
connection in its ``TaskSet``, reports each outcome as a signal with a sentence a user
understands, ends what is in flight with a sentence when the server is switched or lmgui quits,
and remembers which instance changes lmgui itself made, so the table marks only the others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, QTimer, Signal

from lmgui.api.errors import ApiError
from lmgui.api.records import LoadResult, ServerEstimate
from lmgui.core.connection import ServerConnection
from lmgui.core.messages import still_loaded_sentence
from lmgui.core.requests import LoadRequest
from lmgui.core.tasks import TaskSet

__all__ = ["Actions", "LoadRequest"]

log = logging.getLogger(__name__)

EXPECT_SECONDS = 60.0


class Actions(QObject):
    load_started = Signal(object)
    """LoadRequest"""
    load_progress = Signal(object, float)
    """(LoadRequest, 0..1) where the server reports the load's progress (its SDK channel)"""
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
        connection: Callable[[], ServerConnection],
        parent: QObject | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        report: Callable[[str], None] | None = None,
    ) -> None:
        """``connection()`` is the current server's; ``report`` hears a failure of lmgui's own
        (not the server's, which the signals carry) as one sentence."""
        super().__init__(parent)
        self._connection = connection
        self._clock = clock
        self.tasks = TaskSet("actions", report)
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

    def expect(self, kind: str, instance_ids: Sequence[str]) -> None:
        """lmgui itself is about to add or remove these instances (a restore, freeing the GPU):
        the tree and the notifications do not report them as another app's."""
        until = self._clock() + EXPECT_SECONDS
        marks = self._expect_added if kind == "added" else self._expect_removed
        for iid in instance_ids:
            marks[iid] = until

    # ------------------------------------------------------------------ tasks

    async def abandon(self, reason: str) -> None:
        """End every load and unload in flight, each with a sentence: ``reason`` says why
        ("lmgui switched to another server")."""
        loads = list(self.loading.values())
        unloads = sorted(self.unloading)
        await self.tasks.aclose()
        self.tasks = TaskSet("actions", self.tasks.report)
        for req in loads:
            self.load_failed.emit(
                req,
                f"lmgui stopped following the load of {req.model_key}: {reason}; that server "
                "may still finish it.",
            )
        for iid in unloads:
            self.unload_failed.emit(iid, f"Unloading {iid} was not confirmed: {reason}.")

    async def aclose(self) -> None:
        self._ttl_timer.stop()
        await self.tasks.aclose()

    # ------------------------------------------------------------------ load

    async def estimate(self, request: LoadRequest, *, embedding: bool) -> ServerEstimate | None:
        """LM Studio's own estimate of ``request``; None without the SDK channel, or when the
        server could not say (lmgui's own formula is shown either way, so this is no error)."""
        kwargs = request.client_kwargs()
        del kwargs["ttl"], kwargs["identifier"]  # they cost no memory
        try:
            client = await self._connection().ready()
            return await client.estimate_load(request.model_key, embedding=embedding, **kwargs)
        except ApiError as exc:
            log.info("no estimate from the server: %s", exc)
            return None

    def load(self, request: LoadRequest) -> asyncio.Task[LoadResult | None]:
        self._load_ids += 1
        ticket = self._load_ids
        self.loading[ticket] = request
        self.pending_changed.emit()
        self.load_started.emit(request)
        self._connection().poller.poke()  # the new instance shows at once, as "loading"
        return self.tasks.spawn(self._load(ticket, request), f"Loading {request.model_key}")

    async def _load(self, ticket: int, req: LoadRequest) -> LoadResult | None:
        conn = self._connection()
        try:
            client = await conn.ready()
            result = await client.load(
                req.model_key,
                **req.client_kwargs(),
                on_progress=lambda fraction: self.load_progress.emit(req, fraction),
            )
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
            conn.poller.poke()
        self._expect_added[result.instance_id] = self._clock() + EXPECT_SECONDS
        ttl = req.ttl_seconds
        conn.ledger.record_load(
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
        what = f"Unloading {', '.join(instance_ids)}"
        return self.tasks.spawn(self._unload(list(instance_ids)), what)

    async def _unload(self, ids: list[str]) -> list[str]:
        conn = self._connection()
        asked: list[str] = []
        try:
            client = await conn.ready()
            for iid in ids:
                try:
                    await client.unload(iid)
                    asked.append(iid)
                except ApiError as exc:
                    self.unload_failed.emit(iid, f"Unloading {iid} failed: {exc}")
            if not asked:
                return []
            await self._next_poll(conn)
            present = {i.id for _, i in conn.poller.snapshot.instances}
            gone = []
            for iid in asked:
                if iid in present:
                    self.unload_failed.emit(iid, still_loaded_sentence([iid]))
                else:
                    conn.ledger.forget(iid)
                    gone.append(iid)
                    self.unload_finished.emit(iid)
            return gone
        finally:
            self.unloading.difference_update(ids)
            self.pending_changed.emit()

    @staticmethod
    async def _next_poll(conn: ServerConnection) -> None:
        """Wait for a poll that started after now (a poll already in flight may be stale)."""
        poller = conn.poller
        for _ in range(2 if poller.in_flight else 1):
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            finished = functools.partial(_resolve, done)
            poller.poll_finished.connect(finished)
            try:
                poller.poke()
                await asyncio.wait_for(done, 30)
            except TimeoutError:
                return
            finally:
                poller.poll_finished.disconnect(finished)

    # ------------------------------------------------------------------ TTL that lmgui enforces

    def _on_ttl_timer_timeout(self) -> None:
        conn = self._connection()
        if not conn.poller.status.state.online:
            return  # the countdown is not a reason to fire requests at an offline server
        # The last poll's records: what the server says of each instance (its own TTL, busy,
        # last use) spares it from lmgui's TTL.
        polled = (i for _, i in conn.poller.snapshot.instances)
        expired = [iid for iid in conn.ledger.expired(polled) if iid not in self.unloading]
        if expired:
            for iid in expired:
                self.ttl_expired.emit(iid)
            self.unload(expired)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
