"""API tokens in the OS keyring, one per server URL.

When no keyring backend exists (a bare Linux session, CI), every call says so instead of
failing: ``available`` turns False and tokens live for the session only, in the caller's memory.
"""

from __future__ import annotations

import logging

import keyring
import keyring.errors

from lmgui.api.client import normalize_base_url

__all__ = ["TokenStore"]

log = logging.getLogger(__name__)

SERVICE = "lmgui"


class TokenStore:
    def __init__(self, service: str = SERVICE) -> None:
        self.service = service
        self.available = True
        self.problem: str | None = None

    def _failed(self, exc: Exception) -> None:
        self.available = False
        # The exception text names the backend, never the token.
        self.problem = (
            f"No usable keyring ({type(exc).__name__}); tokens are kept for this session only."
        )
        log.info("keyring unavailable: %s", type(exc).__name__)

    def get(self, server_url: str) -> str | None:
        try:
            token = keyring.get_password(self.service, normalize_base_url(server_url))
        except Exception as exc:  # any backend may fail: D-Bus, locked, absent
            self._failed(exc)
            return None
        # Stored by another tool, or by an lmgui that kept a pasted line break.
        return (token or "").strip() or None

    def set(self, server_url: str, token: str) -> bool:
        try:
            keyring.set_password(self.service, normalize_base_url(server_url), token.strip())
        except Exception as exc:
            self._failed(exc)
            return False
        return True

    def delete(self, server_url: str) -> None:
        try:
            keyring.delete_password(self.service, normalize_base_url(server_url))
        except keyring.errors.PasswordDeleteError:
            pass
        except Exception as exc:
            self._failed(exc)
