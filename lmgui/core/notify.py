"""Which events become desktop notifications: each kind can be turned off, none repeats, and
nothing is said while the user has paused them.

QtCore only: the tray shows what ``notify`` emits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

__all__ = ["KINDS", "Notifier"]

KINDS: dict[str, str] = {
    "loaded": "An instance lmgui loaded is ready",
    "unloaded": "An instance lmgui unloaded is gone",
    "vanished": "An instance disappeared without lmgui asking",
    "appeared": "Another app loaded an instance",
    "load_failed": "A load failed",
    "server": "The server went offline or came back",
    "snapshot": "Freeing the GPU or restoring a snapshot finished",
    "make_way": "lmgui made way for another GPU program, or brought the models back",
}

REPEAT_SECONDS = 60.0


class Notifier(QObject):
    notify = Signal(str, str, str)
    """(kind, title, body)"""

    def __init__(
        self,
        enabled: Callable[[str], bool],
        parent: QObject | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(parent)
        self._enabled = enabled
        self._clock = clock
        self.paused = False
        self._said: dict[str, float] = {}

    def say(self, kind: str, key: str, title: str, body: str) -> bool:
        """Say it, unless its kind is off, notifications are paused, or it was just said.

        ``key`` names the event (the same key within REPEAT_SECONDS is a repeat).
        Returns whether it was said.
        """
        now = self._clock()
        seen = self._said.get(f"{kind}:{key}")
        if seen is not None and now - seen < REPEAT_SECONDS:
            return False
        self._said[f"{kind}:{key}"] = now
        if self.paused or not self._enabled(kind):
            return False
        self.notify.emit(kind, title, body)
        return True
