"""One server's HTTP connection and the client's error boundary.

``Transport`` owns the ``httpx.AsyncClient`` for one server. Everything that crosses it leaves as
one of the types in ``errors.py``, with one sentence that names the server and quotes its own
words: httpx's transport errors, HTTP statuses and every error body shape met in the wild, a 200
that carries an error, a web page where JSON was due, an answer past its size limit or deadline.
The token goes only in ``Authorization: Bearer`` to the configured origin and is scrubbed from
every message and from the exchange log. Another channel to the same server (LM Studio's SDK
websocket) is meant to raise through ``err`` and ``deadline`` here, so its sentences match.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from typing import Any, cast

import httpx
import msgspec

from lmgui import __version__
from lmgui.api.auth import InvalidTokenError, Redactor, clean_token, url_password
from lmgui.api.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    DeadlineExceeded,
    NotFoundError,
    ProtocolError,
    ResponseTooLarge,
    ServerError,
    ServerUnreachable,
    UnsupportedServer,
    dedupe_joined_message,
    error_fields,
    first_readable_line,
    page_title,
)
from lmgui.api.limits import MIB, Limits
from lmgui.api.urls import check_base_url, display_url, origin

__all__ = ["Exchange", "Transport", "sentence"]

Exchange = Mapping[str, Any]
"""One request and its answer, as the ``on_exchange`` hook receives it (already redacted)."""

_UNEXPECTED_ENDPOINT = "Unexpected endpoint or method"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context of every client lmgui makes, as httpx would build it (its CA bundle,
    ``SSL_CERT_FILE`` honoured). Building one loads the bundle: about 20 ms on the GUI thread,
    paid once per process instead of at every new client (a server switch, each server of a
    fleet)."""
    return httpx.create_ssl_context()


KEEPALIVE_SECONDS = 4.0
"""How long an idle connection is kept for the next request: under the 5 s servers allow."""


class Transport:
    """The HTTP connection to one server; raises only ``errors.py``'s types."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float,
        limits: Limits,
        transport: httpx.AsyncBaseTransport | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.display_url = display_url(self.base_url)
        self._redact = Redactor(token, url_password(self.base_url))
        # A token that cannot be sent is kept as its error, so every request says why it failed
        # instead of going out without the token the user thinks is set.
        self._token_error: InvalidTokenError | None = None
        try:
            self._token = clean_token(token)
        except InvalidTokenError as exc:
            self._token, self._token_error = None, exc
        self.limits = limits
        self._origin = origin(self.base_url)
        self._seconds = timeout
        self._connect = min(timeout, 5.0)
        self._timeout = httpx.Timeout(timeout, connect=self._connect)
        self._on_exchange = on_exchange
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            verify=tls_context(),
            timeout=self._timeout,
            transport=transport,
            follow_redirects=True,
            max_redirects=5,
            # Idle connections go before the server drops them: Node's HTTP servers (LM Studio's
            # among them) and uvicorn close an idle keep-alive connection after 5 s, so a poll
            # every 5 s (the hidden rate) raced the close and now and then met a dropped
            # connection ("unreachable", then backoff).
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
            headers={"User-Agent": f"lmgui/{__version__}", "Accept": "application/json"},
            event_hooks={"request": [self._strip_foreign_auth]},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"Transport(base_url={self.display_url!r})"

    @property
    def has_token(self) -> bool:
        return self._token is not None or self._token_error is not None

    @property
    def token(self) -> str | None:
        """The cleaned token, for the SDK channel to the same server (never shown)."""
        return self._token

    @property
    def where(self) -> str:
        """How every sentence names the server."""
        return f"LM Studio at {self.display_url}"

    async def _strip_foreign_auth(self, request: httpx.Request) -> None:
        # Defence in depth beside httpx's own redirect rule: the token never leaves our origin.
        if origin(request.url) != self._origin:
            request.headers.pop("Authorization", None)

    def headers(self) -> dict[str, str]:
        """The per-request headers: the token, or ``InvalidTokenError`` when it cannot be sent."""
        if self._token_error is not None:
            raise self.err(InvalidTokenError, str(self._token_error))
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def redact(self, text: str) -> str:
        """``text`` with every form of the token (and a URL password) replaced by ``***``."""
        return self._redact(text) if self._redact else text

    def err(self, cls: type[ApiError], message: str, **kw: Any) -> ApiError:
        """An error of ``cls`` naming this server, with the token scrubbed from its words."""
        if isinstance(kw.get("server_message"), str):
            kw["server_message"] = self.redact(kw["server_message"])
        return cls(self.redact(message), url=self.display_url, **kw)

    def timeout(self, read: float | None = None) -> httpx.Timeout:
        """httpx's timeouts, with a longer wait between bytes for answers that think first."""
        if read is None:
            return self._timeout
        return httpx.Timeout(self._seconds, connect=self._connect, read=read)

    @contextlib.asynccontextmanager
    async def deadline(self, seconds: float, what: str) -> AsyncIterator[None]:
        """The whole exchange within ``seconds``, or ``DeadlineExceeded`` naming ``what``."""
        try:
            async with asyncio.timeout(seconds) as scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            raise self.err(
                DeadlineExceeded,
                f"{self.where} did not finish sending {what} within {seconds:g} s; the server "
                "or the network is too slow, or stuck.",
            ) from None

    async def read(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        """The body, read no further than ``limit`` bytes.

        An error answer is cut at ``limits.error_body`` (its first line is all that is shown);
        any other answer past its limit raises ``ResponseTooLarge``. Either way the connection is
        closed at once, so the server's remaining bytes are never read.
        """
        is_error = resp.status_code >= 400
        if is_error:
            limit = self.limits.error_body
        declared = resp.headers.get("content-length", "")
        if not is_error and declared.isdigit() and int(declared) > limit:
            await resp.aclose()
            raise self.too_large(what, limit)
        buf = bytearray()
        chunks = cast(AsyncGenerator[bytes, None], resp.aiter_bytes())
        try:
            async for chunk in chunks:
                buf += chunk
                if len(buf) > limit:
                    # Close the response before the generators, so none of httpcore's is left
                    # to finish outside the loop (toolchain.md, qasync and async generators).
                    await resp.aclose()
                    if not is_error:
                        raise self.too_large(what, limit)
                    del buf[limit:]
                    break
        finally:
            await chunks.aclose()
        return bytes(buf)

    def too_large(self, what: str, limit: int) -> ApiError:
        return self.err(
            ResponseTooLarge,
            f"{self.where} sent {what} larger than {_size(limit)}; lmgui stopped reading it.",
        )

    @contextlib.contextmanager
    def translating(self) -> Iterator[None]:
        """Map httpx's transport errors to the client's own, naming the server."""
        where = self.where
        try:
            yield
        except httpx.TimeoutException as exc:
            phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for it"
            raise self.err(ServerUnreachable, f"{where} timed out while {phase}.") from None
        except httpx.ConnectError as exc:
            reason = _short_reason(exc)
            raise self.err(
                ServerUnreachable, f"Cannot connect to {where} ({reason}); is the server running?"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise self.err(
                ServerUnreachable,
                f"The connection to {where} was dropped before the response was complete "
                f"({_short_reason(exc)}).",
            ) from None
        except httpx.TooManyRedirects:
            raise self.err(ProtocolError, f"{where} redirected too many times.") from None
        except httpx.HTTPError as exc:
            raise self.err(
                ServerUnreachable, f"Cannot talk to {where} ({_short_reason(exc)})."
            ) from None

    def check(self, resp: httpx.Response, body: bytes, expected: tuple[str, ...] = ()) -> None:
        """Raise unless ``body`` is a real answer: an error status, a web page, or (when
        ``expected`` names the keys a good answer has) a 200 whose body is an error."""
        self.raise_for_status(resp, body)
        self.check_not_a_page(resp, body)
        if expected:
            self.check_ok_body(body, expected)

    def raise_for_status(self, resp: httpx.Response, body: bytes) -> None:
        status = resp.status_code
        if status < 400:
            return
        decoded: Any = None
        with contextlib.suppress(msgspec.DecodeError):
            decoded = msgspec.json.decode(body)
        msg, etype, code, param = error_fields(decoded)
        if msg is None:
            text = body.decode("utf-8", "replace")
            msg = first_readable_line(text) or resp.reason_phrase or f"HTTP {status}"
        msg = dedupe_joined_message(msg)
        said = sentence(msg)
        where = self.where
        if status in (401, 403):
            if self._token:
                text = f"{where} rejected the API token: {said} Check the token in lmgui's settings"
            else:
                text = f"{where} requires an API token: {said} Set one in lmgui's settings"
            raise self.err(
                AuthError,
                text + ", with --token, or in the LM_API_TOKEN environment variable.",
                status=status,
                server_message=msg,
            )
        if status == 404 and msg.startswith(_UNEXPECTED_ENDPOINT):
            raise self._unsupported(msg)
        if status == 404:
            raise self.err(
                NotFoundError,
                f"{where}: {said}",
                status=status,
                server_message=msg,
                error_type=etype,
                code=code,
            )
        if status < 500:
            raise self.err(
                BadRequestError,
                f"{where} rejected the request: {said}",
                status=status,
                server_message=msg,
                error_type=etype,
                code=code,
                param=param,
            )
        raise self.err(
            ServerError,
            f"{where} failed (HTTP {status}): {said}",
            status=status,
            server_message=msg,
        )

    def _unsupported(self, msg: str) -> ApiError:
        return self.err(
            UnsupportedServer,
            f"The server at {self.display_url} is not an LM Studio 0.4 server: it has no /api/v1 "
            f"and said \u201c{msg.strip()}\u201d; it is LM Studio older than 0.4 or not LM Studio.",
            server_message=msg,
        )

    def check_ok_body(self, body: bytes, expected: tuple[str, ...]) -> None:
        """A 200 is not success until the body has the expected shape (200-with-error bodies)."""
        try:
            obj = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return  # the parser reports invalid JSON in its own words
        if not isinstance(obj, dict) or "error" not in obj or any(k in obj for k in expected):
            return
        msg, *_ = error_fields(obj)
        msg = msg or "an error without a message"
        if msg.startswith(_UNEXPECTED_ENDPOINT):
            raise self._unsupported(msg)
        raise self.err(
            ProtocolError,
            f"{self.where} answered with an error: {sentence(msg)}",
            server_message=msg,
        )

    def check_not_a_page(self, resp: httpx.Response, body: bytes) -> None:
        """A 2xx web page (a router's login, a proxy's portal) is not LM Studio's API."""
        ctype = resp.headers.get("content-type", "").lower()
        head = body[:512].lstrip().lower()
        if "text/html" not in ctype and not head.startswith((b"<!doctype html", b"<html")):
            return
        title = page_title(body[: self.limits.error_body].decode("utf-8", "replace"))
        named = f" (\u201c{title}\u201d)" if title else ""
        raise self.err(
            ProtocolError,
            f"The server at {self.display_url} answered with a web page{named}, not LM Studio's "
            "API; check the server address and port.",
        )

    @property
    def logs_exchanges(self) -> bool:
        """Whether anyone receives the exchange log (building a record is then worth it)."""
        return self._on_exchange is not None

    def log(self, exchange: dict[str, Any]) -> None:
        if self._on_exchange is not None:
            # A server may echo a malformed token in its error text: redact the whole record.
            text = self.redact(msgspec.json.encode(exchange).decode())
            self._on_exchange(msgspec.json.decode(text))

    async def send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        deadline: float,
        json: Mapping[str, Any] | None = None,
        read_timeout: float | None = None,
        expected: tuple[str, ...] = (),
        limit: int | None = None,
    ) -> bytes:
        """One request; the checked body of its answer (``what`` names it in messages)."""
        started = time.time()
        async with (
            self.deadline(deadline, what),
            self.stream(
                method, path, json=json, accept="application/json", read_timeout=read_timeout
            ) as resp,
        ):
            body = await self.read(resp, limit or self.limits.body, what)
        if self.logs_exchanges:
            self.log(
                {
                    "time": started,
                    "method": method,
                    "url": self.display_url + path,
                    "request": json,
                    "status": resp.status_code,
                    "response": _loose_json(body),
                }
            )
        self.check(resp, body, expected)
        return body

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None,
        accept: str,
        read_timeout: float | None,
    ) -> AsyncIterator[httpx.Response]:
        """A response whose body the caller reads as it arrives; httpx's errors while it does,
        too, leave as the client's own."""
        headers = {**self.headers(), "Accept": accept}
        with self.translating():
            async with self._http.stream(
                method,
                path,
                json=json,
                headers=headers,
                timeout=self.timeout(read_timeout),
            ) as resp:
                yield resp


def sentence(msg: str) -> str:
    """``msg`` ending as a sentence, so a server's words can be quoted mid-message."""
    msg = msg.strip()
    return msg if msg.endswith((".", "!", "?")) else msg + "."


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    text = text.splitlines()[0]
    # "[Errno 111] Connection refused" -> "connection refused"
    if text.startswith("[Errno"):
        text = text.split("]", 1)[-1].strip()
    return text[:1].lower() + text[1:] if text else type(exc).__name__


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // 1024} KiB"


def _loose_json(body: bytes) -> Any:
    # The log keeps what came, even when it is not JSON (the first 2000 characters of it).
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:2000].decode("utf-8", "replace")
