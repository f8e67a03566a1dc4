"""Typed records of what LM Studio says, and the lenient parsers that build them.

Two layers:

* ``_*Wire`` structs mirror the JSON, with every field optional and both the v1 and the older
  (v0, ``{"object": "list", "data": [...]}``) spellings present, so one decoder reads both shapes.
* The public records (``Model``, ``Instance``, ``ChatResult``...) are frozen msgspec Structs: cheap
  to build, compared by value (the poller's snapshot diff relies on that) and encodable as JSON.

Unknown fields are ignored. A malformed model entry is skipped with a logged warning and the rest
of the list is kept. Only the client's own ``ProtocolError`` ever leaves a parser.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import msgspec

from lmgui.api.errors import ProtocolError

log = logging.getLogger(__name__)

__all__ = [
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
    "ToolCallItem",
    "UnknownItem",
    "parse_chat_result",
    "parse_download",
    "parse_load_result",
    "parse_models",
]


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
    """A loaded copy of a model. ``id`` is always the server's, never derived from the key."""

    id: str
    model_key: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)

    def _get(self, name: str) -> Any:
        return self.config.get(name)

    @property
    def context_length(self) -> int | None:
        return _int_or_none(self._get("context_length"))

    @property
    def parallel(self) -> int | None:
        return _int_or_none(self._get("parallel"))

    @property
    def eval_batch_size(self) -> int | None:
        return _int_or_none(self._get("eval_batch_size"))

    @property
    def num_experts(self) -> int | None:
        return _int_or_none(self._get("num_experts"))

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
    via: Literal["rest", "lms"] = "rest"


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


# ----------------------------------------------------------------------------- wire structs


class _QuantWire(msgspec.Struct):
    name: str | None = None
    bits_per_weight: float | None = None


class _ReasoningWire(msgspec.Struct):
    allowed_options: list[str] | None = None
    default: str | None = None


class _CapWire(msgspec.Struct):
    vision: bool | None = None
    trained_for_tool_use: bool | None = None
    reasoning: _ReasoningWire | None = None


class _InstanceWire(msgspec.Struct):
    id: str | None = None
    instance_id: str | None = None
    config: dict[str, Any] | None = None


class _EntryWire(msgspec.Struct):
    # v1 spellings
    type: str | None = None
    key: str | None = None
    display_name: str | None = None
    publisher: str | None = None
    architecture: str | None = None
    quantization: _QuantWire | str | None = None
    size_bytes: int | float | None = None
    params_string: str | None = None
    max_context_length: int | None = None
    format: str | None = None
    capabilities: _CapWire | None = None
    description: str | None = None
    variants: list[str] | None = None
    selected_variant: str | None = None
    loaded_instances: list[_InstanceWire] | None = None
    # v0 spellings
    id: str | None = None
    arch: str | None = None
    compatibility_type: str | None = None
    state: str | None = None
    loaded_context_length: int | None = None


class _Envelope(msgspec.Struct):
    models: list[msgspec.Raw] | None = None
    data: list[msgspec.Raw] | None = None
    object: str | None = None
    error: Any = None


class _FastEnvelope(msgspec.Struct):
    models: list[_EntryWire]


_entry_decoder = msgspec.json.Decoder(_EntryWire)
_fast_decoder = msgspec.json.Decoder(_FastEnvelope)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _to_model(w: _EntryWire) -> Model | None:
    key = w.key or w.id
    if not key:
        return None
    mtype = w.type or "llm"
    caps: Capabilities | None = None
    if w.capabilities is not None:
        r = w.capabilities.reasoning
        caps = Capabilities(
            vision=bool(w.capabilities.vision),
            trained_for_tool_use=bool(w.capabilities.trained_for_tool_use),
            reasoning=ReasoningCapability(tuple(r.allowed_options or ()), r.default) if r else None,
        )
    if mtype == "vlm":  # v0 marks vision models by type
        mtype = "llm"
        caps = Capabilities(vision=True)
    elif mtype == "embeddings":
        mtype = "embedding"
    q = w.quantization
    quant = (
        Quantization(q.name, q.bits_per_weight)
        if isinstance(q, _QuantWire)
        else Quantization(name=q)
        if isinstance(q, str)
        else None
    )
    instances: tuple[Instance, ...] = ()
    if w.loaded_instances is not None:
        instances = tuple(
            Instance(id=iid, model_key=key, config=i.config or {})
            for i in w.loaded_instances
            if (iid := i.id or i.instance_id)
        )
    elif w.state in ("loaded", "loading"):
        config = {"context_length": w.loaded_context_length} if w.loaded_context_length else {}
        instances = (Instance(id=key, model_key=key, config=config),)
    size = w.size_bytes
    return Model(
        key=key,
        type=mtype,
        display_name=w.display_name or key,
        publisher=w.publisher,
        architecture=w.architecture or w.arch,
        quantization=quant,
        size_bytes=int(size) if size is not None else None,
        params_string=w.params_string,
        max_context_length=w.max_context_length,
        format=w.format or w.compatibility_type,
        capabilities=caps,
        description=w.description,
        variants=tuple(w.variants or ()),
        selected_variant=w.selected_variant,
        instances=instances,
    )


def parse_models(body: bytes) -> list[Model]:
    """Models from a ``GET /api/v1/models`` body, in either list shape.

    Raises ``ProtocolError`` when the body is not JSON or has neither shape.
    """
    try:
        fast = _fast_decoder.decode(body)
    except msgspec.DecodeError:
        pass
    else:
        out = [m for w in fast.models if (m := _to_model(w)) is not None]
        if len(out) != len(fast.models):
            log.warning("skipped %d model entries without a key", len(fast.models) - len(out))
        return out
    try:
        env = _envelope_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ProtocolError(
            f"The server's model list is not valid JSON of the expected shape ({exc})."
        ) from None
    entries = env.models if env.models is not None else env.data
    if entries is None:
        raise ProtocolError(
            "The server's model list has neither a 'models' nor a 'data' list; "
            "it may not be an LM Studio server."
        )
    models: list[Model] = []
    for index, raw in enumerate(entries):
        try:
            model = _to_model(_entry_decoder.decode(raw))
        except msgspec.DecodeError as exc:
            log.warning("skipped malformed model entry #%d: %s", index, exc)
            continue
        if model is None:
            log.warning("skipped model entry #%d: it has no key", index)
            continue
        models.append(model)
    return models


# ----------------------------------------------------------------------------- chat results


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
