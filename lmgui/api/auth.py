"""The API token at the client's edge: cleaned once, refused when it cannot be sent, never shown.

A token reaches lmgui from a flag, the environment, the keyring, a pasted settings field or a file
saved on Windows: surrounding white space (a trailing CR/LF) is taken off everywhere it enters.
A token that still holds a character an HTTP header cannot carry is refused with a sentence that
does not contain it. Redaction covers the token as typed, as Python would print it (``repr``, the
bytes form) and its halves, so no message or log line can carry enough of it to use.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from lmgui.api.errors import AuthError

__all__ = ["InvalidTokenError", "Redactor", "clean_token", "url_password"]

_MIN_WHOLE = 4
_MIN_PART = 6
"""Shorter pieces are not redacted on their own: they would blank out ordinary words."""


class InvalidTokenError(AuthError):
    """The token cannot be sent in an HTTP header (a control or non-ASCII character)."""


def clean_token(token: str | None) -> str | None:
    """``token`` without surrounding white space, None when empty.

    Raises ``InvalidTokenError`` (whose message never contains the token) when a character in it
    cannot be sent: only visible ASCII can go in ``Authorization: Bearer ...``.
    """
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    bad = next((ch for ch in token if not 0x21 <= ord(ch) <= 0x7E), None)
    if bad is not None:
        what = (
            "a line break or control character"
            if ord(bad) < 0x20 or ord(bad) == 0x7F
            else "a space"
            if bad.isspace()
            else "a non-ASCII character"
        )
        raise InvalidTokenError(
            f"The API token contains {what}, which cannot be sent to the server; copy the token "
            "again from LM Studio (Developer, Server settings) and paste it without extra text."
        )
    return token


def url_password(url: str) -> str | None:
    """The password in a ``http://user:password@host`` URL, if any."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class Redactor:
    """Replaces every form of the given secrets in a text with ``***``."""

    def __init__(self, *secrets: str | None) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            for s in {secret, secret.strip()}:
                forms.update(f for f in _forms(s) if len(f) >= _MIN_WHOLE)
                half = len(s) // 2
                # "sk-lm-abc:def": the part after the colon is the secret LM Studio checks.
                parts = (s.partition(":")[2], s[:half], s[half:])
                forms.update(f for p in parts for f in _forms(p) if len(f) >= _MIN_PART)
        # Longest first, so a whole token is replaced before any of its parts.
        self._forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, "***")
        return text


def _forms(secret: str) -> set[str]:
    if not secret:
        return set()
    return {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
        secret.encode("unicode_escape").decode("ascii"),
    }
