"""The model list (``GET /api/v1/models``), read leniently: one unreadable field never hides a
model.

``_*Wire`` structs mirror the JSON, with every field optional and both the v1 and the older (v0,
``{"object": "list", "data": [...]}``) spellings present, so one decoder reads both shapes. A fast
path decodes the whole list in one typed call; only when that fails is each entry decoded on its
own, and only a failing entry field by field. Unknown fields are ignored. A value of the wrong
type, out of range (negative, non-finite, absurdly large) or not representable becomes unknown,
is named in the record's ``malformed`` and is logged once; only an entry without a usable key (or
one that is not an object) is skipped, and the rest of the list is kept. Only the client's own
``ProtocolError`` leaves ``parse_models``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import Any

import msgspec

from lmgui.api.errors import ProtocolError
from lmgui.api.records import (
    MAX_BITS_PER_WEIGHT,
    MAX_BYTES,
    MAX_COUNT,
    MAX_TOKENS,
    Capabilities,
    Instance,
    Model,
    Quantization,
    ReasoningCapability,
    _whole,
)

log = logging.getLogger(__name__)

__all__ = ["ParseMemo", "parse_models"]


# ----------------------------------------------------------------------------- wire structs

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
    elif isinstance(c, list) and all(isinstance(x, str) for x in c):
        # v0's shape: a list of names (["tool_use"]); "vision" marks vision as v0's type does.
        fields["capabilities"] = _CapWire(
            vision="vision" in c, trained_for_tool_use="tool_use" in c
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


class ParseMemo:
    """What the last parse of a model list made of each well-formed entry, by key: an entry
    equal to last time's (a comparison in C) gets last time's record instead of a new one.
    Between two polls most of 2000 entries are the same; this halves a changed poll's parse."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, tuple[_EntryWire, Model]] = {}


def parse_models(body: bytes, memo: ParseMemo | None = None) -> list[Model]:
    """Models from a ``GET /api/v1/models`` body, in either list shape.

    Raises ``ProtocolError`` when the body is not JSON or has neither shape. Within the list,
    an entry is skipped only when it has no usable key or is not an object; any other field the
    server got wrong becomes unknown, is named in the record's ``malformed`` and logged once.
    With ``memo``, entries unchanged since the parse that filled it keep their records.
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
        last = memo.entries if memo is not None else {}
        kept: dict[str, tuple[_EntryWire, Model]] = {}
        for index, w in enumerate(fast.models):
            seen = last.get(w.key or w.id or "")
            if seen is not None and seen[0] == w:
                model: Model | None = seen[1]
            else:
                model = _to_model(w, bad)
            if model is None:
                defects.append((f"#{index}: it has no key", _SKIPPED, None))
                continue
            out.append(model)
            if bad:
                defects += [(model.key, n, v) for n, v in bad]
                bad.clear()
            elif memo is not None:
                kept[model.key] = (w, model)
        if memo is not None:
            memo.entries = kept
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
