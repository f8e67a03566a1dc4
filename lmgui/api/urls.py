"""A server's address: what a user typed made into a base URL, refused when it cannot work, shown
without its password, and judged local or not (which decides whether ``lms`` can reach it).

Pure functions of a string; no I/O beyond this host's own name.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from lmgui.api.auth import url_password
from lmgui.api.errors import InvalidServerUrl

__all__ = [
    "DEFAULT_BASE_URL",
    "check_base_url",
    "display_url",
    "is_local_url",
    "lms_address",
    "normalize_base_url",
    "origin",
]

DEFAULT_BASE_URL = "http://127.0.0.1:1234"


def normalize_base_url(url: str) -> str:
    """``host:port`` or a pasted ``.../api/v1`` URL becomes ``http://host:port``."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    for suffix in ("/api/v1", "/v1", "/api/v0"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def check_base_url(url: str) -> str:
    """``normalize_base_url(url)``, or ``InvalidServerUrl`` with a sentence saying what is wrong.

    The sentence never repeats a password the URL may carry."""
    normalized = normalize_base_url(url)
    shown = display_url(normalized)
    try:
        parts = urlsplit(normalized)
        port = parts.port
    except ValueError as exc:
        reason = (
            "an IPv6 address needs its closing ]"
            if "IPv6" in str(exc)
            else "the port must be a number from 1 to 65535"
        )
        raise InvalidServerUrl(
            f"The server address {shown} is not a valid URL ({reason})."
        ) from None
    if port == 0:
        raise InvalidServerUrl(
            f"The server address {shown} is not a valid URL (the port must be a number from 1 "
            "to 65535)."
        )
    if parts.scheme not in ("http", "https"):
        raise InvalidServerUrl(f"The server address {shown} must start with http:// or https://.")
    try:
        parsed = httpx.URL(normalized)
    except (httpx.InvalidURL, ValueError) as exc:
        reason = str(exc).split(":", 1)[0].strip().rstrip(".").lower() or "it cannot be parsed"
        raise InvalidServerUrl(
            f"The server address {shown} is not a valid URL ({reason})."
        ) from None
    if not parsed.host:
        raise InvalidServerUrl(f"The server address {shown} names no host.")
    return normalized


def display_url(url: str) -> str:
    """``url`` as lmgui shows it: a password in it replaced by ``***``."""
    password = url_password(url)
    if not password:
        return url
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***{at}{hostpart}"


def origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port filled in, so that
    ``http://h`` and ``http://h:80`` count as one origin when deciding where the token may go."""
    u = httpx.URL(str(url))
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return (u.scheme, u.host.lower(), port)


def is_local_url(url: str) -> bool:
    """Whether the server is on this machine (loopback or this host's name); no DNS look-up."""
    try:
        host = (urlsplit(normalize_base_url(url)).hostname or "").lower()
    except ValueError:
        return False
    if host in ("localhost", socket.gethostname().lower()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def lms_address(url: str) -> tuple[str, int] | str:
    """``(host, port)`` to give ``lms --host --port`` for this server, or the reason ``lms``
    cannot address it (said to the user as "...: lms <reason>")."""
    if not is_local_url(url):
        return "only reaches an LM Studio on this machine"
    parts = urlsplit(normalize_base_url(url))
    if parts.scheme != "http" or parts.username or parts.password or parts.path not in ("", "/"):
        return "cannot address a server behind https, a password or a path"
    try:
        port = parts.port or 80
    except ValueError:
        return "cannot address this server's port"
    host = parts.hostname or "127.0.0.1"
    return ("127.0.0.1" if host == "localhost" else host), port
