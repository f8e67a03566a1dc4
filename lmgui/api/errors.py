"""The client's one small error tree.

Every message is one sentence a user understands, and includes the server's own words where the
server said something. Transport and HTTP failures are mapped to these types at the client boundary
(``transport.py``); nothing else escapes the client.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = [
    "ApiError",
    "AuthError",
    "BadRequestError",
    "DeadlineExceeded",
    "InvalidServerUrl",
    "NotFoundError",
    "ProtocolError",
    "ResponseTooLarge",
    "ServerError",
    "ServerUnreachable",
    "UnsupportedServer",
    "dedupe_joined_message",
    "first_readable_line",
    "page_title",
]


class ApiError(Exception):
    """Base of every error the LM Studio client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        server_message: str | None = None,
        url: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.server_message = server_message
        self.url = url
        self.error_type = error_type
        """The server's error type, code and parameter, where it named them."""
        self.code = code
        self.param = param

    def __str__(self) -> str:
        return self.message


class ServerUnreachable(ApiError):
    """Connect failure, timeout, DNS failure or a connection dropped mid-response."""


class DeadlineExceeded(ServerUnreachable):
    """The server kept the connection open but did not finish answering in the time allowed
    (a server that sends a byte every few seconds, or one stopped mid-answer). Not retried."""


class AuthError(ApiError):
    """401 or 403: a token is missing, malformed or lacks permission."""


class NotFoundError(ApiError):
    """404: an unknown model, instance, job or route."""


class BadRequestError(ApiError):
    """400 (and other 4xx): the server rejected the request; keeps the server's details."""

    @property
    def unrecognized_keys(self) -> tuple[str, ...]:
        """The keys a strict server schema rejected ("Unrecognized key(s) in object: 'ttl'")."""
        text = self.server_message or ""
        match = re.search(r"Unrecognized key\(s\) in object:?(.*)", text)
        if not match:
            return ()
        return tuple(re.findall(r"['\"`]([^'\"`]+)['\"`]", match.group(1)))


class ServerError(ApiError):
    """5xx: the server failed (engine error, out of memory, internal error)."""


class ProtocolError(ApiError):
    """Not JSON, the wrong shape, or a 200 that carries an error."""


class ResponseTooLarge(ProtocolError):
    """The answer passed a size limit; lmgui stopped reading it and closed the connection."""


class InvalidServerUrl(ApiError):
    """The server address cannot be used (a bad port, an unclosed bracket, not http or https)."""


class UnsupportedServer(ApiError):
    """The server has no /api/v1: LM Studio older than 0.4, or not LM Studio."""


_TAG = re.compile(r"<[^>]+>")
_DROP_BLOCKS = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def first_readable_line(body: str, limit: int = 200) -> str:
    """The first line of text a person could read in a body that may be an HTML page."""
    text = body
    if "<" in text and ">" in text:
        title = _TITLE.search(text)
        stripped = _TAG.sub("\n", _DROP_BLOCKS.sub("\n", text))
        candidates = stripped.splitlines() + ([title.group(1)] if title else [])
    else:
        candidates = text.splitlines()
    for raw in candidates:
        line = " ".join(html.unescape(raw).split())
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def page_title(body: str, limit: int = 120) -> str:
    """A web page's title, else its first readable line."""
    title = _TITLE.search(body)
    if title:
        text = " ".join(html.unescape(_TAG.sub(" ", title.group(1))).split())
        if text:
            return text if len(text) <= limit else text[: limit - 1] + "…"
    return first_readable_line(body, limit)


def dedupe_joined_message(message: str) -> str:
    """Undo the server's invalid_union joining, which repeats one message per bad item with ", "."""
    n = len(message)
    for k in range(2, 65):
        part_len, rem = divmod(n - 2 * (k - 1), k)
        if part_len <= 0:
            break
        if rem == 0:
            part = message[:part_len]
            if ", ".join([part] * k) == message:
                return part
    return message


def error_fields(body: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, code, param) from any error body shape met in the wild.

    ``{"error": {"message", "type", "code", "param"}}``, ``{"error": "text"}``, llama.cpp-style
    bodies with a numeric code, and ``{"message": ...}``.
    """
    if not isinstance(body, dict):
        return None, None, None, None
    err = body.get("error", body if "message" in body else None)
    if isinstance(err, str):
        return err, None, None, None
    if isinstance(err, dict):
        msg = err.get("message")
        return (
            msg if isinstance(msg, str) else None,
            _str_or_none(err.get("type")),
            _str_or_none(err.get("code")),
            _str_or_none(err.get("param")),
        )
    return None, None, None, None


def _str_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)
