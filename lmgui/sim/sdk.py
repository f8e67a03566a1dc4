"""LM Studio's SDK websocket API, served by the simulator on its REST port, over the same state.

What the official SDKs (lmstudio-python, @lmstudio/sdk) and ``lms`` speak, as their public
sources define it (lmstudio-js ``packages/lms-communication``, ``lms-communication-server``,
``lms-external-backend-interfaces``, ``lms-shared-types``, ``lms-kv-config``):

- One websocket per namespace, at ``/<namespace>`` (``llm``, ``embedding``, ``system``,
  ``files``, ``repository``, ``diagnostics``, ``plugins``, ``runtime``); an upgrade on any other
  path is refused with a 403.
- The client speaks first: ``{"authVersion": 1, "clientIdentifier", "clientPasskey"}``; the server
  answers ``{"success": true}`` or ``{"success": false, "error": "<text>"}`` and closes.
- Then JSON messages both ways. RPC: ``rpcCall {endpoint, callId, parameter?}`` answered by
  ``rpcResult {callId, result?}`` (no ``result`` for a void or undefined one) or
  ``rpcError {callId, error}``. Channels: ``channelCreate {endpoint, channelId,
  creationParameter?}``, then ``channelSend {channelId, message}`` either way, ending with the
  server's ``channelClose {channelId}`` or ``channelError {channelId, error}``. ``keepAlive`` is
  answered ``keepAliveAck``. Errors are serialized LMS errors: ``{title, rootTitle, cause?,
  suggestion?, displayData?}``.
- A call the server cannot route (an endpoint the namespace does not have, a parameter of the
  wrong shape) gets no answer at all, only a ``communicationWarning {warning, kind}`` (at most
  five per connection): that is what lmstudio-js's ``ServerPort`` does, and a client that waits
  for an answer to one waits forever. An endpoint the real protocol has but the simulator does
  not implement is answered with an ``rpcError`` / ``channelError`` saying so.

Everything here runs on uvicorn's event loop; ``SimState`` is the one state behind both this API
and REST, so an instance loaded here is in ``GET /api/v1/models`` and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, TypeGuard

from lmgui.sim.catalog import GB
from lmgui.sim.state import SimError, SimInstance, SimState
from lmgui.sim.textgen import Turn, generate, tokens_of

__all__ = [
    "AUTH_INVALID_TOKEN",
    "AUTH_TOKEN_REQUIRED",
    "NAMESPACES",
    "SdkApi",
    "instance_info",
    "load_kv_config",
    "model_info",
    "refuse",
    "token_identity",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

AUTH_TOKEN_REQUIRED = (
    "An LM Studio API token is required to connect to this server, but none was provided."
)
"""The refusal of a guest client when a token is required. The real text is not public [guess]."""
AUTH_INVALID_TOKEN = "Invalid LM Studio API token provided."
"""The refusal of a wrong identifier or passkey (REST's 401 text) [guess]."""
AUTH_TIMEOUT_SECONDS = 10.0
"""lmstudio-js's ``AuthenticatedWsServer`` default: no valid auth packet by then ends the socket."""
MAX_WARNINGS = 5
"""``ServerPort`` stops sending communication warnings after five per connection."""
SIM_VERSION = {"version": "0.4.25", "build": 0}
"""What ``system.version`` reports: the LM Studio version the simulator imitates."""
_LOAD_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
_POLL = 0.01  # seconds between checks for an instance loading on another connection

# Every endpoint each namespace has in lmstudio-js (lms-external-backend-interfaces), as
# (RPC endpoints, channel endpoints). Names outside these get a communication warning; names
# inside that the simulator does not implement get an error saying so.
_MODEL_RPC = frozenset(
    {
        "unloadModel",
        "listLoaded",
        "getModelInfo",
        "getLoadConfig",
        "getBasePredictionConfig",
        "getInstanceProcessingState",
        "estimateModelUsage",
    }
)
_MODEL_CHANNELS = frozenset({"loadModel", "getOrLoad"})
NAMESPACES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "llm": (
        _MODEL_RPC | {"applyPromptTemplate", "tokenize", "countTokens", "preloadDraftModel"},
        _MODEL_CHANNELS | {"predict", "completeRawText"},
    ),
    "embedding": (_MODEL_RPC | {"embedString", "tokenize", "countTokens"}, _MODEL_CHANNELS),
    "system": (
        frozenset(
            {
                "listDownloadedModels",
                "listDownloadedModelVariants",
                "notify",
                "version",
                "setExperimentFlag",
                "getExperimentFlags",
                "startHttpServer",
                "stopHttpServer",
                "info",
                "requestShutdown",
            }
        ),
        frozenset({"alive"}),
    ),
    "files": (
        frozenset({"getLocalFileAbsolutePath", "uploadFileBase64", "getDocumentParsingLibrary"}),
        frozenset({"retrieve", "parseDocument"}),
    ),
    "repository": (
        frozenset(
            {
                "searchModels",
                "getModelDownloadOptions",
                "installPluginDependencies",
                "getLocalArtifactFiles",
                "getWritableArtifactOwners",
                "isAuthenticated",
                "getAuthenticationStatus",
                "deauthenticate",
                "loginAsComputeDevice",
                "loginWithPreAuthenticatedKeys",
                "installLocalPlugin",
                "getModelCatalog",
                "fuzzyFindStaffPicks",
                "lmLinkStatus",
                "lmLinkSetDisabled",
                "lmLinkUpdateDeviceName",
                "lmLinkSetPreferredDevice",
            }
        ),
        frozenset(
            {
                "downloadModel",
                "downloadArtifact",
                "pushArtifact",
                "ensureAuthenticated",
                "createDownloadPlan",
            }
        ),
    ),
    "diagnostics": (frozenset(), frozenset({"streamLogs"})),
    "plugins": (
        frozenset(
            {
                "reindexPlugins",
                "processingHandleUpdate",
                "processingHandleRequest",
                "processingPullHistory",
                "processingGetOrLoadTokenSource",
                "processingHasStatus",
                "processingNeedsNaming",
                "processingSuggestName",
                "processingSetSenderName",
                "setConfigSchematics",
                "setGlobalConfigSchematics",
                "pluginInitCompleted",
                "reportError",
            }
        ),
        frozenset(
            {
                "startToolUseSession",
                "generateWithGenerator",
                "registerDevelopmentPlugin",
                "setPromptPreprocessor",
                "setPredictionLoopHandler",
                "setToolsProvider",
                "setGenerator",
            }
        ),
    ),
    "runtime": (
        frozenset(
            {
                "listEngines",
                "getEngineSelections",
                "selectEngine",
                "removeEngine",
                "surveyHardware",
                "searchRuntimeExtensions",
            }
        ),
        frozenset({"downloadRuntimeExtension"}),
    ),
}

_DEFAULT_GPU_SPLIT = {"strategy": "evenly", "disabledGpus": [], "priority": [], "customRatio": []}


class SdkError(Exception):
    """An error the server reports to the client, serialized as an LMS extended error."""

    def __init__(
        self,
        title: str,
        *,
        cause: str | None = None,
        suggestion: str | None = None,
        display_data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(title)
        self.title = title
        self.cause = cause
        self.suggestion = suggestion
        self.display_data = display_data

    @classmethod
    def of(cls, exc: SimError) -> SdkError:
        """The REST error's message as the title (the state raises one kind of error)."""
        err = exc.body.get("error")
        message = err.get("message") if isinstance(err, dict) else str(err)
        return cls(str(message))

    def serialized(self) -> dict[str, Any]:
        # serializeError() in lms-shared-types: rootTitle repeats the title.
        out: dict[str, Any] = {"title": self.title, "rootTitle": self.title}
        if self.cause is not None:
            out["cause"] = self.cause
        if self.suggestion is not None:
            out["suggestion"] = self.suggestion
        if self.display_data is not None:
            out["displayData"] = self.display_data
        return out


class _UnroutableError(Exception):
    """A message the server cannot route: a communication warning, and no answer."""

    def __init__(self, warning: str, kind: str) -> None:
        super().__init__(warning)
        self.warning = warning
        self.kind = kind


def _bad_parameter(what: str, endpoint: str, detail: str) -> _UnroutableError:
    kind = "rpcParameterTypeError" if what == "rpc" else "channelCreationParameterTypeError"
    noun = "parameter for rpcCall" if what == "rpc" else "creationParameter for channel"
    return _UnroutableError(f"Received invalid {noun}, endpointName = {endpoint}: {detail}", kind)


# ----------------------------------------------------------------------------- wire shapes


def _format(entry: dict[str, Any]) -> str:
    # The SDK's ModelCompatibilityType: MLX models are "safetensors" there, not "mlx".
    return {"gguf": "gguf", "mlx": "safetensors"}.get(entry.get("format") or "gguf", "gguf")


def _model_path(entry: dict[str, Any]) -> str:
    """The model's relative path, shaped like LM Studio's (publisher/repo/file for GGUF)."""
    key = str(entry["key"])
    publisher = str(entry.get("publisher") or key.split("/")[0])
    name = key.split("/")[-1]
    quant = (entry.get("quantization") or {}).get("name") or "F16"
    if _format(entry) == "safetensors":
        return f"{publisher}/{name}-{quant}"
    return f"{publisher}/{name}-GGUF/{name}-{quant}.gguf"


def _bits(quant: dict[str, Any]) -> int:
    bits = quant.get("bits_per_weight")
    if isinstance(bits, (int, float)) and not isinstance(bits, bool):
        return int(bits)
    digits = re.search(r"\d+", str(quant.get("name") or ""))
    return int(digits.group()) if digits else 0


def model_info(entry: dict[str, Any], *, key: str | None = None) -> dict[str, Any]:
    """A catalog entry as the SDK's ``ModelInfo`` (``LLMInfo`` or ``EmbeddingModelInfo``).

    Optional fields are left out rather than sent as null: the zod schemas have them
    ``.optional()``, which rejects null.
    """
    caps = entry.get("capabilities") or {}
    path = _model_path(entry)
    info: dict[str, Any] = {
        "type": entry["type"],
        "modelKey": key or entry["key"],
        "format": _format(entry),
        "displayName": entry.get("display_name") or entry["key"],
        "publisher": entry.get("publisher") or str(entry["key"]).split("/")[0],
        "path": path,
        "sizeBytes": int(entry.get("size_bytes") or 0),
        "indexedModelIdentifier": path,
        "deviceIdentifier": None,
    }
    if entry.get("params_string"):
        info["paramsString"] = entry["params_string"]
    if entry.get("architecture"):
        info["architecture"] = entry["architecture"]
    quant = entry.get("quantization")
    if isinstance(quant, dict) and quant.get("name"):
        info["quantization"] = {"name": quant["name"], "bits": _bits(quant)}
    if entry.get("variants"):
        info["variants"] = list(entry["variants"])
        info["selectedVariant"] = entry.get("selected_variant") or entry["variants"][0]
    if entry["type"] == "llm":
        info["vision"] = bool(caps.get("vision"))
        info["trainedForToolUse"] = bool(caps.get("trained_for_tool_use"))
    info["maxContextLength"] = int(entry.get("max_context_length") or 0)
    return info


def instance_info(state: SimState, inst: SimInstance) -> dict[str, Any]:
    """A loaded instance as the SDK's ``LLMInstanceInfo`` / ``EmbeddingModelInstanceInfo``.

    ``ttlMs`` is the idle TTL (null: none) and ``lastUsedTime`` the last use in Unix ms; ``lms
    ps`` shows ``ttlMs - (now - lastUsedTime)`` as the time left.
    """
    entry = state.entry(inst.model_key) or {"key": inst.model_key, "type": "llm"}
    info = model_info(entry)
    info.update(
        identifier=inst.id,
        instanceReference=inst.reference,
        ttlMs=int(inst.ttl * 1000) if inst.ttl is not None else None,
        lastUsedTime=state.wall_ms(inst.last_used),
        contextLength=int(inst.config.get("context_length") or 0),
    )
    return info


def load_kv_config(inst: SimInstance, domain: str) -> dict[str, Any]:
    """The instance's load config as the KVConfig ``getLoadConfig`` answers (full key names)."""
    cfg = inst.config
    if domain == "embedding":
        fields: list[dict[str, Any]] = [
            {"key": "embedding.load.contextLength", "value": cfg.get("context_length")},
            {"key": "embedding.load.llama.acceleration.offloadRatio", "value": inst.gpu},
        ]
    else:
        fields = [
            {"key": "llm.load.contextLength", "value": cfg.get("context_length")},
            {"key": "llm.load.llama.acceleration.offloadRatio", "value": inst.gpu},
            {"key": "llm.load.llama.evalBatchSize", "value": cfg.get("eval_batch_size")},
            {"key": "llm.load.llama.flashAttention", "value": cfg.get("flash_attention")},
            {"key": "llm.load.offloadKVCacheToGpu", "value": cfg.get("offload_kv_cache_to_gpu")},
            {"key": "llm.load.numParallelSessions", "value": cfg.get("parallel")},
        ]
        if "num_experts" in cfg:
            fields.append({"key": "llm.load.numExperts", "value": cfg["num_experts"]})
    fields.append({"key": "load.gpuSplitConfig", "value": dict(_DEFAULT_GPU_SPLIT)})
    return {"fields": fields}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _collapse(stack: Any, endpoint: str) -> dict[str, Any]:
    """A KVConfigStack's fields, later layers winning (lms-kv-config ``collapseKVStackRaw``)."""
    layers = stack.get("layers") if isinstance(stack, dict) else None
    if not isinstance(layers, list):
        raise _bad_parameter("channel", endpoint, "loadConfigStack.layers must be an array")
    out: dict[str, Any] = {}
    for layer in layers:
        config = layer.get("config") if isinstance(layer, dict) else None
        fields = config.get("fields") if isinstance(config, dict) else None
        if not isinstance(fields, list):
            raise _bad_parameter("channel", endpoint, "each layer needs config.fields")
        for f in fields:
            if not isinstance(f, dict) or not isinstance(f.get("key"), str):
                raise _bad_parameter("channel", endpoint, "each field needs a string key")
            out[f["key"]] = f.get("value")
    return out


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= n


def _is_ratio(value: Any) -> bool:
    return value in ("max", "off") or (_is_number(value) and 0 <= value <= 1)


# KV load field (after "<domain>.load.") -> (begin_load option, check, what the check wants).
_LOAD_FIELDS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "contextLength": ("context_length", _at_least(1), "an int >= 1"),
    "llama.acceleration.offloadRatio": ("gpu", _is_ratio, 'a number 0..1, "max" or "off"'),
}
_LLM_LOAD_FIELDS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "llama.evalBatchSize": ("eval_batch_size", _at_least(1), "an int >= 1"),
    "llama.flashAttention": ("flash_attention", _is_bool, "a boolean"),
    "offloadKVCacheToGpu": ("offload_kv_cache_to_gpu", _is_bool, "a boolean"),
    "numExperts": ("num_experts", _at_least(0), "an int >= 0"),
    "numParallelSessions": ("parallel", lambda v: _at_least(1)(v) and v <= 1023, "1..1023"),
}


def _load_options(fields: dict[str, Any], domain: str) -> dict[str, Any]:
    """KV load fields as ``SimState.begin_load`` options; a value of the wrong kind is an error.

    Fields the simulator does not model (rope, mmap, seed, KV cache types...) are accepted and
    ignored, as the server accepts any field its schema knows.
    """
    known = {**_LOAD_FIELDS, **(_LLM_LOAD_FIELDS if domain == "llm" else {})}
    options: dict[str, Any] = {}
    for name, (option, check, expected) in known.items():
        key = f"{domain}.load.{name}"
        value = fields.get(key)
        if value is None:
            continue
        if not check(value):
            raise SdkError(f"Invalid value for load config field {key}: expected {expected}.")
        options[option] = value
    return options


def _hardware_survey(state: SimState) -> dict[str, Any]:
    """``runtime.surveyHardware``: one simulated GPU with the configured VRAM budget."""
    vram = int(state.config.vram_gb * GB)
    ram = 64 * GB
    ok = {"code": "success", "message": ""}
    return {
        "status": "ok",
        "engines": [
            {
                "name": "llama.cpp-linux-x86_64-nvidia-cuda12-avx2",
                "version": "1.0.0",
                "engine": "llama.cpp",
                "platform": "linux",
                "compatibility": {"status": "compatible"},
                "supportedModelFormatNames": ["GGUF"],
                "hardwareSurvey": {
                    "gpuSurveyResult": {
                        "result": ok,
                        "gpuInfo": [
                            {
                                "name": "Simulated GPU (lmgui-sim)",
                                "deviceId": 0,
                                "totalMemoryCapacityBytes": vram,
                                "dedicatedMemoryCapacityBytes": vram,
                                "integrationType": "discrete",
                                "detectionPlatform": "CUDA",
                                "detectionPlatformVersion": "12.8",
                                "otherInfo": {},
                            }
                        ],
                    },
                    "cpuSurveyResult": {
                        "result": ok,
                        "cpuInfo": {
                            "name": "Simulated CPU",
                            "architecture": "x86_64",
                            "supportedInstructionSetExtensions": ["AVX", "AVX2"],
                        },
                    },
                },
                "memoryInfo": {"ramCapacity": ram, "vramCapacity": vram, "totalMemory": ram + vram},
            }
        ],
    }


# ----------------------------------------------------------------------------- identities


def token_identity(token: str) -> tuple[str, str]:
    """The (clientIdentifier, clientPasskey) an SDK derives from ``sk-lm-<id>:<passkey>``."""
    body = token.removeprefix("sk-lm-")
    ident, _, passkey = body.partition(":")
    return ident, passkey


class _Identities:
    """Who may connect: the configured token's identity, or first come, first served.

    Without a token LM Studio's FCFS authenticator trusts the first passkey seen for an
    identifier until every connection of that client has closed; a second passkey for the same
    identifier meanwhile is refused (lms-communication-server ``fcfsAuthenticator.ts``).
    """

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._held: dict[str, tuple[str, int]] = {}

    def admit(self, ident: str, passkey: str) -> str | None:
        """None when admitted (the caller must ``release`` later), else the refusal text."""
        if self.token is not None:
            want_id, want_key = token_identity(self.token)
            # Both halves compared in constant time, and both always compared.
            ok_id = hmac.compare_digest(ident.encode(), want_id.encode())
            ok_key = hmac.compare_digest(passkey.encode(), want_key.encode())
            if not (ok_id and ok_key):
                return AUTH_TOKEN_REQUIRED if ident.startswith("guest:") else AUTH_INVALID_TOKEN
        held = self._held.get(ident)
        if held is not None and not hmac.compare_digest(held[0].encode(), passkey.encode()):
            return f'Failed to validate client: Invalid client passkey for client "{ident}"'
        self._held[ident] = (passkey, (held[1] if held else 0) + 1)
        return None

    def release(self, ident: str) -> None:
        passkey, count = self._held.get(ident, ("", 1))
        if count <= 1:
            self._held.pop(ident, None)
        else:
            self._held[ident] = (passkey, count - 1)


# ----------------------------------------------------------------------------- one connection


class _Channel:
    """A server-side channel: what the handler sends, and the client's messages to read."""

    def __init__(self, conn: _Connection, channel_id: int) -> None:
        self._conn = conn
        self.id = channel_id
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def send(self, message: dict[str, Any]) -> None:
        await self._conn.send({"type": "channelSend", "channelId": self.id, "message": message})


_NO_RESULT: Any = object()


class _Connection:
    def __init__(self, api: SdkApi, namespace: str, receive: Receive, send: Send) -> None:
        self.api = api
        self.state = api.state
        self.namespace = namespace
        self.domain: Literal["llm", "embedding"] | None = (
            "llm" if namespace == "llm" else "embedding" if namespace == "embedding" else None
        )
        self._receive = receive
        self._send = send
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._warnings = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._channels: dict[int, _Channel] = {}

    # -------------------------------------------------------------- transport

    async def send(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        text = json.dumps(message, separators=(",", ":"))
        async with self._send_lock:
            try:
                await self._send({"type": "websocket.send", "text": text})
            except Exception:  # the peer is gone: nothing more can be said to it
                self._closed = True

    async def _receive_json(self) -> Any:
        """The next message (parsed JSON, or a str that is not JSON); None on disconnect."""
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                self._closed = True
                return None
            if message["type"] != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            try:
                return json.loads(text)
            except ValueError:
                return ""  # ignored, as the real server ignores (and logs) invalid JSON

    async def _close(self, code: int = 1000) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.close", "code": code})

    async def warn(self, warning: str, kind: str) -> None:
        if self._warnings >= MAX_WARNINGS:
            return
        self._warnings += 1
        await self.send({"type": "communicationWarning", "warning": warning, "kind": kind})

    # -------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        ident = await self._authenticate()
        if ident is None:
            return
        try:
            while True:
                msg = await self._receive_json()
                if msg is None:
                    break
                if isinstance(msg, dict):
                    await self._dispatch(msg)
        finally:
            self._closed = True
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self.api.identities.release(ident)

    async def _authenticate(self) -> str | None:
        """The admitted client identifier, or None when the socket was refused or closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + AUTH_TIMEOUT_SECONDS
        while True:
            try:
                packet = await asyncio.wait_for(self._receive_json(), deadline - loop.time())
            except TimeoutError:
                await self.send({"success": False, "error": "Authentication timed out"})
                await self._close()
                return None
            if packet is None:
                return None
            if not _is_auth_packet(packet):
                continue  # the real server ignores anything else until a valid packet comes
            ident, passkey = packet["clientIdentifier"], packet["clientPasskey"]
            refusal = self.api.identities.admit(ident, passkey)
            if refusal is not None:
                await self.send({"success": False, "error": refusal})
                await self._close()
                return None
            await self.send({"success": True})
            return str(ident)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "keepAlive":
            await self.send({"type": "keepAliveAck"})
        elif kind == "rpcCall":
            endpoint, call_id = msg.get("endpoint"), msg.get("callId")
            if isinstance(endpoint, str) and _is_int(call_id):
                self._spawn(self._rpc(endpoint, call_id, msg.get("parameter")))
        elif kind == "channelCreate":
            endpoint, channel_id = msg.get("endpoint"), msg.get("channelId")
            if isinstance(endpoint, str) and _is_int(channel_id):
                await self._open_channel(endpoint, channel_id, msg.get("creationParameter"))
        elif kind == "channelSend":
            cid = msg.get("channelId")
            channel = self._channels.get(cid) if _is_int(cid) else None
            if channel is None:
                await self.warn(
                    f"Received channelSend for unknown channel, channelId = {msg.get('channelId')}",
                    "channelUnknown",
                )
            else:
                channel.inbox.put_nowait(msg.get("message"))
        elif kind in ("signalSubscribe", "writableSignalSubscribe"):
            await self.warn(
                f"Received {kind} for unknown endpoint, endpoint = {msg.get('endpoint')}",
                "signalEndpointUnknown"
                if kind == "signalSubscribe"
                else "writableSignalEndpointUnknown",
            )
        # channelAck, signal unsubscribes and anything else: nothing to answer

    # -------------------------------------------------------------- RPC

    async def _rpc(self, endpoint: str, call_id: int, parameter: Any) -> None:
        try:
            result = await self._call(endpoint, parameter)
        except _UnroutableError as exc:
            await self.warn(exc.warning, exc.kind)
            return
        except SdkError as exc:
            await self.send({"type": "rpcError", "callId": call_id, "error": exc.serialized()})
            return
        except SimError as exc:
            error = SdkError.of(exc).serialized()
            await self.send({"type": "rpcError", "callId": call_id, "error": error})
            return
        except Exception as exc:  # a handler bug: ServerPort answers any throw with rpcError
            error = SdkError(f"{type(exc).__name__}: {exc}").serialized()
            await self.send({"type": "rpcError", "callId": call_id, "error": error})
            return
        answer: dict[str, Any] = {"type": "rpcResult", "callId": call_id}
        if result is not _NO_RESULT:
            answer["result"] = result
        await self.send(answer)

    async def _call(self, endpoint: str, parameter: Any) -> Any:
        rpcs, _ = NAMESPACES[self.namespace]
        if endpoint not in rpcs:
            raise _UnroutableError(
                f"Received rpcCall for unknown endpoint, endpoint = {endpoint}",
                "rpcEndpointUnknown",
            )
        handler = self.api.rpc_handler(self.namespace, endpoint)
        if handler is None:
            raise SdkError(
                f'The endpoint "{self.namespace}.{endpoint}" is not implemented by the LM Studio '
                "simulator (lmgui-sim)."
            )
        return await handler(self, parameter)

    # -------------------------------------------------------------- channels

    async def _open_channel(self, endpoint: str, channel_id: int, parameter: Any) -> None:
        _, channels = NAMESPACES[self.namespace]
        if endpoint not in channels:
            await self.warn(
                f"Received channelCreate for unknown endpoint, endpoint = {endpoint}",
                "channelEndpointUnknown",
            )
            return
        if channel_id in self._channels:
            await self.warn(
                f"Received channelCreate for already open channel, channelId = {channel_id}",
                "channelAlreadyOpen",
            )
            return
        channel = _Channel(self, channel_id)
        self._channels[channel_id] = channel
        self._spawn(self._run_channel(endpoint, channel, parameter))

    async def _run_channel(self, endpoint: str, channel: _Channel, parameter: Any) -> None:
        try:
            handler = self.api.channel_handler(self.namespace, endpoint)
            if handler is None:
                raise SdkError(
                    f'The channel "{self.namespace}.{endpoint}" is not implemented by the LM '
                    "Studio simulator (lmgui-sim)."
                )
            await handler(self, channel, parameter)
        except _UnroutableError as exc:
            await self.warn(exc.warning, exc.kind)
        except Exception as exc:  # ServerPort answers any throw with channelError
            if isinstance(exc, SdkError):
                err = exc
            elif isinstance(exc, SimError):
                err = SdkError.of(exc)
            else:
                err = SdkError(f"{type(exc).__name__}: {exc}")
            await self.send(
                {"type": "channelError", "channelId": channel.id, "error": err.serialized()}
            )
        else:
            await self.send({"type": "channelClose", "channelId": channel.id})
        finally:
            self._channels.pop(channel.id, None)


def _is_auth_packet(packet: Any) -> bool:
    """lms-communication ``authPacketSchema``: authVersion 1 and two strings of <= 256 chars."""
    if not isinstance(packet, dict) or packet.get("authVersion") != 1:
        return False
    if isinstance(packet.get("authVersion"), bool):
        return False
    return all(
        isinstance(packet.get(k), str) and len(packet[k]) <= 256
        for k in ("clientIdentifier", "clientPasskey")
    )


# ----------------------------------------------------------------------------- endpoints

RpcHandler = Callable[[_Connection, Any], Awaitable[Any]]
ChannelHandler = Callable[[_Connection, _Channel, Any], Awaitable[None]]


def _obj(parameter: Any, endpoint: str, what: str = "rpc") -> dict[str, Any]:
    if not isinstance(parameter, dict):
        raise _bad_parameter(what, endpoint, "expected an object")
    return parameter


def _domain(conn: _Connection) -> str:
    assert conn.domain is not None  # model handlers are only registered on llm and embedding
    return conn.domain


def _loaded_in(conn: _Connection) -> list[SimInstance]:
    domain = _domain(conn)
    return [
        i
        for i in conn.state.loaded()
        if (conn.state.entry(i.model_key) or {}).get("type") == domain
    ]


def _find(conn: _Connection, specifier: Any, endpoint: str) -> SimInstance | None:
    """The loaded instance a ModelSpecifier names, in this namespace's domain."""
    if not isinstance(specifier, dict):
        raise _bad_parameter("rpc", endpoint, "specifier must be an object")
    loaded = _loaded_in(conn)
    if specifier.get("type") == "instanceReference":
        ref = specifier.get("instanceReference")
        if not isinstance(ref, str):
            raise _bad_parameter("rpc", endpoint, "instanceReference must be a string")
        return next((i for i in loaded if i.reference == ref), None)
    if specifier.get("type") != "query" or not isinstance(specifier.get("query"), dict):
        raise _bad_parameter(
            "rpc", endpoint, 'specifier.type must be "query" or "instanceReference"'
        )
    query = specifier["query"]
    for inst in loaded:
        entry = conn.state.entry(inst.model_key) or {}
        if query.get("identifier") not in (None, inst.id):
            continue
        path = query.get("path")
        if path is not None and path not in (
            inst.model_key,
            _model_path(entry),
            *entry.get("variants", ()),
        ):
            continue
        vision = query.get("vision")
        if vision is not None and bool((entry.get("capabilities") or {}).get("vision")) != vision:
            continue
        if query.get("domain") not in (None, entry.get("type")):
            continue
        return inst
    return None


def _not_found(conn: _Connection, specifier: dict[str, Any]) -> SdkError:
    loaded = [i.id for i in _loaded_in(conn)]
    if specifier.get("type") == "instanceReference":
        return SdkError(
            "The model instance this handle refers to has been unloaded.",
            display_data={"code": "generic.specificModelUnloaded"},
        )
    query = {k: v for k, v in specifier.get("query", {}).items() if v is not None}
    return SdkError(
        "No loaded model satisfies all requirements specified in the query.",
        display_data={
            "code": "generic.noModelMatchingQuery",
            "query": query,
            "loadedModelsSample": loaded[:10],
            "totalLoadedModels": len(loaded),
        },
    )


def _require(conn: _Connection, parameter: Any, endpoint: str) -> SimInstance:
    param = _obj(parameter, endpoint)
    inst = _find(conn, param.get("specifier"), endpoint)
    if inst is None:
        raise _not_found(conn, param["specifier"])
    return inst


def _resolve_entry(conn: _Connection, key: str) -> dict[str, Any]:
    """The catalog entry to load for a model key (a variant key or a model path works too)."""
    state = conn.state
    entry = state.entry(key)
    if entry is None:
        entry = next((e for e in state.list_models() if _model_path(e) == key), None)
    if entry is None:
        keys = [m["key"] for m in state.list_models()]
        raise SdkError(
            f'Cannot find a model with path "{key}".',
            display_data={
                "code": "generic.pathNotFound",
                "path": key,
                "availablePathsSample": keys[:10],
                "totalModels": len(keys),
            },
        )
    if entry["type"] != _domain(conn):
        raise SdkError(
            f'The model "{key}" is of type "{entry["type"]}", not "{_domain(conn)}".',
            display_data={
                "code": "generic.domainMismatch",
                "path": key,
                "actualDomain": entry["type"],
                "expectedDomain": _domain(conn),
            },
        )
    return entry


async def _list_loaded(conn: _Connection, parameter: Any) -> Any:
    return [instance_info(conn.state, i) for i in _loaded_in(conn)]


async def _get_model_info(conn: _Connection, parameter: Any) -> Any:
    param = _obj(parameter, "getModelInfo")
    inst = _find(conn, param.get("specifier"), "getModelInfo")
    if inst is None:
        if param.get("throwIfNotFound"):
            raise _not_found(conn, param["specifier"])
        return _NO_RESULT  # undefined: no "result" key at all
    return instance_info(conn.state, inst)


async def _get_load_config(conn: _Connection, parameter: Any) -> Any:
    return load_kv_config(_require(conn, parameter, "getLoadConfig"), _domain(conn))


async def _processing_state(conn: _Connection, parameter: Any) -> Any:
    inst = _require(conn, parameter, "getInstanceProcessingState")
    if inst.generating:
        status = "generating"
    elif inst.embedding:
        status = "computingEmbedding"
    elif inst.prompting:
        status = "processingPrompt"
    else:
        status = "idle"
    return {"status": status, "queued": inst.prompting + inst.generating + inst.embedding}


async def _unload(conn: _Connection, parameter: Any) -> Any:
    param = _obj(parameter, "unloadModel")
    ident = param.get("identifier")
    if not isinstance(ident, str):
        raise _bad_parameter("rpc", "unloadModel", "identifier must be a string")
    if ident not in {i.id for i in _loaded_in(conn)} and not _loading_in(conn, ident):
        loaded = [i.id for i in _loaded_in(conn)]
        raise SdkError(
            f'No model found with identifier "{ident}".',
            display_data={
                "code": "generic.identifierNotFound",
                "identifier": ident,
                "loadedModelsSample": loaded[:10],
                "totalLoadedModels": len(loaded),
            },
        )
    conn.state.unload(ident)
    return _NO_RESULT


def _loading_in(conn: _Connection, ident: str) -> bool:
    inst = conn.state.instance(ident)
    return (
        inst is not None
        and inst.loading
        and (conn.state.entry(inst.model_key) or {}).get("type") == _domain(conn)
    )


async def _estimate(conn: _Connection, parameter: Any) -> Any:
    param = _obj(parameter, "estimateModelUsage")
    key = param.get("modelKey")
    if not isinstance(key, str):
        raise _bad_parameter("rpc", "estimateModelUsage", "modelKey must be a string")
    entry = _resolve_entry(conn, key)
    fields = _collapse(param.get("loadConfigStack"), "estimateModelUsage")
    options = _load_options(fields, _domain(conn))
    state = conn.state
    size = int(entry.get("size_bytes") or 0)
    max_ctx = int(entry.get("max_context_length") or 4096)
    config = {
        "context_length": options.get("context_length") or min(4096, max_ctx),
        "offload_kv_cache_to_gpu": options.get("offload_kv_cache_to_gpu", True),
    }
    gpu_opt = options.get("gpu", "max")
    gpu = {"max": 1.0, "off": 0.0}[gpu_opt] if isinstance(gpu_opt, str) else float(gpu_opt)
    with state.lock:
        total_vram = state.estimate(entry, config, gpu)
        free = int(state.config.vram_gb * GB) - state.vram_used()
    model_vram = int(size * gpu)
    context_bytes = state.estimate(entry, config, 1.0) - size
    return {
        "memory": {
            "confidence": "high",
            "modelVramBytes": model_vram,
            "contextVramBytes": total_vram - model_vram,
            "totalVramBytes": total_vram,
            "modelBytes": size,
            "contextBytes": context_bytes,
            "totalBytes": size + context_bytes,
        },
        "passesGuardrails": total_vram <= free,
    }


async def _progress(
    conn: _Connection, channel: _Channel, inst: SimInstance, kind: str
) -> SimInstance:
    """Send load progress over the load's time; unload and fail on the client's cancel."""
    step = inst.load_seconds / (len(_LOAD_STEPS) - 1)
    for i, p in enumerate(_LOAD_STEPS):
        if i:
            with contextlib.suppress(TimeoutError):
                msg = await asyncio.wait_for(channel.inbox.get(), step)
                if isinstance(msg, dict) and msg.get("type") == "cancel":
                    with contextlib.suppress(SimError):
                        conn.state.unload(inst.id)
                    raise SdkError(f'Loading of "{inst.id}" was cancelled.')
        await channel.send({"type": kind, "progress": p})
    done = conn.state.finish_load(inst.id)
    if done is None:
        raise SdkError(f'Loading of "{inst.id}" was cancelled: the instance was unloaded.')
    return done


@contextlib.asynccontextmanager
async def _abort_unless_finished(conn: _Connection, iid: str) -> Any:
    """A load whose channel dies (the client went away, the server stops) is abandoned."""
    try:
        yield
    finally:
        inst = conn.state.instance(iid)
        if inst is not None and inst.loading:
            with contextlib.suppress(SimError):
                conn.state.unload(iid)


def _load_request(
    conn: _Connection, parameter: Any, endpoint: str, key_field: str, ttl_field: str
) -> tuple[str, dict[str, Any]]:
    param = _obj(parameter, endpoint, "channel")
    key = param.get(key_field)
    if not isinstance(key, str):
        raise _bad_parameter("channel", endpoint, f"{key_field} must be a string")
    ttl_ms = param.get(ttl_field)
    if ttl_ms is not None and not (_is_int(ttl_ms) and ttl_ms >= 1):
        raise _bad_parameter("channel", endpoint, f"{ttl_field} must be an int >= 1")
    ident = param.get("identifier") if endpoint == "loadModel" else None
    if ident is not None and not isinstance(ident, str):
        raise _bad_parameter("channel", endpoint, "identifier must be a string")
    options = _load_options(_collapse(param.get("loadConfigStack"), endpoint), _domain(conn))
    if ttl_ms is not None:
        options["ttl"] = ttl_ms / 1000
    if ident is not None:
        options["identifier"] = ident
    return key, options


async def _load_model(conn: _Connection, channel: _Channel, parameter: Any) -> None:
    """``loadModel``: ``resolved``, ``progress`` (0..1) repeatedly, ``success``, then close."""
    key, options = _load_request(conn, parameter, "loadModel", "modelKey", "ttlMs")
    entry = _resolve_entry(conn, key)
    inst = conn.state.begin_load(entry["key"], options)
    async with _abort_unless_finished(conn, inst.id):
        await channel.send({"type": "resolved", "info": model_info(entry)})
        done = await _progress(conn, channel, inst, "progress")
    await channel.send({"type": "success", "info": instance_info(conn.state, done)})


async def _get_or_load(conn: _Connection, channel: _Channel, parameter: Any) -> None:
    """``getOrLoad``: ``alreadyLoaded``, or a JIT load: ``unloadingOtherJITModel`` for each
    instance auto-evict removes, ``startLoading``, ``loadProgress``..., ``loadSuccess``."""
    key, options = _load_request(conn, parameter, "getOrLoad", "identifier", "loadTtlMs")
    state = conn.state
    existing = await _existing(conn, key)
    if existing is not None:
        await channel.send({"type": "alreadyLoaded", "info": instance_info(state, existing)})
        return
    entry = _resolve_entry(conn, key)
    with state.lock:
        jit_before = [i for i in state.loaded() if i.jit]
        inst = state.begin_load(entry["key"], options, jit=True)
        evicted = [i for i in jit_before if i.id not in state.instances]
    async with _abort_unless_finished(conn, inst.id):
        for other in evicted:
            await channel.send(
                {"type": "unloadingOtherJITModel", "info": instance_info(state, other)}
            )
        await channel.send(
            {"type": "startLoading", "identifier": inst.id, "info": model_info(entry)}
        )
        done = await _progress(conn, channel, inst, "loadProgress")
    await channel.send({"type": "loadSuccess", "info": instance_info(state, done)})


async def _existing(conn: _Connection, key: str) -> SimInstance | None:
    """An instance ``getOrLoad`` can answer with: by identifier, else any of the model's.

    An instance still loading (for another request) is waited for rather than loaded a second
    time: what "get or load" promises; whether LM Studio waits the same way is not public.
    """
    state = conn.state
    while True:
        entry = state.entry(key)
        with state.lock:
            ids = list(state.instances)
        candidates = [
            i
            for i in (state.instance(iid) for iid in ids)
            if i is not None
            and (i.id == key or (entry is not None and i.model_key == entry["key"]))
        ]
        if not candidates:
            return None
        ready = [i for i in candidates if not i.loading]
        by_id = [i for i in ready if i.id == key]
        if by_id or ready:
            found = (by_id or ready)[0]
            if (state.entry(found.model_key) or {}).get("type") != _domain(conn):
                return None  # a model of the other domain: _resolve_entry explains
            return found
        await asyncio.sleep(_POLL)  # the state is shared with other threads: no asyncio.Event


def _message_text(message: Any) -> str:
    parts = message.get("content") if isinstance(message, dict) else None
    if not isinstance(parts, list):
        return ""
    return " ".join(
        p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


def _history(messages: list[Any]) -> tuple[tuple[Turn, ...], str, str | None]:
    """(earlier turns, the last user text, the system prompt) of a chat history."""
    system = [
        _message_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "system"
    ]
    turns: list[Turn] = []
    pending: str | None = None
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role == "user":
            pending = _message_text(m) if pending is None else f"{pending} {_message_text(m)}"
        elif role == "assistant" and pending is not None:
            turns.append(Turn(pending, _message_text(m)))
            pending = None
    return tuple(turns), pending or "", "\n".join(system) or None


async def _predict(conn: _Connection, channel: _Channel, parameter: Any) -> None:
    """``predict``: ``promptProcessingProgress``, ``fragment``s, then ``success`` with stats.

    A use of the instance like a REST chat: busy while it runs, its idle timer reset. The
    answer is the simulator's deterministic text (no reasoning, no tool calls); a ``cancel``
    ends it early with ``stopReason: "userStopped"``.
    """
    param = _obj(parameter, "predict", "channel")
    history = param.get("history")
    messages = history.get("messages") if isinstance(history, dict) else None
    if not isinstance(messages, list):
        raise _bad_parameter("channel", "predict", "history.messages must be an array")
    spec = param.get("modelSpecifier")
    inst = _find(conn, spec, "predict")
    if inst is None:
        raise _not_found(conn, spec if isinstance(spec, dict) else {})
    prediction = _collapse(param.get("predictionConfigStack"), "predict")
    state = conn.state
    cfg = state.config
    entry = state.entry(inst.model_key) or {"key": inst.model_key}
    turns, user_text, system = _history(messages)
    _, text = generate(
        seed=cfg.seed,
        model_name=entry.get("display_name") or entry["key"],
        history=turns,
        user_text=user_text,
        system_prompt=system,
        length=cfg.answer_tokens,
    )
    tokens = tokens_of(text)
    limit = prediction.get("llm.prediction.maxPredictedTokens")
    stop = "eosFound"
    cap = limit.get("value") if isinstance(limit, dict) and limit.get("checked") else None
    if _is_int(cap) and len(tokens) > cap:
        tokens, stop = tokens[:cap], "maxPredictedTokensReached"
    words = sum(len(t.user.split()) + len(t.assistant.split()) for t in turns)
    prompt_tokens = int((words + len(user_text.split())) * 1.3) + 4
    started = asyncio.get_running_loop().time()
    sent = 0
    with state.work(inst.id) as work:
        if work is None:
            raise SdkError(f'The model "{inst.id}" was unloaded.')
        for p in (0.0, 1.0):
            done = int(prompt_tokens * p)
            details = {
                "cachedTokenCount": 0,
                "totalPromptTokenCount": prompt_tokens,
                "processedPromptTokenCount": done,
                "unprocessedPromptTokenCount": prompt_tokens - done,
            }
            await channel.send(
                {"type": "promptProcessingProgress", "progress": p, "details": details}
            )
        work.generating()
        first_token_at = asyncio.get_running_loop().time()
        for tok in tokens:
            if _cancel_requested(channel):
                stop = "userStopped"
                break
            if cfg.tokens_per_second > 0:
                await asyncio.sleep(1 / cfg.tokens_per_second)
            elif sent % 64 == 0:
                await asyncio.sleep(0)
            fragment = {
                "content": tok,
                "tokensCount": 1,
                "containsDrafted": False,
                "reasoningType": "none",
                "isStructural": False,
            }
            await channel.send({"type": "fragment", "fragment": fragment})
            sent += 1
    elapsed = max(asyncio.get_running_loop().time() - first_token_at, 1e-6)
    stats: dict[str, Any] = {
        "stopReason": stop,
        "timeToFirstTokenSec": round(first_token_at - started, 4),
        "totalTimeSec": round(asyncio.get_running_loop().time() - started, 4),
        "promptTokensCount": prompt_tokens,
        "predictedTokensCount": sent,
        "totalTokensCount": prompt_tokens + sent,
    }
    if sent:
        stats["tokensPerSecond"] = round(sent / elapsed, 2)
    after = state.instance(inst.id) or inst
    await channel.send(
        {
            "type": "success",
            "stats": stats,
            "modelInfo": instance_info(state, after),
            "loadModelConfig": load_kv_config(after, "llm"),
            "predictionConfig": {"fields": [{"key": k, "value": v} for k, v in prediction.items()]},
        }
    )


def _cancel_requested(channel: _Channel) -> bool:
    while not channel.inbox.empty():
        msg = channel.inbox.get_nowait()
        if isinstance(msg, dict) and msg.get("type") == "cancel":
            return True
    return False


async def _list_downloaded(conn: _Connection, parameter: Any) -> Any:
    return [model_info(m) for m in conn.state.list_models()]


async def _list_variants(conn: _Connection, parameter: Any) -> Any:
    param = _obj(parameter, "listDownloadedModelVariants")
    key = param.get("modelKey")
    if not isinstance(key, str):
        raise _bad_parameter("rpc", "listDownloadedModelVariants", "modelKey must be a string")
    entry = conn.state.entry(key)
    if entry is None:
        raise SdkError(
            f'Cannot find a model with key "{key}".',
            display_data={
                "code": "generic.pathNotFound",
                "path": key,
                "availablePathsSample": [m["key"] for m in conn.state.list_models()][:10],
                "totalModels": len(conn.state.list_models()),
            },
        )
    variants = entry.get("variants") or []
    if not variants:
        return [model_info(entry)]
    out = []
    for v in variants:
        quant_name = v.rsplit("@", 1)[-1].upper()
        variant = {**entry, "quantization": {"name": quant_name, "bits_per_weight": None}}
        info = model_info(variant, key=v)
        info.pop("variants", None)
        info.pop("selectedVariant", None)
        out.append(info)
    return out


async def _version(conn: _Connection, parameter: Any) -> Any:
    return dict(SIM_VERSION)


async def _alive(conn: _Connection, channel: _Channel, parameter: Any) -> None:
    """``system.alive``: stays open, silent, until the client cancels or goes away."""
    while True:
        msg = await channel.inbox.get()
        if isinstance(msg, dict) and msg.get("type") == "cancel":
            return


async def _survey(conn: _Connection, parameter: Any) -> Any:
    return _hardware_survey(conn.state)


_RPC: dict[tuple[str, str], RpcHandler] = {
    ("system", "listDownloadedModels"): _list_downloaded,
    ("system", "listDownloadedModelVariants"): _list_variants,
    ("system", "version"): _version,
    ("runtime", "surveyHardware"): _survey,
}
_CHANNELS: dict[tuple[str, str], ChannelHandler] = {("system", "alive"): _alive}
for _ns in ("llm", "embedding"):
    _RPC.update(
        {
            (_ns, "listLoaded"): _list_loaded,
            (_ns, "getModelInfo"): _get_model_info,
            (_ns, "getLoadConfig"): _get_load_config,
            (_ns, "getInstanceProcessingState"): _processing_state,
            (_ns, "unloadModel"): _unload,
            (_ns, "estimateModelUsage"): _estimate,
        }
    )
    _CHANNELS.update({(_ns, "loadModel"): _load_model, (_ns, "getOrLoad"): _get_or_load})
_CHANNELS[("llm", "predict")] = _predict


class SdkApi:
    """The websocket half of the simulator: an ASGI app for ``websocket`` scopes."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.identities = _Identities(state.config.token)

    def rpc_handler(self, namespace: str, endpoint: str) -> RpcHandler | None:
        return _RPC.get((namespace, endpoint))

    def channel_handler(self, namespace: str, endpoint: str) -> ChannelHandler | None:
        return _CHANNELS.get((namespace, endpoint))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        namespace = str(scope["path"]).strip("/")
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if namespace not in NAMESPACES:
            await refuse(send)
            return
        await send({"type": "websocket.accept"})
        await _Connection(self, namespace, receive, send).run()


async def refuse(send: Send) -> None:
    """Refuse a websocket upgrade: closing before accepting makes the server answer 403.

    A 403 without a body is what lmstudio-js's ``WsServer`` writes when it rejects an upgrade.
    (uvicorn's ``websocket.http.response`` extension could send another status, but its
    websockets protocol then logs a spurious "returned without completing handshake" error.)
    """
    await send({"type": "websocket.close", "code": 1008})
