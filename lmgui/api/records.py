"""Typed records of what LM Studio says, and the parsers of its small answers (a chat result, a
load, a download).

The public records (``Model``, ``Instance``, ``ChatResult``...) are frozen msgspec Structs: cheap
to build, compared by value (the poller's snapshot diff relies on that) and encodable as JSON. The
model list, the big and hostile-prone answer, is read leniently by ``model_list.py``. Only the
client's own ``ProtocolError`` ever leaves a parser.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import msgspec

from lmgui.api.errors import ProtocolError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BITS_PER_WEIGHT",
    "MAX_BYTES",
    "MAX_COUNT",
    "MAX_TOKENS",
    "Capabilities",
    "ChatResult",
    "ChatStats",
    "DownloadJob",
    "Instance",
    "InvalidToolCallItem",
    "LoadResult",
    "MessageItem",
    "Model",
    "OutputItem",
    "Quantization",
    "ReasoningCapability",
    "ReasoningItem",
    "ServerEstimate",
    "ServerGpu",
    "ServerHardware",
    "ToolCallItem",
    "UnknownItem",
    "parse_chat_result",
    "parse_download",
    "parse_estimate",
    "parse_hardware",
    "parse_load_result",
]


# ----------------------------------------------------------------------------- bounds

# Upper bounds of what is believable. Each is orders of magnitude above anything real and below
# 2**53, so arithmetic on an accepted value (VRAM estimates, sums) stays exact in a float. A value
# past one comes from a broken or hostile server and is shown as "?", not as a silly number.
MAX_BYTES = 10**15
"""File sizes: 1 PB (the largest model files today are ~1-2 TB)."""
MAX_TOKENS = 10**9
"""Context lengths and batch sizes in tokens (the longest real contexts are ~10M)."""
MAX_COUNT = 10**6
"""Small counts: parallel slots, experts (real ones are at most in the hundreds)."""
MAX_BITS_PER_WEIGHT = 64.0
"""No weight format is wider than 64 bits; 0 or less is nonsense (and would divide by zero)."""


def _whole(value: Any, limit: int, *, fraction_ok: bool = False) -> int | None:
    """``value`` as a whole number in ``[0, limit]``, or None for anything else: a bool (an int
    subclass, but never meant as a count), a string, a negative, NaN or infinite float, a float
    with a fraction (unless ``fraction_ok``: a byte count sent as 4.5e9 is still a size)."""
    if type(value) is int:
        return value if 0 <= value <= limit else None
    if type(value) is float and 0 <= value <= limit:  # NaN fails every comparison
        return int(value) if fraction_ok or value.is_integer() else None
    return None


# ----------------------------------------------------------------------------- public records


class Quantization(msgspec.Struct, frozen=True, gc=False):
    name: str | None = None
    bits_per_weight: float | None = None


class ReasoningCapability(msgspec.Struct, frozen=True, gc=False):
    allowed_options: tuple[str, ...] = ()
    default: str | None = None


class Capabilities(msgspec.Struct, frozen=True, gc=False):
    vision: bool = False
    trained_for_tool_use: bool = False
    reasoning: ReasoningCapability | None = None

    @property
    def tool_use(self) -> bool:
        return self.trained_for_tool_use

    @property
    def reasoning_options(self) -> tuple[str, ...]:
        return self.reasoning.allowed_options if self.reasoning else ()


class Instance(msgspec.Struct, frozen=True, gc=False):
    """A loaded copy of a model. ``id`` is always the server's, never derived from the key.

    ``config`` is the server's mapping as sent (new keys kept); the typed properties read it and
    give None for a value they cannot use. ``malformed`` names the config keys the server sent a
    value for that lmgui could not read, so a view can show "?" rather than "-" (not said).
    """

    id: str
    model_key: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    malformed: tuple[str, ...] = ()
    # What only LM Studio's SDK channel reports (None where the server has no such channel, or
    # did not say): merged into the listed instance by the client, see api/sdk.py.
    gpu_offload: float | None = None
    """GPU offload ratio the instance was loaded with: 0 (off) to 1 (max)."""
    ttl_seconds: float | None = None
    """The idle TTL the server keeps for it (None: the server unloads it only when asked)."""
    last_used: float | None = None
    """Wall-clock time (time.time()) of its last use by any client, as the server saw it."""
    status: str | None = None
    """idle, processingPrompt, generating or computingEmbedding, as the server says."""
    queued: int | None = None
    """Requests in its queue, the one in progress included (as LM Studio counts them)."""

    def ttl_left(self, now: float) -> float | None:
        """Seconds until the server unloads it if nobody uses it (as ``lms ps`` computes it);
        the whole TTL while it is busy: its idle time starts when the work ends."""
        if self.ttl_seconds is None:
            return None
        if self.last_used is None or self.busy:
            return self.ttl_seconds
        return max(0.0, self.ttl_seconds - (now - self.last_used))

    @property
    def busy(self) -> bool:
        return self.status in ("processingPrompt", "generating", "computingEmbedding") or bool(
            self.queued
        )

    def _get(self, name: str) -> Any:
        return self.config.get(name)

    @property
    def context_length(self) -> int | None:
        return _whole(self._get("context_length"), MAX_TOKENS)

    @property
    def parallel(self) -> int | None:
        return _whole(self._get("parallel"), MAX_COUNT)

    @property
    def eval_batch_size(self) -> int | None:
        return _whole(self._get("eval_batch_size"), MAX_TOKENS)

    @property
    def num_experts(self) -> int | None:
        return _whole(self._get("num_experts"), MAX_COUNT)

    @property
    def flash_attention(self) -> bool | None:
        value = self._get("flash_attention")
        return value if isinstance(value, bool) else None

    @property
    def offload_kv_cache_to_gpu(self) -> bool | None:
        value = self._get("offload_kv_cache_to_gpu")
        return value if isinstance(value, bool) else None


class Model(msgspec.Struct, frozen=True, gc=False):
    """A model in the server's catalog (an LLM or an embedding model), loaded or not."""

    key: str
    type: str
    display_name: str
    publisher: str | None = None
    architecture: str | None = None
    quantization: Quantization | None = None
    size_bytes: int | None = None
    params_string: str | None = None
    max_context_length: int | None = None
    format: str | None = None
    capabilities: Capabilities | None = None
    description: str | None = None
    variants: tuple[str, ...] = ()
    selected_variant: str | None = None
    instances: tuple[Instance, ...] = ()
    malformed: tuple[str, ...] = ()
    """Fields the server sent a value for that lmgui could not read (now None or a default):
    Model field names, dotted for nested ones ("quantization.bits_per_weight")."""

    @property
    def is_llm(self) -> bool:
        return self.type == "llm"

    @property
    def vision(self) -> bool:
        return bool(self.capabilities and self.capabilities.vision)

    @property
    def tool_use(self) -> bool:
        return bool(self.capabilities and self.capabilities.trained_for_tool_use)

    @property
    def reasoning_options(self) -> tuple[str, ...]:
        return self.capabilities.reasoning_options if self.capabilities else ()


class MessageItem(msgspec.Struct, frozen=True, tag_field="type", tag="message", gc=False):
    content: str = ""


class ReasoningItem(msgspec.Struct, frozen=True, tag_field="type", tag="reasoning", gc=False):
    content: str = ""


class ToolCallItem(msgspec.Struct, frozen=True, tag_field="type", tag="tool_call", gc=False):
    tool: str = ""
    arguments: Any = None
    output: Any = None
    provider_info: dict[str, Any] | None = None


class InvalidToolCallItem(
    msgspec.Struct, frozen=True, tag_field="type", tag="invalid_tool_call", gc=False
):
    reason: str = ""
    metadata: dict[str, Any] | None = None


class UnknownItem(msgspec.Struct, frozen=True, tag_field="type", tag="unknown", gc=False):
    """An output item of a type this client does not know (newer servers); kept, not dropped."""

    item_type: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)


OutputItem = MessageItem | ReasoningItem | ToolCallItem | InvalidToolCallItem | UnknownItem

_ITEM_TYPES: dict[str, type[MessageItem | ReasoningItem | ToolCallItem | InvalidToolCallItem]] = {
    "message": MessageItem,
    "reasoning": ReasoningItem,
    "tool_call": ToolCallItem,
    "invalid_tool_call": InvalidToolCallItem,
}


class ChatStats(msgspec.Struct, frozen=True, gc=False):
    input_tokens: int | None = None
    total_output_tokens: int | None = None
    reasoning_output_tokens: int | None = None
    tokens_per_second: float | None = None
    time_to_first_token_seconds: float | None = None
    model_load_time_seconds: float | None = None


class ChatResult(msgspec.Struct, frozen=True, gc=False):
    model_instance_id: str | None = None
    output: tuple[OutputItem, ...] = ()
    stats: ChatStats = ChatStats()
    response_id: str | None = None

    @property
    def text(self) -> str:
        """The message content, joined."""
        return "".join(i.content for i in self.output if isinstance(i, MessageItem))

    @property
    def reasoning(self) -> str:
        return "".join(i.content for i in self.output if isinstance(i, ReasoningItem))


class LoadResult(msgspec.Struct, frozen=True, gc=False):
    instance_id: str
    load_time_seconds: float | None = None
    load_config: dict[str, Any] = msgspec.field(default_factory=dict)
    type: str | None = None
    status: str | None = None
    not_applied: tuple[str, ...] = ()
    """Requested options the server did not apply (the caller tells the user)."""
    not_applied_reason: str | None = None
    """Why they were not applied, as a phrase ("LM Studio's REST API does not take them, and
    lms only reaches an LM Studio on this machine")."""
    via: Literal["rest", "lms", "sdk"] = "rest"


class DownloadJob(msgspec.Struct, frozen=True, gc=False):
    status: str
    job_id: str | None = None
    total_size_bytes: int | None = None
    downloaded_bytes: int | None = None
    bytes_per_second: float | None = None
    estimated_completion: str | None = None
    started_at: str | None = None
    completed_at: str | None = None

    DONE: ClassVar[frozenset[str]] = frozenset({"completed", "failed", "already_downloaded"})

    @property
    def finished(self) -> bool:
        return self.status in self.DONE


# ----------------------------------------------------------------------------- chat results


class ServerGpu(msgspec.Struct, frozen=True, gc=False):
    """One GPU as LM Studio's runtime surveyed it (``lms runtime survey``)."""

    name: str
    vram_bytes: int


class ServerHardware(msgspec.Struct, frozen=True, gc=False):
    """The server's GPUs and the VRAM LM Studio counts for loads (its own ``vramCapacity``)."""

    gpus: tuple[ServerGpu, ...]
    vram_bytes: int


class ServerEstimate(msgspec.Struct, frozen=True, gc=False):
    """LM Studio's own estimate of a load config's memory, and its guardrail verdict."""

    vram_bytes: int
    total_bytes: int | None
    passes_guardrails: bool | None
    confidence: str | None


def _int_field(obj: Any, name: str) -> int | None:
    return _whole(obj.get(name), MAX_BYTES) if isinstance(obj, dict) else None


def parse_hardware(result: Any) -> ServerHardware | None:
    """The GPUs and VRAM of a ``runtime.surveyHardware`` result; None when it reports none.

    The first engine that reports VRAM counts (LM Studio's own ``lms runtime survey`` reads the
    first); a GPU's dedicated memory, else its total (unified memory on Apple silicon)."""
    engines = result.get("engines") if isinstance(result, dict) else None
    for engine in engines if isinstance(engines, list) else ():
        if not isinstance(engine, dict):
            continue
        survey = engine.get("hardwareSurvey")
        gpu_result = survey.get("gpuSurveyResult") if isinstance(survey, dict) else None
        infos = gpu_result.get("gpuInfo") if isinstance(gpu_result, dict) else None
        gpus = []
        for info in infos if isinstance(infos, list) else ():
            size = _int_field(info, "dedicatedMemoryCapacityBytes") or _int_field(
                info, "totalMemoryCapacityBytes"
            )
            if size:
                name = info.get("name")
                gpus.append(ServerGpu(name if isinstance(name, str) else "GPU", size))
        vram = _int_field(engine.get("memoryInfo"), "vramCapacity") or sum(
            g.vram_bytes for g in gpus
        )
        if vram:
            return ServerHardware(tuple(gpus), min(vram, MAX_BYTES))
    return None


def parse_estimate(result: Any) -> ServerEstimate | None:
    """An ``estimateModelUsage`` result; None when it carries no VRAM figure."""
    memory = result.get("memory") if isinstance(result, dict) else None
    vram = _int_field(memory, "totalVramBytes")
    if vram is None:
        return None
    assert isinstance(memory, dict) and isinstance(result, dict)
    passes = result.get("passesGuardrails")
    confidence = memory.get("confidence")
    return ServerEstimate(
        vram_bytes=vram,
        total_bytes=_int_field(memory, "totalBytes"),
        passes_guardrails=passes if isinstance(passes, bool) else None,
        confidence=confidence if isinstance(confidence, str) else None,
    )


class _StatsWire(msgspec.Struct):
    input_tokens: int | None = None
    total_output_tokens: int | None = None
    reasoning_output_tokens: int | None = None
    tokens_per_second: float | None = None
    time_to_first_token_seconds: float | None = None
    model_load_time_seconds: float | None = None


class _ChatWire(msgspec.Struct):
    model_instance_id: str | None = None
    output: list[Any] | None = None
    stats: Any = None
    response_id: str | None = None


def parse_output_item(item: Any) -> OutputItem:
    """One output item; an unknown or malformed one becomes an ``UnknownItem``."""
    if not isinstance(item, dict):
        return UnknownItem(item_type=type(item).__name__, data={"value": item})
    kind = item.get("type")
    cls = _ITEM_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is not None:
        try:
            return msgspec.convert(item, type=cls)
        except msgspec.ValidationError as exc:
            log.warning("malformed %s output item: %s", kind, exc)
    return UnknownItem(item_type=str(kind), data=item)


def chat_result_from(obj: Any) -> ChatResult:
    """A ChatResult from an already-decoded JSON object (the SSE ``chat.end`` result)."""
    try:
        w = msgspec.convert(obj, type=_ChatWire)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"The server's chat result has an unexpected shape ({exc}).") from None
    stats = ChatStats()
    if isinstance(w.stats, dict):
        try:
            s = msgspec.convert(w.stats, type=_StatsWire)
            stats = ChatStats(
                s.input_tokens,
                s.total_output_tokens,
                s.reasoning_output_tokens,
                s.tokens_per_second,
                s.time_to_first_token_seconds,
                s.model_load_time_seconds,
            )
        except msgspec.ValidationError as exc:
            log.warning("ignored malformed chat stats: %s", exc)
    return ChatResult(
        model_instance_id=w.model_instance_id,
        output=tuple(parse_output_item(i) for i in w.output or ()),
        stats=stats,
        response_id=w.response_id,
    )


def _decode_object(body: bytes, what: str) -> Any:
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise ProtocolError(f"The server's {what} is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"The server's {what} is not a JSON object.")
    return obj


def parse_chat_result(body: bytes) -> ChatResult:
    return chat_result_from(_decode_object(body, "chat response"))


class _LoadWire(msgspec.Struct):
    instance_id: str | None = None
    model_instance_id: str | None = None  # an obsolete pre-0.4.0 draft spelling
    load_time_seconds: float | None = None
    load_config: dict[str, Any] | None = None
    type: str | None = None
    status: str | None = None


def parse_load_result(body: bytes) -> LoadResult:
    obj = _decode_object(body, "load response")
    try:
        w = msgspec.convert(obj, type=_LoadWire)
    except msgspec.ValidationError as exc:
        raise ProtocolError(
            f"The server's load response has an unexpected shape ({exc})."
        ) from None
    iid = w.instance_id or w.model_instance_id
    if not iid:
        raise ProtocolError("The server's load response names no instance id.")
    return LoadResult(
        instance_id=iid,
        load_time_seconds=w.load_time_seconds,
        load_config=w.load_config or {},
        type=w.type,
        status=w.status,
    )


def parse_download(body: bytes) -> DownloadJob:
    obj = _decode_object(body, "download response")
    try:
        job = msgspec.convert(obj, type=DownloadJob)
    except msgspec.ValidationError as exc:
        raise ProtocolError(
            f"The server's download response has an unexpected shape ({exc})."
        ) from None
    return job
