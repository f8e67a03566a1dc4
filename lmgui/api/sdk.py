"""LM Studio's SDK websocket channel, on the same port as REST: loads with GPU offload, TTL,
identifier and the other settings applied by the server on any machine, and the instance truth
REST does not carry (GPU offload, the server's TTL, last use, processing status).

Loads go through the official ``lmstudio`` SDK: it is the maintained implementation of the load
channel (load config as KV fields, progress), it runs on the running asyncio loop (qasync's
included), and it keeps the token out of its logs. What a poll asks every few seconds (the
instance truth), the load dialog's estimate and the hardware survey go over lmgui's own sockets
(``rpc.py``): the same handshake and RPC framing at a fraction of the SDK's CPU per call. One
limit of the SDK stays relevant there too: its typed instance records drop ``ttlMs`` and
``lastUsedTime``, so the raw ``listLoaded`` result is what lmgui reads; and an endpoint a server
lacks may never answer, so every call has a deadline.

The channel is optional. Where the server has none (an older LM Studio, a proxy that forwards
only HTTP, ``https``), ``unavailable`` says why, the client keeps to REST, and nothing else
changes. Errors leave as the client's own types with the same wording as REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import httpx_ws
import lmstudio
import lmstudio.async_api
import msgspec
from lmstudio import EmbeddingLoadModelConfig, LlmLoadModelConfig
from lmstudio._kv_config import load_config_to_kv_config_stack
from lmstudio.json_api import LoadModelEndpoint

from lmgui.api.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    ProtocolError,
    ServerError,
    ServerUnreachable,
)
from lmgui.api.records import (
    Model,
    ServerEstimate,
    ServerHardware,
    parse_estimate,
    parse_hardware,
)
from lmgui.api.rpc import Call, RpcSocket, call_all, first_line
from lmgui.api.transport import Transport, tls_context

__all__ = ["InstanceTruth", "SdkChannel", "is_lmstudio_token", "merge_truth"]

_TOKEN = re.compile(r"^sk-lm-[A-Za-z0-9]{8}:[A-Za-z0-9]{20}$")
GREETING = "/lmstudio-greeting"
GREETING_LIMIT = 4096
"""The greeting is ``{"lmstudio": true}``: anything longer is not LM Studio's."""
RAW_MESSAGE_LIMIT = 1024 * 1024
"""The largest message lmgui reads on a one-off socket (a hardware survey is a few KB)."""
REOPEN_SECONDS = 30.0
"""After a poll's socket could not be opened again, how long polls go on without the channel's
truth (REST's figures) before trying again."""
CLIENT_RETRY_SECONDS = 60.0
"""After the SDK's client could not connect, how long loads keep to REST before trying again."""
MESSAGE_LIMIT = 16 * 1024 * 1024
"""The largest message lmgui reads on the poll's sockets: ``listLoaded`` sends about 0.6 kB an
instance, so this is over 20,000 loaded instances."""
_PARALLEL_KEY = "llm.load.numParallelSessions"
"""LM Studio's load config field for parallel sessions: the SDK's config has no name for it."""
_NAMESPACES = ("llm", "embedding")
log = logging.getLogger(__name__)
_OFFLOAD_KEYS = (
    "llm.load.llama.acceleration.offloadRatio",
    "embedding.load.llama.acceleration.offloadRatio",
)


def _aconnect_ws(
    url: str, client: httpx.AsyncClient | None = None, **options: Any
) -> contextlib.AbstractAsyncContextManager[httpx_ws.AsyncWebSocketSession]:
    """httpx-ws's ``aconnect_ws``, its own client made with lmgui's one TLS context."""
    if client is not None:
        return httpx_ws.aconnect_ws(url, client, **options)
    return _aconnect_ws_own_client(url, **options)


@contextlib.asynccontextmanager
async def _aconnect_ws_own_client(
    url: str, **options: Any
) -> AsyncIterator[httpx_ws.AsyncWebSocketSession]:
    async with (
        httpx.AsyncClient(verify=tls_context()) as client,
        httpx_ws.aconnect_ws(url, client, **options) as ws,
    ):
        yield ws


# WORKAROUND (lmstudio 1.6.0b1, pinned): the SDK opens each of its five sockets through
# httpx-ws's own new httpx client, and every new client builds a TLS context (it loads the CA
# bundle: 21 ms on the GUI thread per socket, even for ws://). The same client, with lmgui's one
# context: five stalls of 21 ms when a channel opens (fifty for a fleet of ten) become none.
# tests/test_sim_sdk.py and tests/test_client_sdk.py exercise the SDK through it.
lmstudio._ws_impl.aconnect_ws = _aconnect_ws  # type: ignore[attr-defined,assignment]


async def _query_probe_url(url: str) -> httpx.Response:
    """The SDK's greeting probe (a GET with its 1 s timeout), on a client with lmgui's one TLS
    context."""
    async with httpx.AsyncClient(verify=tls_context()) as client:
        return await client.get(url, timeout=1)


# WORKAROUND (lmstudio 1.6.0b1, pinned): before its sockets the SDK probes the server's greeting
# through a new httpx client of its own, which builds a TLS context: the last 20 ms stall on the
# GUI thread each time a channel opens (a server coming back, a fleet starting). The same probe
# with lmgui's context. tests/test_client_sdk.py checks no TLS context is built while one opens.
lmstudio.async_api.AsyncClient._query_probe_url = staticmethod(_query_probe_url)  # type: ignore[method-assign]


def is_lmstudio_token(token: str | None) -> bool:
    """An LM Studio API token (``sk-lm-<8>:<20>``), the only kind the SDK channel takes."""
    return token is None or bool(_TOKEN.match(token))


@dataclass(frozen=True)
class InstanceTruth:
    """What the server says of one loaded instance over the SDK channel."""

    identifier: str
    model_key: str
    gpu_offload: float | None
    ttl_seconds: float | None
    last_used: float | None
    status: str | None
    queued: int | None
    reference: str = ""
    """The server's own reference of this instance: a new one for every load, even under an
    identifier used before (a reload, a restarted server)."""


def merge_truth(models: list[Model], truth: Mapping[str, InstanceTruth]) -> list[Model]:
    """The listed models with what the SDK channel says of each loaded instance (by its id,
    which is the identifier); models without such instances are the same objects."""
    out = []
    for model in models:
        if not any(i.id in truth for i in model.instances):
            out.append(model)
            continue
        instances = tuple(
            msgspec.structs.replace(
                i,
                gpu_offload=t.gpu_offload,
                ttl_seconds=t.ttl_seconds,
                last_used=t.last_used,
                status=t.status,
                queued=t.queued,
            )
            if (t := truth.get(i.id)) is not None
            else i
            for i in model.instances
        )
        out.append(msgspec.structs.replace(model, instances=instances))
    return out


class _Param:
    """A raw RPC parameter: the SDK sends ``to_dict()`` of what it is given."""

    def __init__(self, value: Mapping[str, Any]) -> None:
        self._value = dict(value)

    def to_dict(self) -> dict[str, Any]:
        return self._value


def _by_identifier(identifier: str) -> dict[str, Any]:
    return {"specifier": {"type": "query", "query": {"identifier": identifier}}}


def _offload(load_config: Any) -> float | None:
    """The GPU offload ratio in a load config (KV fields, as the server names them)."""
    fields = load_config.get("fields") if isinstance(load_config, dict) else None
    for field in fields if isinstance(fields, list) else ():
        if isinstance(field, dict) and field.get("key") in _OFFLOAD_KEYS:
            value = field.get("value")
            if value == "max":
                return 1.0
            if value == "off":
                return 0.0
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return min(max(float(value), 0.0), 1.0)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


class SdkChannel:
    """The SDK channel of one server: lmgui's own sockets for the calls a poll makes (opened on
    first use and kept open), the official SDK's client for loads (opened on the first load)."""

    def __init__(
        self,
        transport: Transport,
        token: str | None,
        *,
        connect_seconds: float = 10.0,
        call_seconds: float = 10.0,
        load_seconds: float = 1200.0,
    ) -> None:
        self._transport = transport
        self._token = token
        self._connect_seconds = connect_seconds
        self._call_seconds = call_seconds
        self._load_seconds = load_seconds
        self._greeted = False
        self._closed = False
        self._client: lmstudio.AsyncClient | None = None
        self._client_retry_at = 0.0
        self._opening: asyncio.Lock | None = None
        self._socket_lock: asyncio.Lock | None = None
        self._sockets: dict[str, RpcSocket] = {}
        """The poll's sockets by namespace, kept open; a broken one is opened again."""
        self._sockets_opened = False
        self._reopen_failed: tuple[float, ApiError] | None = None
        """When opening a broken socket again last failed, and how: polls within
        ``REOPEN_SECONDS`` of it fail at once the same way instead of waiting again."""
        self._offload: dict[str, float | None] = {}
        """GPU offload per instance reference: a load config never changes while it lives."""
        self._hardware: ServerHardware | None = None
        self._hardware_asked = False
        self.unavailable: str | None = None
        """Why there is no SDK channel (a phrase), once that is known."""
        self.client_unavailable: str | None = None
        """Why the SDK's own client cannot be used (loads keep to REST) where lmgui's sockets
        can: the SDK probes the server with a 1 s timeout of its own, for one."""
        # Without a token the SDK is a guest; lmgui's own sockets are the same guest.
        self._guest = (f"guest:{uuid.uuid4()}", str(uuid.uuid4()))
        parts = urlsplit(transport.base_url)
        if parts.scheme != "http":
            self.unavailable = "the SDK channel is not used over https"
        elif not is_lmstudio_token(token):
            self.unavailable = "the API token is not an LM Studio token (sk-lm-...)"
        self._host = parts.netloc.rpartition("@")[2]

    # ------------------------------------------------------------------ connecting

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        """The channel has answered: lmgui's sockets were admitted (or the SDK's client was)."""
        return self.unavailable is None and (self._sockets_opened or self._client is not None)

    def _lock(self) -> asyncio.Lock:
        if self._opening is None:
            self._opening = asyncio.Lock()
        return self._opening

    def _sockets_lock(self) -> asyncio.Lock:
        """Held while the poll's sockets open (never while the SDK's client does: a first load
        must not hold up a poll, nor a poll a load)."""
        if self._socket_lock is None:
            self._socket_lock = asyncio.Lock()
        return self._socket_lock

    async def _available(self) -> bool:
        """The server greets as LM Studio (asked once); sets ``unavailable`` when it does not."""
        if self.unavailable is not None:
            return False
        if self._greeted:
            return True
        async with self._lock():
            if not self._greeted and self.unavailable is None:
                await self._greet()
        return self.unavailable is None

    async def _greet(self) -> None:
        try:
            body = await self._transport.send(
                "GET",
                GREETING,
                what="the SDK greeting",
                deadline=self._connect_seconds,
                limit=GREETING_LIMIT,
            )
            greeting = msgspec.json.decode(body)
        except (ApiError, msgspec.DecodeError):
            greeting = None
        if isinstance(greeting, dict) and greeting.get("lmstudio") is True:
            self._greeted = True
        else:
            self.unavailable = "the server does not offer LM Studio's SDK channel"

    async def client(self) -> lmstudio.AsyncClient | None:
        """The SDK's client (for loads), connecting on first use; None when the server has no
        such channel. A refused token raises ``AuthError``, as REST would."""
        if not await self._available():
            return None
        if self.client_unavailable is not None:
            if time.monotonic() < self._client_retry_at:
                return None
            self.client_unavailable = None  # a while later: worth another try
        if self._client is not None:
            return self._client
        async with self._lock():
            if self._client is None and self.client_unavailable is None and not self._closed:
                await self._open()
        return self._client

    async def _open(self) -> None:
        # "" and not None: with None the SDK would send $LMSTUDIO_API_TOKEN, a token meant for
        # whatever server that variable was set for, to this one.
        client = lmstudio.AsyncClient(self._host, api_token=self._token or "")
        try:
            async with asyncio.timeout(self._connect_seconds):
                await client.__aenter__()
        except lmstudio.LMStudioServerError as exc:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            if "Authentication failed" in str(exc):
                said = str(exc).partition("Reported cause:")[2].strip() or "no reason given"
                raise self._transport.err(
                    AuthError,
                    f"{self._transport.where} refused the API token on its SDK channel: "
                    f"{said} Check the token in lmgui's settings.",
                    server_message=said,
                ) from None
            self._client_failed("the server's SDK channel refused the SDK's connection")
        except (TimeoutError, lmstudio.LMStudioError, OSError, httpx.HTTPError):
            # httpx.HTTPError: the SDK probes the server with a 1 s timeout of its own.
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            self._client_failed("the server's SDK channel does not answer the SDK")
        else:
            if self.closed:  # closed while it connected: it must not outlive the channel
                with contextlib.suppress(Exception):
                    await client.__aexit__(None, None, None)
            else:
                self._client = client

    def _client_failed(self, why: str) -> None:
        self.client_unavailable = why
        self._client_retry_at = time.monotonic() + CLIENT_RETRY_SECONDS

    def _new_socket(self, namespace: str, max_bytes: int) -> RpcSocket:
        return RpcSocket(
            self._transport,
            self._host,
            namespace,
            self._auth_message(),
            has_token=bool(self._token),
            max_bytes=max_bytes,
            open_seconds=self._connect_seconds,
            call_seconds=self._call_seconds,
        )

    async def _socket(self, namespace: str) -> RpcSocket:
        """The poll's open socket to ``namespace``. The first opening that fails (the server
        greets as LM Studio but its sockets do not answer: a proxy that forwards only HTTP)
        leaves the channel unavailable; after that, a socket that broke is opened again at its
        next use, and a failure to do so is that call's error."""
        sock = self._sockets.get(namespace)
        if sock is not None and not sock.closed:
            return sock
        async with self._sockets_lock():
            sock = self._sockets.get(namespace)
            if sock is not None and not sock.closed:
                return sock
            if self._closed:
                raise self._transport.err(
                    ServerUnreachable, f"The SDK channel to {self._transport.where} was closed."
                )
            failed = self._reopen_failed
            if failed is not None and time.monotonic() - failed[0] < REOPEN_SECONDS:
                raise failed[1].with_traceback(None)
            if sock is not None:
                await sock.aclose()
            sock = self._new_socket(namespace, MESSAGE_LIMIT)
            try:
                await sock.open()
            except AuthError:
                raise
            except ApiError as exc:
                if not self._sockets_opened:
                    self.unavailable = "the server's SDK channel does not answer"
                else:
                    self._reopen_failed = (time.monotonic(), exc)
                raise
            if self.closed:  # closed while this one opened: it must not outlive the channel
                await sock.aclose()
                raise self._transport.err(
                    ServerUnreachable, f"The SDK channel to {self._transport.where} was closed."
                )
            self._reopen_failed = None
            self._sockets[namespace] = sock
            self._sockets_opened = True
            return sock

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        sockets, self._sockets = list(self._sockets.values()), {}
        await asyncio.gather(*(sock.aclose() for sock in sockets))
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def _lost(self) -> None:
        """The SDK client's connection broke: the next load connects again."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    # ------------------------------------------------------------------ calls

    async def _call(self, namespace: str, endpoint: str, param: Mapping[str, Any] | None) -> Any:
        """One RPC on the poll's socket to ``namespace`` (opened if need be)."""
        sock = await self._socket(namespace)
        return await sock.call(endpoint, param)

    async def truth(self) -> dict[str, InstanceTruth] | None:
        """Every loaded instance as the server knows it, by identifier; None without a channel.

        Two round trips however many instances are loaded: the lists, then every instance's
        processing state (and the load configs not seen before) at once."""
        if not await self._available():
            return None
        socks = {ns: s for ns in _NAMESPACES if (s := self._sockets.get(ns)) and not s.closed}
        if len(socks) < len(_NAMESPACES):
            try:
                opened = await asyncio.gather(*(self._socket(ns) for ns in _NAMESPACES))
            except (AuthError, ServerUnreachable, ProtocolError):
                if self.unavailable is not None:
                    return None  # the first opening failed: REST alone, as without a channel
                raise
            socks = dict(zip(_NAMESPACES, opened, strict=True))
        listed = await call_all(
            [Call(socks[ns], "listLoaded") for ns in _NAMESPACES], self._call_seconds
        )
        for items in listed:
            if isinstance(items, ApiError):
                raise items
        pairs = [
            (ns, item)
            for ns, items in zip(_NAMESPACES, listed, strict=True)
            for item in (items if isinstance(items, list) else ())
            if isinstance(item, dict) and isinstance(item.get("identifier"), str)
        ]
        unknown = [
            (ns, i) for ns, i in pairs if str(i.get("instanceReference")) not in self._offload
        ]
        # States and the load configs not yet known go out together: one more round trip.
        answers = await call_all(
            [
                Call(
                    socks[ns],
                    "getInstanceProcessingState",
                    {**_by_identifier(i["identifier"]), "throwIfNotFound": False},
                )
                for ns, i in pairs
            ]
            + [
                Call(socks[ns], "getLoadConfig", _by_identifier(i["identifier"]))
                for ns, i in unknown
            ],
            self._call_seconds,
        )
        states, configs = answers[: len(pairs)], answers[len(pairs) :]
        for (_, item), config in zip(unknown, configs, strict=True):
            if not isinstance(config, BaseException):
                self._offload[str(item.get("instanceReference"))] = _offload(config)
        alive = {str(i.get("instanceReference")) for _, i in pairs}
        for gone in self._offload.keys() - alive:  # unloaded instances: forget their configs
            del self._offload[gone]
        out = {}
        for (_, item), state in zip(pairs, states, strict=True):
            ttl_ms = _number(item.get("ttlMs"))
            used_ms = _number(item.get("lastUsedTime"))
            status = state.get("status") if isinstance(state, dict) else None
            queued = state.get("queued") if isinstance(state, dict) else None
            out[item["identifier"]] = InstanceTruth(
                identifier=item["identifier"],
                model_key=str(item.get("modelKey") or ""),
                gpu_offload=self._offload.get(str(item.get("instanceReference"))),
                ttl_seconds=ttl_ms / 1000 if ttl_ms is not None else None,
                last_used=used_ms / 1000 if used_ms is not None else None,
                status=status if isinstance(status, str) else None,
                queued=queued if isinstance(queued, int) and not isinstance(queued, bool) else None,
                reference=str(item.get("instanceReference") or ""),
            )
        return out

    def _auth_message(self) -> dict[str, Any]:
        """The first message of a socket: the token's two halves, as the SDK sends them."""
        if self._token:
            ident, _, passkey = self._token.removeprefix("sk-lm-").partition(":")
        else:
            ident, passkey = self._guest
        return {"authVersion": 1, "clientIdentifier": ident, "clientPasskey": passkey}

    async def _raw_call(self, namespace: str, endpoint: str, param: Any = None) -> Any:
        """One RPC on a socket of its own, for a namespace the poll does not keep open
        (``/runtime``): opened, asked, closed."""
        if not await self._available():
            raise ServerUnreachable(self.unavailable or "no SDK channel")
        sock = self._new_socket(namespace, RAW_MESSAGE_LIMIT)
        await sock.open()
        try:
            return await sock.call(endpoint, param)
        finally:
            await sock.aclose()

    async def hardware(self) -> ServerHardware | None:
        """The GPUs and VRAM LM Studio's runtime surveyed (``lms runtime survey``); None without
        the channel or when the server reports none. Asked once: the hardware does not change
        while the server runs (an error leaves it to be asked again)."""
        if self._hardware_asked:
            return self._hardware
        if not await self._available():
            return None
        result = await self._raw_call("runtime", "surveyHardware")
        self._hardware, self._hardware_asked = parse_hardware(result), True
        return self._hardware

    async def estimate(
        self,
        model_key: str,
        *,
        embedding: bool,
        config: Mapping[str, Any],
        parallel: int | None = None,
    ) -> ServerEstimate | None:
        """LM Studio's own estimate of loading ``model_key`` with ``config`` (the SDK's names, as
        for ``load``): its memory and whether its guardrails let it load; None without the
        channel or when the answer has no figure."""
        if not await self._available():
            return None
        stack = _config_stack(config, embedding, parallel)
        result = await self._call(
            "embedding" if embedding else "llm",
            "estimateModelUsage",
            {"modelKey": model_key, "loadConfigStack": stack},
        )
        return parse_estimate(result)

    # ------------------------------------------------------------------ loading

    async def load(
        self,
        model_key: str,
        *,
        embedding: bool,
        identifier: str | None,
        ttl: int | None,
        config: Mapping[str, Any],
        parallel: int | None = None,
        on_progress: Callable[[float], None] | None,
    ) -> tuple[str, float]:
        """Load through the SDK channel; the new instance's identifier and the seconds it took.

        ``config`` uses the SDK's load config names (contextLength, gpu, flashAttention...).
        ``parallel`` goes as the server's own KV field: the SDK's load config has no name for it."""
        client = await self.client()
        if client is None:
            raise ServerUnreachable(self.unavailable or self.client_unavailable or "no SDK channel")
        session = client.embedding if embedding else client.llm
        started = time.monotonic()

        try:
            async with asyncio.timeout(self._load_seconds):
                loaded = await _load_new_instance(
                    session, model_key, identifier, ttl, config, parallel, on_progress
                )
        except TimeoutError:
            raise self._transport.err(
                ServerUnreachable,
                f"{self._transport.where} did not finish loading {model_key} within "
                f"{self._load_seconds:g} s.",
            ) from None
        except lmstudio.LMStudioModelNotFoundError as exc:
            raise self._transport.err(
                BadRequestError,
                f"{self._transport.where} has no model {model_key}: {first_line(exc)}",
                server_message=str(exc),
            ) from None
        except lmstudio.LMStudioWebsocketError:
            await self._lost()
            raise self._transport.err(
                ServerUnreachable,
                f"The SDK channel to {self._transport.where} was closed during the load of "
                f"{model_key}.",
            ) from None
        except lmstudio.LMStudioError as exc:
            raise self._transport.err(
                ServerError,
                f"{self._transport.where} could not load {model_key}: {first_line(exc)}",
                server_message=str(exc),
            ) from None
        return loaded, time.monotonic() - started


async def _load_new_instance(
    session: Any,
    model_key: str,
    identifier: str | None,
    ttl: int | None,
    config: Mapping[str, Any],
    parallel: int | None,
    on_progress: Callable[[float], None] | None,
) -> str:
    """``session.load_new_instance`` with one more KV field the SDK's config cannot name.

    The same steps as the SDK's own method (its load endpoint, its channel), plus
    ``llm.load.numParallelSessions`` in the API override layer, the key LM Studio's own load
    config uses; the SDK is pinned, and tests/test_sim_sdk.py checks the server receives it."""
    if parallel is None:
        handle = await session.load_new_instance(
            model_key, identifier, ttl=ttl, config=dict(config), on_load_progress=on_progress
        )
        return str(handle.identifier)
    types = session._API_TYPES
    endpoint = LoadModelEndpoint(
        model_key,
        identifier,
        ttl,
        types.REQUEST_NEW_INSTANCE,
        types.MODEL_LOAD_CONFIG,
        dict(config),
        on_progress,
    )
    params: Any = endpoint.creation_params
    params["loadConfigStack"] = _config_stack(config, False, parallel)
    async with session._create_channel(endpoint) as channel:
        result = await channel.wait_for_result()
    return str(result.identifier)


def _config_stack(
    config: Mapping[str, Any], embedding: bool, parallel: int | None
) -> dict[str, Any]:
    """The load config as the server's KV stack, as the SDK builds it, plus ``parallel``."""
    kind: Any = EmbeddingLoadModelConfig if embedding else LlmLoadModelConfig
    stack: Any = load_config_to_kv_config_stack(dict(config), kind).to_dict()
    if parallel is not None:
        layer = stack["layers"][0]["config"]
        layer["fields"] = [*layer["fields"], {"key": _PARALLEL_KEY, "value": parallel}]
    return cast(dict[str, Any], stack)
