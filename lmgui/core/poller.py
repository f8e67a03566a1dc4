"""The poller: one model list request at a time, a keyed diff after each, backoff when offline.

QtCore only. One single-shot timer is re-armed after each poll finishes, so polls never
overlap; ``poke()`` asks for a refresh now (or right after the poll in flight). While the server
is unreachable the delay doubles up to ``max_backoff_ms``, and the first good poll resets it.
Nothing is emitted for a poll that changed nothing.

A poll that has not finished after ``slow_after_ms`` turns the state to SLOW (the table stays as
it was); the client's own deadline for the model list ends it, as UNREACHABLE, and the schedule
goes on from there. A poll asked for while polling is paused still runs (an unload is verified
against a fresh list), and every poll ends with ``poll_finished``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from lmgui.api.errors import ApiError
from lmgui.api.records import Model
from lmgui.core.snapshot import Snapshot, diff
from lmgui.core.status import ConnectionState, PollStatus, classify

__all__ = ["ConnectionState", "PollStatus", "Poller"]

log = logging.getLogger(__name__)

Fetch = Callable[[bool], Awaitable[list[Model] | None]]
"""Returns the server's models, or None when they are unchanged since the last call. Its
argument is True for a poll asked for (``poke``): one that must ask the server everything, where
a regular poll may reuse what rarely changes."""


class Poller(QObject):
    snapshot_changed = Signal(object, object)
    """(SnapshotDiff, Snapshot) after a poll that changed something."""
    status_changed = Signal(object)
    """PollStatus, when the connection state or its message changes."""
    poll_finished = Signal()
    """After every poll, good or not."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        interval_ms: int = 2000,
        max_backoff_ms: int = 30_000,
        slow_after_ms: int = 5000,
        has_token: Callable[[], bool] = lambda: False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._fetch = fetch
        self._has_token = has_token
        self.interval_ms = interval_ms
        self.max_backoff_ms = max_backoff_ms
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._slow_timer = QTimer(self)
        self._slow_timer.setSingleShot(True)
        self._slow_timer.setInterval(slow_after_ms)
        self._slow_timer.timeout.connect(self._on_slow_timer_timeout)
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._extra = False
        self._asked = False
        self._closed = False
        self._running = False
        self._failures = 0
        self.snapshot = Snapshot()
        self.snapshot_asked_at = 0.0
        """Wall time the request that returned ``snapshot`` was sent."""
        self._last_success: float | None = None
        self.status = PollStatus(ConnectionState.CONNECTING, since=time.time())
        self.polls = 0
        self.changed = False
        """The last poll changed the snapshot or the state (most change nothing)."""

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Start polling, with a first poll at once."""
        self._running = True
        self.poke()

    def stop(self) -> None:
        self._running = False
        self._extra = False
        self._timer.stop()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def scheduled(self) -> bool:
        """A poll is due on the timer."""
        return self._timer.isActive()

    @property
    def in_flight(self) -> bool:
        return self._task is not None and not self._task.done()

    def poke(self) -> None:
        """Refresh now; if a poll is in flight, poll again as soon as it ends."""
        if self._closed:
            return
        self._asked = True
        if self.in_flight:
            self._again = True
            return
        self._timer.stop()
        self._task = asyncio.ensure_future(self._poll())

    def set_interval(self, interval_ms: int) -> None:
        """A new regular interval, applied from the next wait on."""
        self.interval_ms = max(100, interval_ms)
        if self._timer.isActive() and self._failures == 0:
            self._timer.start(self.interval_ms)

    async def aclose(self) -> None:
        """Stop and wait for the poll in flight to end (cancelled); no poll runs afterwards."""
        self._closed = True
        self.stop()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ the poll

    def next_delay_ms(self) -> int:
        if self._failures == 0:
            return self.interval_ms
        backoff: int = self.interval_ms * 2 ** min(self._failures, 16)
        return min(self.max_backoff_ms, backoff)

    def _on_timer_timeout(self) -> None:
        extra, self._extra = self._extra, False
        if (self._running or extra) and not self.in_flight:
            self._task = asyncio.ensure_future(self._poll())

    def _on_slow_timer_timeout(self) -> None:
        if self.in_flight and self.status.state is ConnectionState.CONNECTED:
            seconds = self._slow_timer.interval() / 1000
            self._set_status(
                ConnectionState.SLOW,
                f"The server has taken more than {seconds:g} s to send the model list.",
            )

    async def _poll(self) -> None:
        self._slow_timer.start()
        started = time.time()
        asked, self._asked = self._asked, False
        self.changed = False
        try:
            models = await self._fetch(asked)
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            self._failures += 1
            self._set_status(classify(exc, self._has_token()), str(exc))
        except Exception as exc:  # a bug in parsing or below: keep polling, say so once
            log.exception("poll failed")
            self._failures += 1
            self._set_status(ConnectionState.FAILING, f"Unexpected error: {exc}")
        else:
            self._failures = 0
            self.polls += 1
            self._last_success = time.time()
            if models is not None:
                # Parsing was one slice of the event loop; diff and apply are the next one.
                await asyncio.sleep(0)
                new = Snapshot.of(models)
                d = diff(self.snapshot, new)
                self.snapshot = new
                self.snapshot_asked_at = started
                if not d.empty:
                    self.changed = True
                    self.snapshot_changed.emit(d, new)
                    # What listens to the end of a poll (the window's totals, the tray) runs
                    # in a slice of its own.
                    await asyncio.sleep(0)
            self._set_status(ConnectionState.CONNECTED, "")
        finally:
            self._slow_timer.stop()
            self._after_poll()

    def _after_poll(self) -> None:
        if self._closed:
            return  # a poll asked for while this one ran must not outlive the client
        if self._again:
            # Asked for while this poll ran: one more, even with polling paused (an unload
            # waits for a list fetched after it).
            self._again = False
            self._extra = True
            self._timer.start(0)
        elif self._running:
            self._timer.start(self.next_delay_ms())
        self.poll_finished.emit()

    def _set_status(self, state: ConnectionState, message: str) -> None:
        old = self.status
        since = old.since if old.state == state else time.time()
        self.status = PollStatus(state, message, since, self._last_success)
        if (old.state, old.message) != (state, message):
            self.changed = True
            self.status_changed.emit(self.status)
