"""Strict request validation with the error bodies the real server sends (zod-style schemas)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lmgui.sim.state import SimError

LOAD_KEYS = frozenset(
    {
        "model",
        "context_length",
        "eval_batch_size",
        "flash_attention",
        "num_experts",
        "offload_kv_cache_to_gpu",
        "echo_load_config",
    }
)
LOAD_EXTENSION_KEYS = frozenset({"gpu", "ttl", "identifier", "parallel"})
CHAT_KEYS = frozenset(
    {
        "model",
        "input",
        "system_prompt",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repeat_penalty",
        "max_output_tokens",
        "reasoning",
        "context_length",
        "store",
        "previous_response_id",
        "integrations",
    }
)
_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def as_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SimError.of(400, f"Expected object, received {_kind(body)}", code="invalid_type")
    return body


def check_keys(body: dict[str, Any], allowed: Iterable[str], required: Iterable[str]) -> None:
    allowed = set(allowed)
    extra = [k for k in body if k not in allowed]
    if extra:
        names = ", ".join(f"'{k}'" for k in extra)
        raise SimError.of(400, f"Unrecognized key(s) in object: {names}", code="unrecognized_keys")
    for name in required:
        if body.get(name) is None:
            raise SimError.of(
                400, f'"{name}" is required', code="missing_required_parameter", param=name
            )


def check_field(
    body: dict[str, Any],
    name: str,
    kind: type,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Iterable[str] | None = None,
) -> None:
    if name not in body:
        return
    value = body[name]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise SimError.of(
            400,
            f"Invalid type for '{name}': expected {_TYPE_NAMES.get(kind, kind.__name__)}, "
            f"received {_kind(value)}",
            code="invalid_type",
            param=name,
        )
    if minimum is not None and value < minimum:
        raise SimError.of(
            400, f"'{name}' must be at least {minimum:g}", code="too_small", param=name
        )
    if maximum is not None and value > maximum:
        raise SimError.of(400, f"'{name}' must be at most {maximum:g}", code="too_big", param=name)
    if choices is not None:
        allowed = list(choices)
        if value not in allowed:
            listed = ", ".join(f"'{c}'" for c in allowed)
            raise SimError.of(
                400,
                f"Invalid value '{value}' for '{name}'. Allowed values: {listed}",
                code="invalid_value",
                param=name,
            )


def validate_load(raw: Any, accept_extensions: bool) -> dict[str, Any]:
    body = as_object(raw)
    allowed = LOAD_KEYS | (LOAD_EXTENSION_KEYS if accept_extensions else frozenset())
    check_keys(body, allowed, ["model"])
    check_field(body, "model", str)
    check_field(body, "context_length", int, minimum=1)
    check_field(body, "eval_batch_size", int, minimum=1)
    check_field(body, "flash_attention", bool)
    check_field(body, "num_experts", int, minimum=0)
    check_field(body, "offload_kv_cache_to_gpu", bool)
    check_field(body, "echo_load_config", bool)
    if accept_extensions:
        gpu = body.get("gpu")
        if gpu is not None:
            try:
                ratio = {"max": 1.0, "off": 0.0}[gpu] if isinstance(gpu, str) else float(gpu)
            except (KeyError, TypeError, ValueError):
                ratio = -1.0
            if not 0.0 <= ratio <= 1.0:
                raise SimError.of(
                    400,
                    "Invalid value for 'gpu': expected 'max', 'off' or a number from 0 to 1",
                    code="invalid_value",
                    param="gpu",
                )
            body["gpu"] = ratio
        check_field(body, "ttl", int, minimum=1)
        check_field(body, "identifier", str)
        check_field(body, "parallel", int, minimum=1)
    return body


def validate_unload(raw: Any) -> str:
    body = as_object(raw)
    check_keys(body, {"instance_id"}, ["instance_id"])
    check_field(body, "instance_id", str)
    return str(body["instance_id"])


def validate_chat(raw: Any) -> dict[str, Any]:
    """Schema checks that come back as an HTTP 400 before any stream starts."""
    body = as_object(raw)
    check_keys(body, CHAT_KEYS, ["model", "input"])
    check_field(body, "model", str)
    check_field(body, "system_prompt", str)
    check_field(body, "stream", bool)
    check_field(body, "store", bool)
    check_field(body, "temperature", float, minimum=0, maximum=2)
    check_field(body, "top_p", float, minimum=0, maximum=1)
    check_field(body, "top_k", int, minimum=0)
    check_field(body, "min_p", float, minimum=0, maximum=1)
    check_field(body, "repeat_penalty", float, minimum=0)
    check_field(body, "max_output_tokens", int, minimum=1)
    check_field(body, "context_length", int, minimum=1)
    check_field(body, "reasoning", str, choices=["off", "low", "medium", "high", "on"])
    check_field(body, "previous_response_id", str)
    prev = body.get("previous_response_id")
    if isinstance(prev, str) and not prev.startswith("resp_"):
        raise SimError.of(
            400,
            "Invalid 'previous_response_id': it must start with 'resp_'",
            code="invalid_string",
            param="previous_response_id",
        )
    inp = body["input"]
    if isinstance(inp, str):
        return body
    if not isinstance(inp, list) or not inp:
        raise SimError.of(
            400,
            "Invalid input: expected a string or a non-empty array of items",
            code="invalid_union",
            param="input",
        )
    bad = [item for item in inp if not _valid_item(item)]
    if bad:
        one = "Invalid input: expected {type: 'text', content} or {type: 'image', data_url}"
        raise SimError.of(400, ", ".join([one] * len(bad)), code="invalid_union", param="input")
    return body


def _valid_item(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    if item.get("type") == "text":
        return set(item) == {"type", "content"} and isinstance(item["content"], str)
    if item.get("type") == "image":
        url = item.get("data_url")
        return (
            set(item) == {"type", "data_url"}
            and isinstance(url, str)
            and url.startswith("data:image/")
        )
    return False


def check_reasoning(value: str | None, capabilities: dict[str, Any] | None) -> None:
    """Only the model's allowed reasoning options are accepted (400 invalid_value)."""
    if value is None:
        return
    reasoning = (capabilities or {}).get("reasoning") or {}
    allowed = list(reasoning.get("allowed_options") or [])
    if value not in allowed:
        listed = ", ".join(f"'{c}'" for c in allowed) if allowed else "none (no reasoning)"
        raise SimError.of(
            400,
            f"Invalid value '{value}' for 'reasoning'. Allowed values: {listed}",
            code="invalid_value",
            param="reasoning",
        )
