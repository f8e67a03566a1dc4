"""The LM Studio 0.4 REST client: one ``httpx.AsyncClient`` per server, no Qt.

Every transport or HTTP failure leaves this module as one of the types in ``errors.py``, with a
message a user understands. The token is sent only as ``Authorization: Bearer`` to the configured
origin and is scrubbed from every message this client builds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx
import msgspec
from httpx_sse import EventSource

from lmgui import __version__
from lmgui.api.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    NotFoundError,
    ProtocolError,
    ServerError,
    ServerUnreachable,
    UnsupportedServer,
    dedupe_joined_message,
    error_fields,
    first_readable_line,
)
from lmgui.api.events import ChatEnd, ChatEvent, ErrorEvent, parse_event
from lmgui.api.lms import LmsLoadOptions, LmsRunner
from lmgui.api.records import (
    ChatResult,
    DownloadJob,
    LoadResult,
    Model,
    parse_chat_result,
    parse_download,
    parse_load_result,
    parse_models,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "EXTENSION_LOAD_KEYS",
    "ChatStream",
    "LMStudioClient",
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


def _origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    u = httpx.URL(str(url))
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return (u.scheme, u.host.lower(), port)


def is_local_url(url: str) -> bool:
    """Whether the server is on this machine (loopback or this host's name); no DNS look-up."""
    host = (urlsplit(normalize_base_url(url)).hostname or "").lower()
    if host in ("localhost", socket.gethostname().lower()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        load_timeout: float = 900.0,
        chat_timeout: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
        lms: LmsRunner | Literal["auto"] | None = "auto",
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._token = token or None
        self._origin = _origin(self.base_url)
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._load_timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0), read=load_timeout)
        self._chat_timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0), read=chat_timeout)
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
        return f"LMStudioClient(base_url={self.base_url!r}, token={'set' if self._token else None})"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    async def _strip_foreign_auth(self, request: httpx.Request) -> None:
        # Defence in depth beside httpx's own redirect rule: the token never leaves our origin.
        if _origin(request.url) != self._origin:
            request.headers.pop("Authorization", None)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def redact(self, text: str) -> str:
        """``text`` with the token (and its secret part) replaced by ``***``."""
        if not self._token:
            return text
        for secret in {self._token, self._token.partition(":")[2]}:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def _err(self, cls: type[ApiError], message: str, **kw: Any) -> ApiError:
        if isinstance(kw.get("server_message"), str):
            kw["server_message"] = self.redact(kw["server_message"])
        return cls(self.redact(message), url=self.base_url, **kw)

    @contextlib.contextmanager
    def _translating(self) -> Iterator[None]:
        """Map httpx's transport errors to the client's own, naming the server."""
        where = f"LM Studio at {self.base_url}"
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

    def _raise_for_status(self, resp: httpx.Response) -> None:
        status = resp.status_code
        if status < 400:
            return
        body = resp.content
        decoded: Any = None
        with contextlib.suppress(msgspec.DecodeError):
            decoded = msgspec.json.decode(body)
        msg, etype, code, param = error_fields(decoded)
        if msg is None:
            text = body.decode("utf-8", "replace")
            msg = first_readable_line(text) or resp.reason_phrase or f"HTTP {status}"
        msg = dedupe_joined_message(msg)
        said = _sentence(msg)
        where = f"LM Studio at {self.base_url}"
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
            f"The server at {self.base_url} is not an LM Studio 0.4 server: it has no /api/v1 "
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
            f"LM Studio at {self.base_url} answered with an error: {_sentence(msg)}",
            server_message=msg,
        )

    def _log(self, exchange: dict[str, Any]) -> None:
        if self._on_exchange is not None:
            # A server may echo a malformed token in its error text: redact the whole record.
            text = self.redact(msgspec.json.encode(exchange).decode())
            self._on_exchange(msgspec.json.decode(text))

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        http_timeout: httpx.Timeout | None = None,
        expected: tuple[str, ...] = (),
    ) -> bytes:
        started = time.time()
        with self._translating():
            resp = await self._http.request(
                method,
                path,
                json=json,
                headers=self._headers(),
                timeout=http_timeout or self._timeout,
            )
        if self._on_exchange is not None:
            self._log(
                {
                    "time": started,
                    "method": method,
                    "url": self.base_url + path,
                    "request": json,
                    "status": resp.status_code,
                    "response": _loose_json(resp.content),
                }
            )
        self._raise_for_status(resp)
        if expected:
            self._check_ok_body(resp.content, expected)
        return resp.content

    # ------------------------------------------------------------------ endpoints

    async def list_models(self) -> list[Model]:
        """Every model the server knows, loaded or not, with its loaded instances."""
        return self._parse_models(await self._send("GET", "/api/v1/models"))

    async def poll_models(self) -> list[Model] | None:
        """Like ``list_models``, but None when the body is byte-identical to the last poll's.

        Most polls change nothing; comparing bytes costs far less than parsing them again.
        """
        body = await self._send("GET", "/api/v1/models")
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
            raise self._err(ProtocolError, str(exc)) from None

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
        if ext.keys() & self.rejected_load_keys:
            runner = self._lms_runner()
            if runner is not None:
                return await self._lms_load(runner, model_key, documented, ext)
        accepted = {k: v for k, v in ext.items() if k not in self.rejected_load_keys}
        result = await self._rest_load(model_key, {**documented, **accepted})
        not_applied = tuple(k for k in ext if k in self.rejected_load_keys)
        return msgspec.structs.replace(result, not_applied=not_applied)

    async def _rest_load(self, model_key: str, options: Mapping[str, Any]) -> LoadResult:
        body = {"model": model_key, **options, "echo_load_config": True}
        raw = await self._send(
            "POST",
            "/api/v1/models/load",
            json=body,
            http_timeout=self._load_timeout,
            expected=("instance_id", "model_instance_id"),
        )
        return parse_load_result(raw)

    def _lms_runner(self) -> LmsRunner | None:
        if self._lms_setting is None:
            return None
        if not is_local_url(self.base_url):
            return None
        if self._lms_setting == "auto":
            return LmsRunner.find()
        return self._lms_setting

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
                f"{self.base_url}.",
            )
        return LoadResult(
            instance_id=new[-1].id,
            load_time_seconds=round(elapsed, 3),
            load_config=dict(new[-1].config),
            status="loaded",
            not_applied=tuple(k for k in options if k not in _LMS_OPTION_KEYS),
            via="lms",
        )

    async def unload(self, instance_id: str) -> None:
        """Unload one instance by the id the server gave it."""
        await self._send(
            "POST",
            "/api/v1/models/unload",
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
            "POST", "/api/v1/chat", json=body, http_timeout=self._chat_timeout, expected=("output",)
        )
        return parse_chat_result(raw)

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
        raw = await self._send("POST", "/api/v1/models/download", json=body, expected=("status",))
        return parse_download(raw)

    async def download_status(self, job_id: str) -> DownloadJob:
        raw = await self._send(
            "GET", f"/api/v1/models/download/status/{job_id}", expected=("status",)
        )
        return parse_download(raw)

    # ------------------------------------------------------------------ streaming internals

    async def _stream_events(self, body: dict[str, Any]) -> AsyncGenerator[ChatEvent, None]:
        started = time.time()
        result: ChatResult | None = None
        with self._translating():
            async with self._http.stream(
                "POST",
                "/api/v1/chat",
                json=body,
                headers={**self._headers(), "Accept": "text/event-stream"},
                timeout=self._chat_timeout,
            ) as resp:
                ctype = resp.headers.get("content-type", "")
                if resp.status_code >= 400 or "text/event-stream" not in ctype:
                    await resp.aread()
                    self._raise_for_status(resp)
                    self._check_ok_body(resp.content, ("output",))
                    # A server that ignored stream=true: hand over its whole answer as one end.
                    result = parse_chat_result(resp.content)
                    yield ChatEnd(result=result)
                else:
                    async for sse in EventSource(resp).aiter_sse():
                        if result is not None:
                            continue  # drain after chat.end rather than break (see architecture)
                        try:
                            data = msgspec.json.decode(sse.data) if sse.data else {}
                        except msgspec.DecodeError:
                            data = {"raw": sse.data}
                        name = sse.event if sse.event != "message" else None
                        if name is None and isinstance(data, dict):
                            name = str(data.get("type", "message"))
                        event = parse_event(name or "message", data)
                        if isinstance(event, ErrorEvent):
                            event = ErrorEvent(
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
                "url": self.base_url + "/api/v1/chat",
                "request": body,
                "status": 200,
                "response": msgspec.to_builtins(result) if result else None,
            }
        )
        if result is None:
            raise self._err(
                ServerUnreachable,
                f"The stream from LM Studio at {self.base_url} ended before the answer was "
                "complete.",
            )


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


def _loose_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:2000].decode("utf-8", "replace")
