"""What lmgui knows about instances that the server does not list: GPU offload and idle TTL.

When lmgui loaded an instance it remembers the GPU offload (for the VRAM estimate) and the TTL.
When the server did not take the TTL, lmgui enforces it: an idle timer, reset by lmgui's own
requests to the instance, that unloads it at expiry. The ledger is kept in a JSON file per
server, so countdowns survive a restart of lmgui.

A server with LM Studio's SDK channel says more of each instance (its own TTL, its last use by
any client, whether it is answering): lmgui then never unloads one the server keeps a TTL for,
one that is busy, or one used since lmgui last looked.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lmgui.api.records import Instance
from lmgui.core.instances import InstanceInfo
from lmgui.core.paths import private_dir
from lmgui.core.snapshot import Snapshot

__all__ = ["InstanceLedger", "LedgerEntry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerEntry:
    model_key: str
    context_length: int | None = None
    gpu_fraction: float | None = None
    ttl_seconds: int | None = None
    enforced: bool = False
    last_used: float = 0.0


class InstanceLedger:
    def __init__(
        self,
        path: Path | None,
        *,
        wall: Callable[[], float] = time.time,
        report: Callable[[str], None] | None = None,
    ) -> None:
        """``report`` hears, once, that the file cannot be written (countdowns then last only
        while lmgui runs)."""
        self.path = path
        self._wall = wall
        self._report = report
        self._said = False
        self.entries: dict[str, LedgerEntry] = self._read()
        self._server_used: dict[str, float] = {}
        """Per instance, the last use the server reported when lmgui last looked (not saved:
        after a restart the ledger's own ``last_used`` is the reference)."""

    def _read(self) -> dict[str, LedgerEntry]:
        if self.path is None:
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {k: LedgerEntry(**v) for k, v in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring an unreadable instance ledger %s: %s", self.path, exc)
            return {}

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            private_dir(self.path.parent)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({k: asdict(v) for k, v in self.entries.items()}, f, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot save the instance ledger %s: %s", self.path, exc)
            if self._report is not None and not self._said:
                self._said = True
                self._report(
                    f"lmgui cannot save what it knows of loaded instances to {self.path} "
                    f"({exc.strerror or exc}); TTL countdowns will not survive a restart."
                )

    def record_load(
        self,
        instance_id: str,
        model_key: str,
        *,
        context_length: int | None,
        gpu_fraction: float | None,
        ttl_seconds: int | None,
        enforced: bool,
    ) -> None:
        self.entries[instance_id] = LedgerEntry(
            model_key, context_length, gpu_fraction, ttl_seconds, enforced, self._wall()
        )
        self._save()

    def touch(self, instance_id: str) -> None:
        """lmgui used the instance: its idle timer starts again."""
        entry = self.entries.get(instance_id)
        if entry is not None:
            self.entries[instance_id] = replace(entry, last_used=self._wall())
            self._save()

    def forget(self, instance_id: str) -> None:
        self._server_used.pop(instance_id, None)
        if self.entries.pop(instance_id, None) is not None:
            self._save()

    def note_server_uses(self, polled: Iterable[Instance]) -> bool:
        """Count a use the server reports (any client's, through the SDK channel's last-use
        time) as a use: the idle timer starts again. True if any entry changed.

        The first time lmgui sees an instance's last use, one later than the ledger's counts
        (a use while lmgui was not running). After that, any change of it counts, at the time
        lmgui saw it: the server's clock may not be this machine's, and a use reported late by
        a skewed clock must still reset the timer, never shorten it."""
        now = self._wall()
        touched = False
        for inst in polled:
            entry = self.entries.get(inst.id)
            used = inst.last_used
            if entry is None or used is None:
                continue
            seen = self._server_used.get(inst.id)
            self._server_used[inst.id] = used
            if seen is None:
                when = min(used, now) if used > entry.last_used else None
            else:
                when = now if used != seen else None
            if when is not None and when > entry.last_used:
                self.entries[inst.id] = replace(entry, last_used=when)
                touched = True
        if touched:
            self._save()
        return touched

    def sync(self, snapshot: Snapshot, taken_at: float | None = None) -> bool:
        """Drop entries whose instance is gone or is now a different load; True if any went.

        ``taken_at`` (wall time the list was asked for): an entry recorded or used after it is
        kept, since a list fetched before a load finished cannot show that load yet."""
        # Uses first, so the countdowns shown from this poll already count them.
        self.note_server_uses(i for _, i in snapshot.instances)
        live: dict[str, Any] = {i.id: (m.key, i.context_length) for m, i in snapshot.instances}
        stale = [
            iid
            for iid, e in self.entries.items()
            if (taken_at is None or e.last_used <= taken_at)
            and (
                live.get(iid) is None
                or live[iid][0] != e.model_key
                or (e.context_length is not None and live[iid][1] != e.context_length)
            )
        ]
        for iid in stale:
            del self.entries[iid]
            self._server_used.pop(iid, None)
        if stale:
            self._save()
        return bool(stale)

    def expired(self, polled: Iterable[Instance] = ()) -> list[str]:
        """Instances whose lmgui-enforced TTL has run out.

        ``polled``: the instances as the server last listed them. lmgui's TTL is only for a
        server that keeps none: never one the server holds a TTL for (``ttl_seconds``), never
        one answering right now (``busy``), and a use the server reports resets the timer."""
        records = list(polled)
        self.note_server_uses(records)
        spared = {i.id for i in records if i.ttl_seconds is not None or i.busy}
        now = self._wall()
        return [
            iid
            for iid, e in self.entries.items()
            if e.enforced
            and e.ttl_seconds is not None
            and now - e.last_used >= e.ttl_seconds
            and iid not in spared
        ]

    def infos(self) -> dict[str, InstanceInfo]:
        return {
            iid: InstanceInfo(
                gpu_fraction=e.gpu_fraction,
                ttl_seconds=e.ttl_seconds,
                idle_deadline=e.last_used + e.ttl_seconds if e.ttl_seconds else None,
                enforced_by_lmgui=e.enforced,
            )
            for iid, e in self.entries.items()
        }
