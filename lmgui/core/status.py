"""The connection state of one server as the poller sees it, Qt-free (the tray's state, the
notification policy and the sentences read it without Qt)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from lmgui.api.errors import AuthError, ServerUnreachable, UnsupportedServer

__all__ = ["ConnectionState", "PollStatus", "classify"]


class ConnectionState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    SLOW = "slow"
    TOKEN_NEEDED = "token needed"
    TOKEN_REJECTED = "token rejected"
    UNREACHABLE = "unreachable"
    UNSUPPORTED = "not an LM Studio 0.4 server"
    FAILING = "server error"

    @property
    def online(self) -> bool:
        """The last poll succeeded (SLOW: and the one in flight is taking long)."""
        return self in (ConnectionState.CONNECTED, ConnectionState.SLOW)


@dataclass(frozen=True)
class PollStatus:
    state: ConnectionState
    message: str = ""
    since: float = 0.0
    """Wall-clock time this state began (time.time())."""
    last_success: float | None = None
    """Wall-clock time of the last good poll."""


def classify(exc: BaseException, has_token: bool) -> ConnectionState:
    if isinstance(exc, AuthError):
        return ConnectionState.TOKEN_REJECTED if has_token else ConnectionState.TOKEN_NEEDED
    if isinstance(exc, ServerUnreachable):
        return ConnectionState.UNREACHABLE
    if isinstance(exc, UnsupportedServer):
        return ConnectionState.UNSUPPORTED
    return ConnectionState.FAILING
