"""Snapshots as the window and the tray use them: free the GPU, restore, save and forget, each a
task with one sentence at the end. QtCore only (signals); the rules are in ``saved_sets``.

The unloads and loads it does are lmgui's own: ``Actions`` is told, so the tree and the
notifications do not report them as another app's. "Restore" stays offered (``restorable``)
until the "before freeing" snapshot has been restored in full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from PySide6.QtCore import QObject, Signal

from lmgui.api.errors import ApiError
from lmgui.core import saved_sets
from lmgui.core.actions import Actions
from lmgui.core.connection import ServerConnection
from lmgui.core.saved_sets import (
    FREEING,
    FreeSummary,
    RestoreSummary,
    SavedInstance,
    SavedSet,
    SavedSetStore,
    saved_set_of,
)
from lmgui.core.tasks import TaskSet

__all__ = ["SnapshotActions"]

T = TypeVar("T")


class SnapshotActions(QObject):
    progress = Signal(str)
    """A step of a free or restore in progress, as a sentence."""
    finished = Signal(str, bool, str)
    """(the summary sentence, True when everything asked for was done, the server's URL)"""
    changed = Signal()
    """The snapshots, the pins or ``working`` changed (menus and the tray rebuild)."""

    def __init__(
        self,
        connection: Callable[[str], ServerConnection],
        store: Callable[[ServerConnection], SavedSetStore],
        actions: Actions,
        parent: QObject | None = None,
    ) -> None:
        """``connection(url)``: that server's connection ("": the window's current one; an
        ``ApiError`` when lmgui no longer watches it)."""
        super().__init__(parent)
        self._connection = connection
        self._store = store
        self._actions = actions
        self.tasks = TaskSet("snapshots", actions.tasks.report)
        self.working = False
        self._stores: dict[str, SavedSetStore] = {}

    @property
    def store(self) -> SavedSetStore:
        """The current server's store."""
        return self.store_for(self._connection(""))

    def store_for(self, conn: ServerConnection) -> SavedSetStore:
        """``conn``'s store: one object per server, so its read cache lasts."""
        store = self._stores.get(conn.url)
        if store is None:
            store = self._stores[conn.url] = self._store(conn)
        return store

    def restorable(self, server: str = "") -> SavedSet | None:
        """The "before freeing" snapshot of ``server`` while it waits to be restored."""
        saved = self.store_for(self._connection(server)).get(FREEING)
        return saved if saved is not None and saved.instances else None

    def names(self) -> list[str]:
        return [s.name for s in self.store.all()]

    # ------------------------------------------------------------------ pins

    def pinned(self, server: str = "") -> set[str]:
        return self.store_for(self._connection(server)).pinned()

    def set_pinned(self, identifier: str, pinned: bool, server: str = "") -> None:
        conn = self._connection(server)
        try:
            self.store_for(conn).set_pinned(identifier, pinned)
        except OSError as exc:
            self.finished.emit(
                f"lmgui cannot keep the pin: {exc.strerror or exc}.", False, conn.url
            )
            return
        self.changed.emit()

    # ------------------------------------------------------------------ save and forget

    def save(self, name: str) -> str:
        """Save what the last poll saw as ``name``; the sentence to show. ``ValueError`` for a
        name that cannot be one."""
        conn = self._connection("")
        saved = saved_set_of(name, conn.url, conn.poller.snapshot.models, conn.ledger.infos())
        try:
            self.store.save(saved)
        except OSError as exc:
            return f"lmgui cannot save the snapshot: {exc.strerror or exc}."
        self.changed.emit()
        return f'Saved {len(saved.instances)} instance(s) as "{saved.name}".'

    def remove(self, name: str) -> None:
        try:
            self.store.remove(name)
        except OSError as exc:
            self.finished.emit(
                f"lmgui cannot forget the snapshot: {exc.strerror or exc}.",
                False,
                self._connection("").url,
            )
        else:
            self.changed.emit()

    # ------------------------------------------------------------------ free and restore

    def free_gpu(self, server: str = "") -> asyncio.Task[FreeSummary | None]:
        """Save ``server``'s loaded set as "before freeing" and unload all but the pinned (the
        caller has asked about busy instances)."""
        return self.tasks.spawn(self._run(self._free(server), server), "Freeing the GPU")

    def restore(self, name: str = FREEING, server: str = "") -> asyncio.Task[RestoreSummary | None]:
        return self.tasks.spawn(self._run(self._restore(name, server), server), f"Restoring {name}")

    async def _run(self, work: Awaitable[T], server: str) -> T | None:
        self.working = True
        self.changed.emit()
        try:
            return await work
        except ApiError as exc:
            self.finished.emit(str(exc), False, server)
            return None
        finally:
            self.working = False
            self.changed.emit()

    async def _free(self, server: str) -> FreeSummary | None:
        conn = self._connection(server)
        store = self.store_for(conn)
        client = await conn.ready()
        loaded = [i.id for _, i in conn.poller.snapshot.instances]
        pins = store.pinned()
        self._actions.expect("removed", [i for i in loaded if i not in pins], conn.url)
        self.progress.emit("Freeing the GPU: saving what is loaded, then unloading it…")
        try:
            summary = await saved_sets.free(client, store, infos=conn.ledger.infos(), keep=pins)
        except OSError as exc:
            self.finished.emit(
                f"lmgui cannot save the loaded set ({exc.strerror or exc}), so it unloaded "
                "nothing.",
                False,
                conn.url,
            )
            return None
        for iid in summary.unloaded:
            conn.ledger.forget(iid)
        conn.poller.poke()
        self.finished.emit(summary.sentence(), not summary.failed, conn.url)
        return summary

    async def _restore(self, name: str, server: str) -> RestoreSummary | None:
        conn = self._connection(server)
        store = self.store_for(conn)
        saved = store.get(name)
        if saved is None:
            self.finished.emit(f'There is no snapshot called "{name}".', False, conn.url)
            return None
        client = await conn.ready()
        self._actions.expect("added", [i.identifier for i in saved.instances], conn.url)

        def step(n: int, total: int, entry: SavedInstance) -> None:
            self.progress.emit(
                f"Restoring {name}: loading {entry.identifier} ({n + 1} of {total})…"
            )
            conn.poller.poke()

        summary = await saved_sets.restore(client, saved, on_step=step)
        if name == FREEING and summary.ok:
            store.remove(FREEING)  # restored in full: the tray's Restore has been used
        conn.poller.poke()
        self.finished.emit(summary.sentence(), summary.ok, conn.url)
        return summary

    async def aclose(self) -> None:
        await self.tasks.aclose()
