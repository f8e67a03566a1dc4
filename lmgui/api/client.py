"""The LM Studio 0.4 REST client: one ``httpx.AsyncClient`` per server, no Qt.

Every transport or HTTP failure leaves this module as one of the types in ``errors.py``, with a
message a user understands. The token is sent only as ``Authorization: Bearer`` to the configured
origin and is scrubbed from every message this client builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, cast
from urllib.parse import quote, urlsplit

import httpx
import msgspec
from httpx_sse import EventSource

from lmgui import __version__
from lmgui.api.auth import InvalidTokenError, Redactor, clean_token, url_password
from lmgui.api.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    DeadlineExceeded,
    InvalidServerUrl,
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
from lmgui.api.events import ChatEnd, ChatEvent, ErrorEvent, parse_event
from lmgui.api.limits import MIB, Deadlines, Limits
from lmgui.api.lms import LmsLoadOptions, LmsRunner
from lmgui.api.records import (
    ChatResult,
    DownloadJob,
    LoadResult,
    Model,
    chat_result_from,
    parse_download,
    parse_load_result,
    parse_models,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "EXTENSION_LOAD_KEYS",
    "ChatStream",
    "LMStudioClient",
    "check_base_url",
    "display_url",
    "image_item",
    "is_local_url",
    "normalize_base_url",
    "text_item",
]

DEFAULT_BASE_URL = "http://127.0.0.1:1234"
EXTENSION_LOAD_KEYS = ("gpu", "ttl", "identifier", "parallel")
"""Load options the real REST API rejects; set through ``lms`` or reported as not applied."""

_LMS_OPTION_KEYS = frozenset({"gpu", "ttl", "identifier", "context_length", "parallel"})
_UNEXPECTED_ENDPOINT = "Unexpected endpoint or method"

Exchange = Mapping[str, Any]
GpuSetting = Literal["max", "off"] | float


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


def _origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
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


def text_item(content: str) -> dict[str, str]:
    return {"type": "text", "content": content}


def image_item(data_url: str) -> dict[str, str]:
    return {"type": "image", "data_url": data_url}


def _gpu_value(gpu: GpuSetting) -> str:
    if isinstance(gpu, str):
        return gpu
    return f"{gpu:g}"


class LMStudioClient:
    """Async client for one LM Studio server. Use as ``async with LMStudioClient(url) as c:``."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        limits: Limits | None = None,
        deadlines: Deadlines | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        lms: LmsRunner | Literal["auto"] | None = "auto",
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.display_url = display_url(self.base_url)
        """The address as messages show it (a password in it replaced)."""
        self._redact = Redactor(token, url_password(self.base_url))
        self._token_error: InvalidTokenError | None = None
        try:
            self._token = clean_token(token)
        except InvalidTokenError as exc:
            self._token, self._token_error = None, exc
        self.limits = limits or Limits()
        self.deadlines = deadlines or Deadlines()
        self._origin = _origin(self.base_url)
        d = self.deadlines
        connect = min(timeout, 5.0)
        self._timeout = httpx.Timeout(timeout, connect=connect)
        self._load_timeout = httpx.Timeout(timeout, connect=connect, read=d.load)
        self._chat_timeout = httpx.Timeout(timeout, connect=connect, read=d.chat)
        self._stream_timeout = httpx.Timeout(timeout, connect=connect, read=d.stream_idle)
        self._lms_setting = lms
        self._on_exchange = on_exchange
        self._last_models_body: bytes | None = None
        self.rejected_load_keys: set[str] = set()
        """Extension load keys this server's REST API rejected (remembered for this server)."""
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=self._timeout,
            transport=transport,
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": f"lmgui/{__version__}", "Accept": "application/json"},
            event_hooks={"request": [self._strip_foreign_auth]},
        )

    # ------------------------------------------------------------------ lifecycle and plumbing

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        token = "set" if self._token or self._token_error else None
        return f"LMStudioClient(base_url={self.display_url!r}, token={token})"

    @property
    def has_token(self) -> bool:
        return self._token is not None or self._token_error is not None

    async def _strip_foreign_auth(self, request: httpx.Request) -> None:
        # Defence in depth beside httpx's own redirect rule: the token never leaves our origin.
        if _origin(request.url) != self._origin:
            request.headers.pop("Authorization", None)

    def _headers(self) -> dict[str, str]:
        if self._token_error is not None:
            raise self._err(InvalidTokenError, str(self._token_error))
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def redact(self, text: str) -> str:
        """``text`` with every form of the token (and a URL password) replaced by ``***``."""
        return self._redact(text) if self._redact else text

    @property
    def _where(self) -> str:
        return f"LM Studio at {self.display_url}"

    def _err(self, cls: type[ApiError], message: str, **kw: Any) -> ApiError:
        if isinstance(kw.get("server_message"), str):
            kw["server_message"] = self.redact(kw["server_message"])
        return cls(self.redact(message), url=self.display_url, **kw)

    @contextlib.asynccontextmanager
    async def _deadline(self, seconds: float, what: str) -> AsyncIterator[None]:
        """The whole exchange within ``seconds``, or ``DeadlineExceeded`` naming ``what``."""
        try:
            async with asyncio.timeout(seconds) as scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            raise self._err(
                DeadlineExceeded,
                f"{self._where} did not finish sending {what} within {seconds:g} s; the server "
                "or the network is too slow, or stuck.",
            ) from None

    async def _read(self, resp: httpx.Response, limit: int, what: str) -> bytes:
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
            raise self._too_large(what, limit)
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
                        raise self._too_large(what, limit)
                    del buf[limit:]
                    break
        finally:
            await chunks.aclose()
        return bytes(buf)

    def _too_large(self, what: str, limit: int) -> ApiError:
        return self._err(
            ResponseTooLarge,
            f"{self._where} sent {what} larger than {_size(limit)}; lmgui stopped reading it.",
        )

    @contextlib.contextmanager
    def _translating(self) -> Iterator[None]:
        """Map httpx's transport errors to the client's own, naming the server."""
        where = self._where
        try:
            yield
        except httpx.TimeoutException as exc:
            phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for it"
            raise self._err(ServerUnreachable, f"{where} timed out while {phase}.") from None
        except httpx.ConnectError as exc:
            reason = _short_reason(exc)
            raise self._err(
                ServerUnreachable, f"Cannot connect to {where} ({reason}); is the server running?"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise self._err(
                ServerUnreachable,
                f"The connection to {where} was dropped before the response was complete "
                f"({_short_reason(exc)}).",
            ) from None
        except httpx.TooManyRedirects:
            raise self._err(ProtocolError, f"{where} redirected too many times.") from None
        except httpx.HTTPError as exc:
            raise self._err(
                ServerUnreachable, f"Cannot talk to {where} ({_short_reason(exc)})."
            ) from None

    def _raise_for_status(self, resp: httpx.Response, body: bytes) -> None:
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
        said = _sentence(msg)
        where = self._where
        if status in (401, 403):
            if self._token:
                text = f"{where} rejected the API token: {said} Check the token in lmgui's settings"
            else:
                text = f"{where} requires an API token: {said} Set one in lmgui's settings"
            raise self._err(
                AuthError,
                text + ", with --token, or in the LM_API_TOKEN environment variable.",
                status=status,
                server_message=msg,
            )
        if status == 404 and msg.startswith(_UNEXPECTED_ENDPOINT):
            raise self._unsupported(msg)
        if status == 404:
            raise self._err(
                NotFoundError,
                f"{where}: {said}",
                status=status,
                server_message=msg,
                error_type=etype,
                code=code,
            )
        if status < 500:
            raise self._err(
                BadRequestError,
                f"{where} rejected the request: {said}",
                status=status,
                server_message=msg,
                error_type=etype,
                code=code,
                param=param,
            )
        raise self._err(
            ServerError,
            f"{where} failed (HTTP {status}): {said}",
            status=status,
            server_message=msg,
        )

    def _unsupported(self, msg: str) -> ApiError:
        return self._err(
            UnsupportedServer,
            f"The server at {self.display_url} is not an LM Studio 0.4 server: it has no /api/v1 "
            f"and said \u201c{msg.strip()}\u201d; it is LM Studio older than 0.4 or not LM Studio.",
            server_message=msg,
        )

    def _check_ok_body(self, body: bytes, expected: tuple[str, ...]) -> None:
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
        raise self._err(
            ProtocolError,
            f"{self._where} answered with an error: {_sentence(msg)}",
            server_message=msg,
        )

    def _log(self, exchange: dict[str, Any]) -> None:
        if self._on_exchange is not None:
            # A server may echo a malformed token in its error text: redact the whole record.
            text = self.redact(msgspec.json.encode(exchange).decode())
            self._on_exchange(msgspec.json.decode(text))

    def _check_not_a_page(self, resp: httpx.Response, body: bytes) -> None:
        """A 2xx web page (a router's login, a proxy's portal) is not LM Studio's API."""
        ctype = resp.headers.get("content-type", "").lower()
        head = body[:512].lstrip().lower()
        if "text/html" not in ctype and not head.startswith((b"<!doctype html", b"<html")):
            return
        title = page_title(body[: self.limits.error_body].decode("utf-8", "replace"))
        named = f" (\u201c{title}\u201d)" if title else ""
        raise self._err(
            ProtocolError,
            f"The server at {self.display_url} answered with a web page{named}, not LM Studio's "
            "API; check the server address and port.",
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        deadline: float,
        json: Mapping[str, Any] | None = None,
        http_timeout: httpx.Timeout | None = None,
        expected: tuple[str, ...] = (),
        limit: int | None = None,
    ) -> bytes:
        started = time.time()
        headers = self._headers()
        async with self._deadline(deadline, what):
            with self._translating():
                async with self._http.stream(
                    method,
                    path,
                    json=json,
                    headers=headers,
                    timeout=http_timeout or self._timeout,
                ) as resp:
                    body = await self._read(resp, limit or self.limits.body, what)
        if self._on_exchange is not None:
            self._log(
                {
                    "time": started,
                    "method": method,
                    "url": self.display_url + path,
                    "request": json,
                    "status": resp.status_code,
                    "response": _loose_json(body),
                }
            )
        self._raise_for_status(resp, body)
        self._check_not_a_page(resp, body)
        if expected:
            self._check_ok_body(body, expected)
        return body

    # ------------------------------------------------------------------ endpoints

    async def list_models(self) -> list[Model]:
        """Every model the server knows, loaded or not, with its loaded instances."""
        return self._parse_models(await self._get_models())

    async def _get_models(self) -> bytes:
        return await self._send(
            "GET",
            "/api/v1/models",
            what="the model list",
            deadline=self.deadlines.models,
            limit=self.limits.models_body,
        )

    async def poll_models(self) -> list[Model] | None:
        """Like ``list_models``, but None when the body is byte-identical to the last poll's.

        Most polls change nothing; comparing bytes costs far less than parsing them again.
        """
        body = await self._get_models()
        if body == self._last_models_body:
            return None
        models = self._parse_models(body)
        self._last_models_body = body
        return models

    def _parse_models(self, body: bytes) -> list[Model]:
        try:
            return parse_models(body)
        except ProtocolError as exc:
            # Only now look for a 200 that carries an error: the list is large and polled often,
            # so the usual case is decoded once.
            self._check_ok_body(body, ("models", "data"))
            raise self._err(ProtocolError, f"{self._where}: {exc}") from None

    async def load(
        self,
        model_key: str,
        *,
        context_length: int | None = None,
        eval_batch_size: int | None = None,
        flash_attention: bool | None = None,
        num_experts: int | None = None,
        offload_kv_cache_to_gpu: bool | None = None,
        gpu: GpuSetting | None = None,
        ttl: int | None = None,
        identifier: str | None = None,
        parallel: int | None = None,
    ) -> LoadResult:
        """Load a model; blocks until the server has loaded it (seconds to minutes).

        GPU offload, TTL, identifier and parallel are not part of the documented REST body. They
        are tried over REST first; a server that rejects them is remembered, and the load then goes
        through ``lms`` when the server is local and ``lms`` exists, else through REST without them,
        naming them in ``LoadResult.not_applied``.
        """
        documented: dict[str, Any] = {
            k: v
            for k, v in (
                ("context_length", context_length),
                ("eval_batch_size", eval_batch_size),
                ("flash_attention", flash_attention),
                ("num_experts", num_experts),
                ("offload_kv_cache_to_gpu", offload_kv_cache_to_gpu),
            )
            if v is not None
        }
        ext: dict[str, Any] = {
            k: v
            for k, v in (
                ("gpu", gpu),
                ("ttl", ttl),
                ("identifier", identifier),
                ("parallel", parallel),
            )
            if v is not None
        }
        if ext and not (ext.keys() & self.rejected_load_keys):
            try:
                return await self._rest_load(model_key, {**documented, **ext})
            except BadRequestError as exc:
                if "Unrecognized key" not in (exc.server_message or ""):
                    raise
                rejected = set(exc.unrecognized_keys) & ext.keys() or set(ext)
                self.rejected_load_keys |= rejected
        reason = None
        if ext.keys() & self.rejected_load_keys:
            runner = self._lms_runner()
            if not isinstance(runner, str):
                return await self._lms_load(runner, model_key, documented, ext)
            reason = f"LM Studio's REST API does not take them, and lms {runner}"
        accepted = {k: v for k, v in ext.items() if k not in self.rejected_load_keys}
        result = await self._rest_load(model_key, {**documented, **accepted})
        not_applied = tuple(k for k in ext if k in self.rejected_load_keys)
        return msgspec.structs.replace(
            result, not_applied=not_applied, not_applied_reason=reason if not_applied else None
        )

    async def _rest_load(self, model_key: str, options: Mapping[str, Any]) -> LoadResult:
        body = {"model": model_key, **options, "echo_load_config": True}
        raw = await self._send(
            "POST",
            "/api/v1/models/load",
            what="the answer to a load",
            deadline=self.deadlines.load,
            json=body,
            http_timeout=self._load_timeout,
            expected=("instance_id", "model_instance_id"),
        )
        try:
            return parse_load_result(raw)
        except ProtocolError as exc:
            raise self._err(ProtocolError, f"{self._where}: {exc}") from None

    def _lms_runner(self) -> LmsRunner | str:
        """The ``lms`` to load through, or why there is none (a phrase after "lms ...")."""
        if self._lms_setting is None or (self._lms_setting == "auto" and LmsRunner.turned_off()):
            return "is turned off in lmgui"
        address = lms_address(self.base_url)
        if isinstance(address, str):
            return address
        runner = LmsRunner.find() if self._lms_setting == "auto" else self._lms_setting
        if runner is None:
            return "was not found on this machine"
        return runner.at(*address)

    async def _lms_load(
        self,
        runner: LmsRunner,
        model_key: str,
        documented: Mapping[str, Any],
        ext: Mapping[str, Any],
    ) -> LoadResult:
        options = {**documented, **ext}
        before = {i.id for m in await self.list_models() if m.key == model_key for i in m.instances}
        started = time.monotonic()
        await runner.load(
            model_key,
            LmsLoadOptions(
                gpu=_gpu_value(options["gpu"]) if "gpu" in options else None,
                ttl=options.get("ttl"),
                identifier=options.get("identifier"),
                context_length=options.get("context_length"),
                parallel=options.get("parallel"),
            ),
        )
        elapsed = time.monotonic() - started
        after = [i for m in await self.list_models() if m.key == model_key for i in m.instances]
        identifier = options.get("identifier")
        new = [i for i in after if (i.id == identifier if identifier else i.id not in before)]
        if not new:
            raise self._err(
                ProtocolError,
                f"lms reported loading {model_key}, but no new instance of it appeared on "
                f"{self.display_url}.",
            )
        not_applied = tuple(k for k in options if k not in _LMS_OPTION_KEYS)
        return LoadResult(
            instance_id=new[-1].id,
            load_time_seconds=round(elapsed, 3),
            load_config=dict(new[-1].config),
            status="loaded",
            not_applied=not_applied,
            not_applied_reason="lms does not take them" if not_applied else None,
            via="lms",
        )

    async def unload(self, instance_id: str) -> None:
        """Unload one instance by the id the server gave it."""
        await self._send(
            "POST",
            "/api/v1/models/unload",
            what="the answer to an unload",
            deadline=self.deadlines.unload,
            json={"instance_id": instance_id},
            expected=("instance_id",),
        )

    @staticmethod
    def chat_body(
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        previous_response_id: str | None = None,
        system_prompt: str | None = None,
        store: bool = True,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        repeat_penalty: float | None = None,
        max_output_tokens: int | None = None,
        reasoning: str | None = None,
        context_length: int | None = None,
        integrations: Sequence[Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/chat``: only documented keys, only those that are set."""
        body: dict[str, Any] = {
            "model": model,
            "input": input if isinstance(input, str) else [dict(i) for i in input],
        }
        optional = {
            "system_prompt": system_prompt,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "min_p": min_p,
            "repeat_penalty": repeat_penalty,
            "max_output_tokens": max_output_tokens,
            "reasoning": reasoning,
            "context_length": context_length,
            "previous_response_id": previous_response_id,
            "integrations": list(integrations) if integrations is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if not store:
            body["store"] = False
        if stream:
            body["stream"] = True
        return body

    async def chat(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        **options: Any,
    ) -> ChatResult:
        """One chat turn, not streamed. ``options`` are ``chat_body``'s keyword arguments."""
        body = self.chat_body(model, input, **options)
        raw = await self._send(
            "POST",
            "/api/v1/chat",
            what="the chat answer",
            deadline=self.deadlines.chat,
            json=body,
            http_timeout=self._chat_timeout,
            expected=("output",),
        )
        return self._chat_result(raw)

    def _chat_result(self, raw: bytes | Any) -> ChatResult:
        """A chat answer (a body, or ``chat.end``'s decoded result); one without ``output`` is a
        protocol error, never an empty success."""
        obj: Any = raw
        if isinstance(raw, bytes):
            try:
                obj = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                raise self._err(
                    ProtocolError, f"{self._where} sent a chat answer that is not valid JSON."
                ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("output"), list):
            raise self._err(
                ProtocolError,
                f"{self._where} sent a chat answer without its output; the answer is lost.",
            )
        try:
            return chat_result_from(obj)
        except ProtocolError as exc:
            raise self._err(ProtocolError, f"{self._where}: {exc}") from None

    def chat_stream(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        **options: Any,
    ) -> ChatStream:
        """One chat turn, streamed as typed events; see ``ChatStream``."""
        return ChatStream(self, self.chat_body(model, input, stream=True, **options))

    async def download(self, model: str, quantization: str | None = None) -> DownloadJob:
        body: dict[str, Any] = {"model": model}
        if quantization is not None:
            body["quantization"] = quantization
        raw = await self._send(
            "POST",
            "/api/v1/models/download",
            what="the answer to a download",
            deadline=self.deadlines.download,
            json=body,
            expected=("status",),
        )
        return parse_download(raw)

    async def download_status(self, job_id: str) -> DownloadJob:
        raw = await self._send(
            "GET",
            f"/api/v1/models/download/status/{quote(job_id, safe='')}",
            what="the download status",
            deadline=self.deadlines.download,
            expected=("status",),
        )
        return parse_download(raw)

    # ------------------------------------------------------------------ streaming internals

    async def _stream_events(self, body: dict[str, Any]) -> AsyncGenerator[ChatEvent, None]:
        started = time.time()
        result: ChatResult | None = None
        error: ErrorEvent | None = None
        headers = {**self._headers(), "Accept": "text/event-stream"}
        with self._translating():
            async with self._http.stream(
                "POST",
                "/api/v1/chat",
                json=body,
                headers=headers,
                timeout=self._stream_timeout,
            ) as resp:
                ctype = resp.headers.get("content-type", "")
                if resp.status_code >= 400 or "text/event-stream" not in ctype:
                    async with self._deadline(self.deadlines.chat, "the chat answer"):
                        raw = await self._read(resp, self.limits.body, "the chat answer")
                    self._raise_for_status(resp, raw)
                    self._check_not_a_page(resp, raw)
                    self._check_ok_body(raw, ("output",))
                    # A server that ignored stream=true: hand over its whole answer as one end.
                    result = self._chat_result(raw)
                    yield ChatEnd(result=result)
                else:
                    events = self._sse_events(resp)
                    async with contextlib.aclosing(events):
                        async for event in events:
                            if result is not None:
                                continue  # drain after chat.end rather than break
                            if isinstance(event, ErrorEvent):
                                error = event = ErrorEvent(
                                    msgspec.structs.replace(
                                        event.error, message=self.redact(event.error.message)
                                    )
                                )
                            if isinstance(event, ChatEnd):
                                result = event.result
                            yield event
        self._log(
            {
                "time": started,
                "method": "POST",
                "url": self.display_url + "/api/v1/chat",
                "request": body,
                "status": 200,
                "response": msgspec.to_builtins(result) if result else None,
                **({"error": msgspec.to_builtins(error.error)} if error else {}),
            }
        )
        if result is None and error is not None:
            # The server said what went wrong, then closed without chat.end: its words, not
            # "the stream ended", are what the user needs (and its code, for a lost thread).
            raise self._err(
                ServerError,
                f"{self._where} reported an error and ended the answer: "
                f"{_sentence(error.message or 'no details')}",
                server_message=error.message,
                error_type=error.error.type,
                code=error.error.code,
            )
        if result is None:
            raise self._err(
                ServerUnreachable,
                f"The stream from {self._where} ended before the answer was complete.",
            )

    async def _sse_events(self, resp: httpx.Response) -> AsyncGenerator[ChatEvent, None]:
        """Typed events of an SSE answer, each within the idle deadline, no line over the limit."""
        idle = self.deadlines.stream_idle
        loop = asyncio.get_running_loop()
        source = EventSource(cast(httpx.Response, _BoundedLines(resp, self.limits.sse_line, self)))
        events = source.aiter_sse()
        try:
            while True:
                # Per event, not around the generator: a timeout must never fire while the
                # consumer holds an event (it would cancel the consumer's own work). Comments
                # are consumed inside httpx-sse and never reach here, so keep-alives do not
                # reset the deadline.
                try:
                    async with asyncio.timeout_at(loop.time() + idle) as scope:
                        sse = await anext(events)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not scope.expired():
                        raise
                    await resp.aclose()
                    raise self._err(
                        DeadlineExceeded,
                        f"{self._where} sent nothing for {idle:g} s while answering; lmgui "
                        "stopped waiting (what arrived is kept).",
                    ) from None
                try:
                    data = msgspec.json.decode(sse.data) if sse.data else {}
                except msgspec.DecodeError:
                    data = {"raw": sse.data}
                name = sse.event if sse.event != "message" else None
                if name is None and isinstance(data, dict):
                    name = str(data.get("type", "message"))
                if name == "chat.end":
                    result = data.get("result") if isinstance(data, dict) else None
                    yield ChatEnd(result=self._chat_result(result))
                else:
                    yield parse_event(name or "message", data)
        finally:
            await events.aclose()


class _BoundedLines:
    """The part of an ``httpx.Response`` that httpx-sse reads, with a limit on one line's length:
    httpx-sse (like httpx's line reader) would grow a line without end."""

    def __init__(self, resp: httpx.Response, limit: int, client: LMStudioClient) -> None:
        self._resp = resp
        self._limit = limit
        self._client = client
        self.headers = resp.headers

    async def aiter_text(self) -> AsyncIterator[str]:
        run = 0  # characters since the last line break
        async for text in self._resp.aiter_text():
            cut = max(text.rfind("\n"), text.rfind("\r"))
            run = run + len(text) if cut < 0 else len(text) - cut - 1
            if run > self._limit:
                await self._resp.aclose()
                raise self._client._too_large("a stream line", self._limit)
            yield text


class ChatStream:
    """An async iterator of ``ChatEvent``s that is also an async context manager.

    ``async with client.chat_stream(...) as s: async for ev in s: ...``. Leaving the block (or
    ``aclose()``) closes the HTTP response at once, which is how a Stop button cancels cleanly.
    After ``chat.end``, ``result`` holds the ChatResult.
    """

    def __init__(self, client: LMStudioClient, body: dict[str, Any]) -> None:
        self.body = body
        self.result: ChatResult | None = None
        self._gen = client._stream_events(body)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatEvent:
        event = await self._gen.__anext__()
        if isinstance(event, ChatEnd):
            self.result = event.result
        return event

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def collect(self) -> ChatResult:
        """Run the stream to its end and return the result."""
        async for _ in self:
            pass
        assert self.result is not None  # _stream_events raises when chat.end never came
        return self.result


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    text = text.splitlines()[0]
    # "[Errno 111] Connection refused" -> "connection refused"
    if text.startswith("[Errno"):
        text = text.split("]", 1)[-1].strip()
    return text[:1].lower() + text[1:] if text else type(exc).__name__


def _sentence(msg: str) -> str:
    msg = msg.strip()
    return msg if msg.endswith((".", "!", "?")) else msg + "."


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // 1024} KiB"


def _loose_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:2000].decode("utf-8", "replace")
