"""What happened on a server, as events: Qt-free, fed by the poller's diffs and status, and by
lmgui's own actions. Each event says who did it (lmgui, another client, the server) and why an
instance went where that can be told (its idle TTL, an eviction for another load, a restart).

``EventRecorder`` turns what the app sees into ``Event`` values; ``event_store`` keeps them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from lmgui.api.records import Instance, Model
from lmgui.core.format import gpu_offload_text, human_bytes, human_count
from lmgui.core.instances import InstanceInfo
from lmgui.core.snapshot import Snapshot, SnapshotDiff
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.vram import estimate_loaded

__all__ = [
    "KIND_TEXT",
    "SOURCE_TEXT",
    "Event",
    "EventKind",
    "EventRecorder",
    "Sample",
    "Source",
]

EventKind = Literal[
    "loaded", "unloaded", "load_failed", "offline", "online", "download_finished", "action"
]
Source = Literal["lmgui", "other", "server"]

KIND_TEXT: dict[str, str] = {
    "loaded": "loaded",
    "unloaded": "unloaded",
    "load_failed": "load failed",
    "offline": "offline",
    "online": "back online",
    "download_finished": "downloaded",
    "action": "lmgui",
}
SOURCE_TEXT: dict[str, str] = {"lmgui": "lmgui", "other": "another client", "server": "the server"}

TTL_SLACK_SECONDS = 5.0
"""An instance gone this close to (or after) its idle deadline was unloaded by its TTL."""

# Reasons an instance went, as the timeline says them.
BY_LMGUI = "unloaded by lmgui"
BY_OTHER = "unloaded by another client"
TTL = "its idle TTL ran out"
EVICTED = "evicted when another load needed room"
RESTART = "the server restarted"


@dataclass(frozen=True)
class Event:
    at: float
    """Wall-clock time (time.time())."""
    server: str
    kind: str
    source: str
    model_key: str | None = None
    identifier: str | None = None
    context_length: int | None = None
    gpu_offload: float | None = None
    vram_bytes: int | None = None
    detail: str | None = None
    """Why, or what: "its idle TTL ran out", a load's error, what lmgui did."""
    id: int | None = None
    """The row in the store, once kept."""

    def what(self) -> str:
        """The event without its time: "qwen/qwen3-4b as coder (16k, 50 %, about 2.6 GB),
        by another client"."""
        kind = KIND_TEXT.get(self.kind, self.kind)
        if self.kind in ("offline", "online"):
            return f"{self.server} {kind}" + (f": {self.detail}" if self.detail else "")
        if self.kind == "action":
            return self.detail or "lmgui did something"
        subject = self.identifier or self.model_key or "?"
        if self.identifier and self.model_key and self.identifier != self.model_key:
            subject = f"{self.model_key} as {self.identifier}"
        facts = [
            human_count(self.context_length) if self.context_length else None,
            gpu_offload_text(self.gpu_offload) if self.gpu_offload is not None else None,
            f"about {human_bytes(self.vram_bytes)}" if self.vram_bytes else None,
        ]
        said = ", ".join(f for f in facts if f)
        text = f"{kind} {subject}" + (f" ({said})" if said else "")
        by = SOURCE_TEXT.get(self.source, self.source)
        if self.kind == "unloaded" and self.detail:
            return f"{text}: {self.detail}"
        if self.kind == "load_failed" and self.detail:
            return f"{text}: {self.detail}"
        return f"{text}, by {by}"

    def line(self) -> str:
        """One line for the command line and "copy as text"."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        return f"{when}  {SOURCE_TEXT.get(self.source, self.source):<14}  {self.what()}"


@dataclass(frozen=True)
class Sample:
    """One point of the chart: a server's VRAM and instances at a time."""

    at: float
    server: str
    vram_bytes: int
    """lmgui's estimate of what the loaded instances hold."""
    instances: int
    measured_bytes: int | None = None
    """NVML's used memory, where the server is on this machine."""
    budget_bytes: int | None = None
    """What the VRAM is counted against (NVML's total, the user's budget, the server's survey)."""


class EventRecorder:
    """One server's events from what the app sees. Keeps only what telling causes apart needs:
    the last snapshot's instances, and whether the server was offline since."""

    def __init__(self, server: str, *, wall: Callable[[], float] = time.time) -> None:
        self.server = server
        self._wall = wall
        self._online: bool | None = None
        self._restarted = False
        """The server came back after being away: what vanished meanwhile went with it."""

    def _event(self, kind: str, source: str, **facts: object) -> Event:
        return Event(self._wall(), self.server, kind, source, **facts)  # type: ignore[arg-type]

    def _instance(
        self, kind: str, source: str, model: Model, inst: Instance, **more: object
    ) -> Event:
        return self._event(
            kind,
            source,
            model_key=model.key,
            identifier=inst.id,
            context_length=inst.context_length,
            gpu_offload=inst.gpu_offload,
            vram_bytes=estimate_loaded(model, inst, inst.gpu_offload),
            **more,
        )

    def changed(
        self,
        diff: SnapshotDiff,
        before: Snapshot,
        expected: Callable[[str, str, str], bool],
        infos: Mapping[str, InstanceInfo] | None = None,
    ) -> list[Event]:
        """Loads and unloads in one poll's diff, each with its cause where it can be told.

        ``before`` is the snapshot the diff starts from (the vanished instances' facts);
        ``expected(kind, id, key)`` says what lmgui itself caused."""
        infos = infos or {}
        now = self._wall()
        added = [(c.model, i) for c in diff.changed for i in c.instances_added]
        added += [(m, i) for m in diff.added for i in m.instances]
        old = {i.id: (m, i) for m, i in before.instances}
        removed = [old[iid] for c in diff.changed for iid in c.instances_removed if iid in old]
        removed += [(m, i) for m in before.models if m.key in diff.removed for i in m.instances]
        events: list[Event] = []
        if self._online is False:
            # The poll that finds the server again reports its list before its status: the
            # server is back, and what it forgot went with its restart.
            self._online = True
            self._restarted = True
            events.append(self._event("online", "server"))
        restarted, self._restarted = self._restarted, False
        for model, inst in removed:
            if expected("removed", inst.id, model.key):
                source, why = "lmgui", BY_LMGUI
            elif restarted:
                source, why = "server", RESTART
            elif _ttl_ran_out(inst, infos.get(inst.id), now):
                source, why = "server", TTL
            elif added:
                # Gone in the poll where another instance came: LM Studio's auto-evict (JIT
                # loads) or the guardrails made room for it.
                source, why = "server", EVICTED
            else:
                source, why = "other", BY_OTHER
            events.append(self._instance("unloaded", source, model, inst, detail=why))
        for model, inst in added:
            source = "lmgui" if expected("added", inst.id, model.key) else "other"
            events.append(self._instance("loaded", source, model, inst))
        return events

    def status(self, status: PollStatus) -> list[Event]:
        """Offline after being online, and back: the server's own events."""
        online = status.state.online
        was, self._online = self._online, online
        if was is None or was == online:
            return []
        if not online and status.state in (ConnectionState.UNREACHABLE, ConnectionState.FAILING):
            return [self._event("offline", "server", detail=status.message or None)]
        if online:
            self._restarted = True
            return [self._event("online", "server")]
        self._online = was  # connecting, a token asked for: neither away nor back
        return []

    def load_failed(self, model_key: str, message: str, source: str = "lmgui") -> Event:
        return self._event("load_failed", source, model_key=model_key, detail=message)

    def action(self, sentence: str) -> Event:
        """Something lmgui did on the user's behalf (freed the GPU, restored, made way)."""
        return self._event("action", "lmgui", detail=sentence)

    def download_finished(self, model_key: str) -> Event:
        return self._event("download_finished", "lmgui", model_key=model_key)


def _ttl_ran_out(inst: Instance, info: InstanceInfo | None, now: float) -> bool:
    if inst.ttl_seconds is not None and not inst.busy:
        left = inst.ttl_left(now)
        if left is not None and left <= TTL_SLACK_SECONDS:
            return True
    return bool(info and info.idle_deadline and info.idle_deadline <= now + TTL_SLACK_SECONDS)
