"""Which events deserve a desktop notification, and in what words: Qt-free, fed by the poller's
status and diffs and by the actions' outcomes. ``Notifier`` (core/notify.py) then drops repeats,
kinds the user turned off, and everything while notifications are paused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lmgui.api.records import LoadResult
from lmgui.core.instances import InstanceInfo
from lmgui.core.snapshot import SnapshotDiff
from lmgui.core.status import ConnectionState, PollStatus

__all__ = ["Notice", "NotificationPolicy"]

OFFLINE = frozenset({ConnectionState.UNREACHABLE, ConnectionState.FAILING})

TTL_SLACK_SECONDS = 2.0
"""An instance that vanishes this close to its idle deadline was unloaded by its TTL."""


@dataclass(frozen=True)
class Notice:
    kind: str
    """One of core/notify.py's KINDS (each can be turned off)."""
    key: str
    """Names the event: the same key again within a minute is a repeat."""
    title: str
    body: str


class NotificationPolicy:
    """Turns what happened into notices. Keeps only the last connection state."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._last = ConnectionState.CONNECTING

    def status(self, status: PollStatus) -> list[Notice]:
        """Offline (unreachable, or failing) after being online, or back after being offline.

        Not the first connect, not a poll that is merely slow, and not a token being asked for
        or accepted: the window says those, and the server was never away."""
        was, self._last = self._last, status.state
        if was.online and status.state in OFFLINE:
            return [Notice("server", "offline", "LM Studio is unreachable", status.message)]
        if status.state.online and was in OFFLINE:
            return [
                Notice("server", "online", "LM Studio is back", f"{self.server} answers again.")
            ]
        return []

    def vanished(
        self,
        diff: SnapshotDiff,
        expected: Callable[[str, str, str], bool],
        infos: Mapping[str, InstanceInfo],
        now: float | None = None,
    ) -> list[Notice]:
        """Instances gone without lmgui asking, with the reason when it is known."""
        now = time.time() if now is None else now
        notices = []
        for iid in diff.instances_removed:
            model_key = next((c.model.key for c in diff.changed if iid in c.instances_removed), "")
            if expected("removed", iid, model_key):
                continue
            info = infos.get(iid)
            if info and info.idle_deadline and info.idle_deadline <= now + TTL_SLACK_SECONDS:
                why = "Its idle TTL ran out on the server."
            else:
                why = (
                    "Unloaded without lmgui: an idle TTL, auto-evict of JIT loads, or another "
                    "client."
                )
            notices.append(Notice("vanished", iid, f"{iid} was unloaded", why))
        return notices

    @staticmethod
    def appeared(diff: SnapshotDiff, expected: Callable[[str, str, str], bool]) -> list[Notice]:
        """Instances loaded without lmgui asking: another app's request (a JIT load) or client."""
        added = [(c.model.key, i) for c in diff.changed for i in c.instances_added]
        added += [(m.key, i) for m in diff.added for i in m.instances]
        return [
            Notice(
                "appeared",
                inst.id,
                f"{inst.id} was loaded by another app",
                f"{key}: loaded without lmgui (another app's request loaded it just in time, "
                "or another client did).",
            )
            for key, inst in added
            if not expected("added", inst.id, key)
        ]

    @staticmethod
    def loaded(model_key: str, result: LoadResult) -> Notice:
        secs = f", loaded in {result.load_time_seconds:.1f} s." if result.load_time_seconds else "."
        return Notice(
            "loaded",
            result.instance_id,
            f"Loaded {result.instance_id}",
            f"{model_key} is ready{secs}",
        )

    @staticmethod
    def load_failed(model_key: str, message: str) -> Notice:
        return Notice("load_failed", f"{model_key}:{message}", "Load failed", message)

    @staticmethod
    def unloaded(instance_id: str) -> Notice:
        return Notice("unloaded", instance_id, f"Unloaded {instance_id}", "Its memory is free.")
