"""Typed records of what LM Studio says, and the lenient parsers that build them.

Two layers:

* ``_*Wire`` structs mirror the JSON, with every field optional and both the v1 and the older
  (v0, ``{"object": "list", "data": [...]}``) spellings present, so one decoder reads both shapes.
* The public records (``Model``, ``Instance``, ``ChatResult``...) are frozen msgspec Structs: cheap
  to build, compared by value (the poller's snapshot diff relies on that) and encodable as JSON.

Unknown fields are ignored. One unreadable field never hides a model: a value of the wrong type,
out of range (negative, non-finite, absurdly large) or not representable becomes unknown, is named
in the record's ``malformed`` and is logged once; only an entry without a usable key (or one that
is not an object) is skipped, and the rest of the list is kept. Only the client's own
``ProtocolError`` ever leaves a parser.
"""

from __future__ import annotations

import json
import logging
import math
import threading
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
    """A loaded copy of a model. ``id`` is always the server's, never derived from the key.

    ``config`` is the server's mapping as sent (new keys kept); the typed properties read it and
    give None for a value they cannot use. ``malformed`` names the config keys the server sent a
    value for that lmgui could not read, so a view can show "?" rather than "-" (not said).
    """

    id: str
    model_key: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    malformed: tuple[str, ...] = ()

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

_CONFIG_COUNTS: tuple[tuple[str, int], ...] = (
    ("context_length", MAX_TOKENS),
    ("parallel", MAX_COUNT),
    ("eval_batch_size", MAX_TOKENS),
    ("num_experts", MAX_COUNT),
)
_CONFIG_FLAGS = ("flash_attention", "offload_kv_cache_to_gpu")


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


class _LenientInstanceWire(_InstanceWire):
    """Built by the lenient path only, never decoded from JSON (so no server can set
    ``unreadable``): the instance fields it had to drop, e.g. a ``config`` that is not an object."""

    unreadable: tuple[tuple[str, Any], ...] = ()


class _EntryWire(msgspec.Struct):
    # Numbers are ``int | float`` so a wrong range (1e308, -5, 4096.0) keeps the fast path and is
    # judged by _to_model; only a wrong type or an unrepresentable number fails the typed decode.
    # v1 spellings
    type: str | None = None
    key: str | None = None
    display_name: str | None = None
    publisher: str | None = None
    architecture: str | None = None
    quantization: _QuantWire | str | None = None
    size_bytes: int | float | None = None
    params_string: str | None = None
    max_context_length: int | float | None = None
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
    loaded_context_length: int | float | None = None


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

_Bad = list[tuple[str, Any]]
"""(field name, the value the server sent) for each field that could not be read."""


class _Unreadable(float):
    """A JSON number no Python value holds faithfully (1e400, an integer of 5000 digits), or a
    value of the wrong type where a number belongs (lenient path). It is an infinite float so it
    fits a wire struct's number field and fails every range check; it never reaches a record."""

    what: str

    def __new__(cls, what: str) -> _Unreadable:
        self = super().__new__(cls, math.inf)
        self.what = what
        return self


def _whole(value: Any, limit: int, *, fraction_ok: bool = False) -> int | None:
    """``value`` as a whole number in ``[0, limit]``, or None for anything else: a bool (an int
    subclass, but never meant as a count), a string, a negative, NaN or infinite float, a float
    with a fraction (unless ``fraction_ok``: a byte count sent as 4.5e9 is still a size)."""
    if type(value) is int:
        return value if 0 <= value <= limit else None
    if type(value) is float and 0 <= value <= limit:  # NaN fails every comparison
        return int(value) if fraction_ok or value.is_integer() else None
    return None


def _checked(
    value: Any, limit: int, name: str, bad: _Bad, *, fraction_ok: bool = False
) -> int | None:
    out = _whole(value, limit, fraction_ok=fraction_ok)
    if out is None and value is not None:
        bad.append((name, value))
    return out


def _instance(
    key: str, iid: str, config: dict[str, Any], dropped: tuple[tuple[str, Any], ...], bad: _Bad
) -> Instance:
    """An Instance naming its unreadable config keys (and the instance fields the lenient path
    ``dropped``); each is also added to ``bad`` to be logged."""
    found: _Bad = []
    if config:
        if any(isinstance(v, _Unreadable) for v in config.values()):
            # Not representable as JSON either (the CLI's --json prints config): keep the key,
            # say nothing about its value.
            found += [(n, v) for n, v in config.items() if isinstance(v, _Unreadable)]
            config = {n: None if isinstance(v, _Unreadable) else v for n, v in config.items()}
        for name, limit in _CONFIG_COUNTS:
            value = config.get(name)
            if value is not None and _whole(value, limit) is None:
                found.append((name, value))
        for name in _CONFIG_FLAGS:
            value = config.get(name)
            if value is not None and not isinstance(value, bool):
                found.append((name, value))
    if not found and not dropped:
        return Instance(id=iid, model_key=key, config=config)
    names = tuple(dict.fromkeys([n for n, _ in dropped] + [n for n, _ in found]))
    who = f"instance {_short(iid)}"
    bad += [(f"{who} {n}", v) for n, v in dropped]
    bad += [(f"{who} config.{n}", v) for n, v in found]
    return Instance(id=iid, model_key=key, config=config, malformed=names)


def _to_model(w: _EntryWire, bad: _Bad) -> Model | None:
    """The record of one entry, or None when it has no key. Fields out of range become None and
    are appended to ``bad`` (which arrives holding what the lenient path already dropped)."""
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
    quant: Quantization | None = None
    if isinstance(q, _QuantWire):
        bits = q.bits_per_weight
        if bits is not None and not 0 < bits <= MAX_BITS_PER_WEIGHT:  # NaN fails too
            bad.append(("quantization.bits_per_weight", bits))
            bits = None
        quant = Quantization(q.name, bits)
    elif isinstance(q, str):
        quant = Quantization(name=q)
    # The common case (a plain int in range) is tested inline: this runs 2000 times a poll.
    size = w.size_bytes
    if size is not None and not (type(size) is int and 0 <= size <= MAX_BYTES):
        size = _checked(size, MAX_BYTES, "size_bytes", bad, fraction_ok=True)
    max_ctx = w.max_context_length
    if max_ctx is not None and not (type(max_ctx) is int and 0 <= max_ctx <= MAX_TOKENS):
        max_ctx = _checked(max_ctx, MAX_TOKENS, "max_context_length", bad)
    malformed = tuple(dict.fromkeys(n for n, _ in bad)) if bad else None
    instances: tuple[Instance, ...] = ()
    if w.loaded_instances is not None:
        instances = tuple(
            _instance(
                key,
                iid,
                i.config or {},
                i.unreadable if isinstance(i, _LenientInstanceWire) else (),
                bad,
            )
            for i in w.loaded_instances
            if (iid := i.id or i.instance_id)
        )
    elif w.state in ("loaded", "loading"):
        ctx = w.loaded_context_length
        config = {"context_length": ctx} if ctx else {}
        instances = (_instance(key, key, config, (), bad),)
    model = Model(
        key=key,
        type=mtype,
        display_name=w.display_name or key,
        publisher=w.publisher,
        architecture=w.architecture or w.arch,
        quantization=quant,
        size_bytes=size,
        params_string=w.params_string,
        max_context_length=max_ctx,
        format=w.format or w.compatibility_type,
        capabilities=caps,
        description=w.description,
        variants=tuple(w.variants or ()),
        selected_variant=w.selected_variant,
        instances=instances,
    )
    # Added only when needed: one more keyword costs msgspec ~0.6 us per Model (measured; 1.2 ms
    # a poll at 2000 models), a replace on the rare bad entry costs nothing on the good ones.
    return model if malformed is None else msgspec.structs.replace(model, malformed=malformed)


# ------------------------------------------------------------------ the lenient path, per field


def _parse_int(text: str) -> int | _Unreadable:
    # Python refuses to build ints past 4300 digits (and any past 30 is out of every range).
    return int(text) if len(text) <= 30 else _Unreadable(f"an integer of {len(text)} digits")


def _parse_float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _Unreadable(f"{text[:24]} (out of range)")


def _parse_constant(text: str) -> _Unreadable:
    return _Unreadable(text)  # NaN, Infinity: not JSON, but json.loads would take them


_any_decoder = msgspec.json.Decoder()


def _decode_lenient(raw: msgspec.Raw) -> tuple[Any, bool]:
    """Any JSON value, and whether it may hold _Unreadable numbers. msgspec first (fast); it
    gives up on numbers no Python value holds faithfully (1e400, ints past 4300 digits), which
    json.loads then turns into _Unreadable."""
    try:
        return _any_decoder.decode(raw), False
    except msgspec.DecodeError:
        value = json.loads(
            bytes(raw),
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
        return value, True


def _scrub(value: Any) -> Any:
    """``value`` with unreadable numbers nested anywhere in it replaced by None (JSON-safe)."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return None if isinstance(value, _Unreadable) else value


def _text(d: dict[str, Any], name: str, bad: _Bad, label: str = "") -> str | None:
    value = d.get(name)
    if value is None or isinstance(value, str):
        return value
    bad.append((label or name, value))
    return None


def _flag(d: dict[str, Any], name: str, bad: _Bad, label: str) -> bool | None:
    value = d.get(name)
    if value is None or isinstance(value, bool):
        return value
    bad.append((label, value))
    return None


def _number(d: dict[str, Any], name: str) -> int | float | None:
    """A number as sent (its range is _to_model's to judge), or an _Unreadable standing in for a
    value of another type, so _to_model names it like any other out-of-range number."""
    value = d.get(name)
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    return _Unreadable(_describe(value))


def _texts(d: dict[str, Any], name: str, bad: _Bad, label: str) -> list[str] | None:
    value = d.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        bad.append((label, value))
        return None
    kept = [v for v in value if isinstance(v, str)]
    if len(kept) != len(value):
        bad.append((label, value))
    return kept


def _lenient_instance(item: dict[str, Any]) -> _LenientInstanceWire:
    dropped: _Bad = []
    config = item.get("config")
    if config is not None and not isinstance(config, dict):
        dropped.append(("config", config))
        config = None
    elif config is not None:
        config = {k: _scrub(v) if isinstance(v, (dict, list)) else v for k, v in config.items()}
    return _LenientInstanceWire(
        id=_text(item, "id", dropped),
        instance_id=_text(item, "instance_id", dropped),
        config=config,
        unreadable=tuple(dropped),
    )


_TEXT_FIELDS: tuple[tuple[str, str], ...] = (
    # (wire name, the record field it feeds: the name a defect is reported under)
    ("type", "type"),
    ("key", "key"),
    ("display_name", "display_name"),
    ("publisher", "publisher"),
    ("architecture", "architecture"),
    ("params_string", "params_string"),
    ("format", "format"),
    ("description", "description"),
    ("selected_variant", "selected_variant"),
    ("id", "id"),  # v0 spellings
    ("arch", "architecture"),
    ("compatibility_type", "format"),
    ("state", "state"),
)
_NUMBER_FIELDS = ("size_bytes", "max_context_length", "loaded_context_length")


def _convert(value: Any, into: Any) -> Any:
    """``value`` converted strictly to the type ``into``, or None when it does not fit."""
    try:
        return msgspec.convert(value, into)
    except msgspec.ValidationError:
        return None


def _lenient_wire(d: dict[str, Any], bad: _Bad, exotic: bool) -> _EntryWire:
    """An entry's wire struct built field by field: a field of the wrong shape is left out and
    named in ``bad``; numbers go through as sent for _to_model to judge. The scalar fields are
    checked in one loop over a table: this runs for every entry of a broken list, every poll.
    ``exotic``: ``d`` may hold _Unreadable numbers anywhere (which must not reach a config)."""
    fields: dict[str, Any] = {}
    for name, label in _TEXT_FIELDS:
        value = d.get(name)
        if value is not None:
            if isinstance(value, str):
                fields[name] = value
            else:
                bad.append((label, value))
    for name in _NUMBER_FIELDS:
        value = d.get(name)
        if value is not None:
            # A tuple, not ``int | float``: that builds a Union object on every call.
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            fields[name] = value if ok else _Unreadable(_describe(value))
    # Nested parts: one strict msgspec.convert each (C speed, usually fine: the bad field is
    # seldom inside them); field by field only when that fails.
    q = d.get("quantization")
    if isinstance(q, str):
        fields["quantization"] = q
    elif isinstance(q, dict) and (w := _convert(q, _QuantWire)) is not None:
        fields["quantization"] = w
    elif isinstance(q, dict):
        name_ = _text(q, "name", bad, "quantization.name")
        fields["quantization"] = _QuantWire(name_, _number(q, "bits_per_weight"))
    elif q is not None:
        bad.append(("quantization", q))
    c = d.get("capabilities")
    if isinstance(c, dict) and (w := _convert(c, _CapWire)) is not None:
        fields["capabilities"] = w
    elif isinstance(c, dict):
        reasoning: _ReasoningWire | None = None
        r = c.get("reasoning")
        if isinstance(r, dict):
            label = "capabilities.reasoning."
            reasoning = _ReasoningWire(
                _texts(r, "allowed_options", bad, label + "allowed_options"),
                _text(r, "default", bad, label + "default"),
            )
        elif r is not None:
            bad.append(("capabilities.reasoning", r))
        fields["capabilities"] = _CapWire(
            _flag(c, "vision", bad, "capabilities.vision"),
            _flag(c, "trained_for_tool_use", bad, "capabilities.trained_for_tool_use"),
            reasoning,
        )
    elif c is not None:
        bad.append(("capabilities", c))
    if "variants" in d:
        fields["variants"] = _texts(d, "variants", bad, "variants")
    li = d.get("loaded_instances")
    if isinstance(li, list):
        instances: list[_InstanceWire] = []
        for item in li:
            if isinstance(item, dict):
                inst = None if exotic else _convert(item, _InstanceWire)
                instances.append(inst or _lenient_instance(item))
            else:
                bad.append(("loaded_instances", item))
        fields["loaded_instances"] = instances
    elif li is not None:
        bad.append(("loaded_instances", li))
    return _EntryWire(**fields)


def _lenient_entry(raw: msgspec.Raw, bad: _Bad) -> _EntryWire | str:
    """The wire struct of an entry the typed decoder refused, or why it is no entry at all."""
    try:
        obj, exotic = _decode_lenient(raw)
    except (ValueError, RecursionError):  # msgspec read it, so only a freak nesting depth
        return "it is not readable JSON"
    if not isinstance(obj, dict):
        return "it is not a JSON object"
    try:
        return _lenient_wire(obj, bad, exotic)
    except RecursionError:  # _scrub on a config nested as deep as json.loads allows
        return "it is nested too deeply"


# ------------------------------------------------------------------ logging each defect once

_SKIPPED = "skipped malformed model entry"
_REPORTED: dict[tuple[str, str], None] = {}
"""(model key or entry #, field) already logged, oldest first: a changing model list with the
same defect would otherwise log it on every 2 s poll (byte-identical bodies are skipped before
parsing). Bounded: past the limit the oldest are forgotten and may be logged again."""
_REPORTED_MAX = 4096
_LOG_PER_PARSE = 20
"""Defects logged one by one per parse; the rest are counted in one line."""
_reported_lock = threading.Lock()  # parsers run on the event loop today; cheap insurance


def _describe(value: Any) -> str:
    """A short, safe description of a bad value for the log (never the whole of a huge one)."""
    if isinstance(value, _Unreadable):
        return value.what
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        if value.bit_length() > 64:  # repr of a 4000-digit int is slow and useless
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, limit: int = 60) -> str:
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _report(defects: list[tuple[str, str, Any]]) -> None:
    """Log (who, field, value) defects not logged before in this process. ``who`` is a model
    key, or for a skipped entry (field ``_SKIPPED``) its index and why."""
    fresh: list[tuple[str, str, Any]] = []
    with _reported_lock:
        for who, name, value in defects:
            said = (who[:200], name[:200])  # a hostile key must not fill memory
            if said not in _REPORTED:
                _REPORTED[said] = None
                if len(_REPORTED) > _REPORTED_MAX:
                    del _REPORTED[next(iter(_REPORTED))]
                fresh.append((who, name, value))
    for who, name, value in fresh[:_LOG_PER_PARSE]:
        if name == _SKIPPED:
            log.warning("%s %s", name, who)
        else:
            log.warning(
                "model %s: the server sent %s for %s; lmgui shows it as unknown",
                _short(who),
                _describe(value),
                name,
            )
    if len(fresh) > _LOG_PER_PARSE:
        log.warning(
            "%d more unreadable fields or skipped entries in the server's model list "
            "(not logged one by one)",
            len(fresh) - _LOG_PER_PARSE,
        )


def _forget_reported() -> None:
    """Tests only: log every defect again."""
    with _reported_lock:
        _REPORTED.clear()


def parse_models(body: bytes) -> list[Model]:
    """Models from a ``GET /api/v1/models`` body, in either list shape.

    Raises ``ProtocolError`` when the body is not JSON or has neither shape. Within the list,
    an entry is skipped only when it has no usable key or is not an object; any other field the
    server got wrong becomes unknown, is named in the record's ``malformed`` and logged once.
    """
    defects: list[tuple[str, str, Any]] = []
    try:
        fast = _fast_decoder.decode(body)
    except msgspec.DecodeError:
        pass
    else:
        # Every entry typed in one C pass: the common case, polled every 2 s on 2000 models.
        out: list[Model] = []
        bad: _Bad = []  # one list, emptied after use: a fresh one per entry costs measurably
        for index, w in enumerate(fast.models):
            model = _to_model(w, bad)
            if model is None:
                defects.append((f"#{index}: it has no key", _SKIPPED, None))
                continue
            out.append(model)
            if bad:
                defects += [(model.key, n, v) for n, v in bad]
                bad.clear()
        if defects:
            _report(defects)
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
    bad = []
    for index, raw in enumerate(entries):
        bad.clear()
        try:  # typed first: the entries a bad neighbour pushed off the fast path stay fast
            wire: _EntryWire | str = _entry_decoder.decode(raw)
        except msgspec.DecodeError:
            wire = _lenient_entry(raw, bad)
        model = _to_model(wire, bad) if isinstance(wire, _EntryWire) else None
        if model is None:
            why = wire if isinstance(wire, str) else "it has no usable key"
            defects.append((f"#{index}: {why}", _SKIPPED, None))
            continue
        models.append(model)
        if bad:
            defects += [(model.key, n, v) for n, v in bad]
    if defects:
        _report(defects)
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
