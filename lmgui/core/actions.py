"""Load and unload as tasks owned in one place: progress, failures, and what lmgui caused.

Dialogs hand over value objects (``LoadRequest``, which names its server); ``Actions`` runs
each on that server's connection in its ``TaskSet``, reports each outcome as a signal with a
sentence a user understands, ends what is in flight with a sentence when lmgui quits, and
remembers which instance changes lmgui itself made, so the table marks only the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence

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
    unload_finished = Signal(str, str)
    """(instance id, server URL), confirmed gone by the next poll"""
    unload_failed = Signal(str, str, str)
    """(instance id, a sentence, server URL)"""
    ttl_expired = Signal(str, str)
    """(instance id, server URL) that lmgui unloads because its lmgui-enforced TTL ran out"""
    pending_changed = Signal()

    def __init__(
        self,
        connection: Callable[[str], ServerConnection | None],
        parent: QObject | None = None,
        *,
        connections: Callable[[], Iterable[ServerConnection]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        report: Callable[[str], None] | None = None,
    ) -> None:
        """``connection(url)`` is that server's connection ("" for the window's current
        server), None when lmgui no longer watches it; ``connections()`` every server watched
        (lmgui enforces TTLs on each; default: the current one); ``report`` hears a failure of
        lmgui's own (not the server's, which the signals carry) as one sentence."""
        super().__init__(parent)
        self._connection = connection
        self._connections = connections or (lambda: [c for c in (connection(""),) if c])
        self._clock = clock
        self.tasks = TaskSet("actions", report)
        self.loading: dict[int, LoadRequest] = {}
        self._load_ids = 0
        self._expect_added: dict[tuple[str, str], float] = {}
        self._expect_removed: dict[tuple[str, str], float] = {}
        """By (server URL, instance id): two servers may well have instances of one name."""
        self.unloading: set[tuple[str, str]] = set()
        """(server URL, instance id) of the unloads in flight."""
        self._load_tasks: dict[int, asyncio.Task[LoadResult | None]] = {}
        self._unload_tasks: dict[asyncio.Task[list[str]], tuple[str, list[str]]] = {}
        self._ttl_timer = QTimer(self)
        self._ttl_timer.setInterval(1000)
        self._ttl_timer.timeout.connect(self._on_ttl_timer_timeout)
        self._ttl_timer.start()

    # ------------------------------------------------------------------ what lmgui caused

    def pending(self, server: str | None = None) -> set[str]:
        """Model keys with a load in flight (on ``server``; None: on any)."""
        return {
            r.model_key
            for r in self.loading.values()
            if server is None or self._url(r.server) == server
        }

    def expected(self, kind: str, instance_id: str, model_key: str, server: str = "") -> bool:
        """Whether lmgui itself caused this "added" or "removed" ``kind`` on ``server``
        ("": the current server)."""
        now = self._clock()
        url = self._url(server)
        if kind == "added":
            if any(
                r.model_key == model_key and self._url(r.server) == url
                for r in self.loading.values()
            ):
                return True  # the server lists an instance as soon as its load starts
            return self._expect_added.get((url, instance_id), 0.0) > now
        return self._expect_removed.get((url, instance_id), 0.0) > now

    def expect(self, kind: str, instance_ids: Sequence[str], server: str = "") -> None:
        """lmgui itself is about to add or remove these instances on ``server`` (a restore,
        freeing the GPU): the tree and the notifications do not report them as another app's."""
        until = self._clock() + EXPECT_SECONDS
        marks = self._expect_added if kind == "added" else self._expect_removed
        url = self._url(server)
        for iid in instance_ids:
            marks[(url, iid)] = until

    def _url(self, server: str) -> str:
        """The normalized URL of ``server`` ("" : the current server's)."""
        if server:
            return server
        conn = self._connection("")
        return conn.url if conn is not None else ""

    def _conn(self, server: str) -> ServerConnection:
        """``server``'s connection, or ``ApiError`` with a sentence when lmgui no longer
        watches it (it was removed or switched off in Settings)."""
        conn = self._connection(server)
        if conn is None:
            raise ApiError(f"lmgui no longer watches {server or 'a server'}")
        return conn

    # ------------------------------------------------------------------ tasks

    def abandon_server(self, url: str, reason: str) -> None:
        """End the loads and unloads in flight on server ``url`` (it is no longer watched),
        each with a sentence: ``reason`` says why ("lmgui no longer watches …")."""
        for ticket, request in list(self.loading.items()):
            if self._url(request.server) != url:
                continue
            load = self._load_tasks.pop(ticket, None)
            if load is not None:
                load.cancel()
            self.loading.pop(ticket, None)
            self.load_failed.emit(
                request,
                f"lmgui stopped following the load of {request.model_key}: {reason}; that "
                "server may still finish it.",
            )
        for unload, (server, ids) in list(self._unload_tasks.items()):
            if server != url:
                continue
            unload.cancel()
            del self._unload_tasks[unload]
            self.unloading.difference_update((url, iid) for iid in ids)
            for iid in ids:
                self.unload_failed.emit(iid, f"Unloading {iid} was not confirmed: {reason}.", url)
        self.pending_changed.emit()

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
            client = await self._conn(request.server).ready()
            return await client.estimate_load(request.model_key, embedding=embedding, **kwargs)
        except ApiError as exc:
            log.info("no estimate from the server: %s", exc)
            return None

    def load(self, request: LoadRequest) -> asyncio.Task[LoadResult | None]:
        """Load on ``request.server`` ("" : the current server; the request is handed on with
        that server's URL filled in, so every signal about it names its server)."""
        conn = self._connection(request.server)
        if conn is not None and request.server != conn.url:
            request = dataclasses.replace(request, server=conn.url)
        self._load_ids += 1
        ticket = self._load_ids
        self.loading[ticket] = request
        self.pending_changed.emit()
        self.load_started.emit(request)
        if conn is not None:
            conn.poller.poke()  # the new instance shows at once, as "loading"
        task = self.tasks.spawn(self._load(ticket, request), f"Loading {request.model_key}")
        self._load_tasks[ticket] = task
        task.add_done_callback(lambda _t: self._load_tasks.pop(ticket, None))
        return task

    async def _load(self, ticket: int, req: LoadRequest) -> LoadResult | None:
        conn: ServerConnection | None = None
        try:
            conn = self._conn(req.server)
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
            if conn is not None:
                conn.poller.poke()
        self._expect_added[(conn.url, result.instance_id)] = self._clock() + EXPECT_SECONDS
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

    def unload(self, instance_ids: Sequence[str], server: str = "") -> asyncio.Task[list[str]]:
        """Unload these instances of ``server`` ("": the current one); each is confirmed by the
        next poll, or reported as remaining."""
        now = self._clock()
        url = self._url(server)
        for iid in instance_ids:
            self._expect_removed[(url, iid)] = now + EXPECT_SECONDS
            self.unloading.add((url, iid))
        self.pending_changed.emit()
        what = f"Unloading {', '.join(instance_ids)}"
        task = self.tasks.spawn(self._unload(list(instance_ids), url), what)
        self._unload_tasks[task] = (url, list(instance_ids))
        task.add_done_callback(lambda t: self._unload_tasks.pop(t, None))
        return task

    async def _unload(self, ids: list[str], url: str) -> list[str]:
        asked: list[str] = []
        try:
            try:
                conn = self._conn(url)
            except ApiError as exc:
                for iid in ids:
                    self.unload_failed.emit(iid, f"Unloading {iid} failed: {exc}", url)
                return []
            client = await conn.ready()
            for iid in ids:
                try:
                    await client.unload(iid)
                    asked.append(iid)
                except ApiError as exc:
                    self.unload_failed.emit(iid, f"Unloading {iid} failed: {exc}", url)
            if not asked:
                return []
            await self._next_poll(conn)
            present = {i.id for _, i in conn.poller.snapshot.instances}
            gone = []
            for iid in asked:
                if iid in present:
                    self.unload_failed.emit(iid, still_loaded_sentence([iid]), url)
                else:
                    conn.ledger.forget(iid)
                    gone.append(iid)
                    self.unload_finished.emit(iid, url)
            return gone
        finally:
            self.unloading.difference_update((url, iid) for iid in ids)
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
        for conn in self._connections():
            if not conn.poller.status.state.online:
                continue  # the countdown is not a reason to fire requests at an offline server
            # The last poll's records: what the server says of each instance (its own TTL,
            # busy, last use) spares it from lmgui's TTL.
            polled = (i for _, i in conn.poller.snapshot.instances)
            expired = [
                iid for iid in conn.ledger.expired(polled) if (conn.url, iid) not in self.unloading
            ]
            if expired:
                for iid in expired:
                    self.ttl_expired.emit(iid, conn.url)
                self.unload(expired, conn.url)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
