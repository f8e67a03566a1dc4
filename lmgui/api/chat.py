"""A chat turn on the wire: the JSON body of ``POST /api/v1/chat`` and reading its answer.

The same answer arrives two ways, as a whole body or as ``chat.end``'s result at the end of a
stream (``streaming.py``); both are read here so both fail with the same sentences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from lmgui.api.errors import ProtocolError
from lmgui.api.records import ChatResult, chat_result_from
from lmgui.api.transport import Transport

__all__ = ["CHAT_PATH", "chat_body", "image_item", "parse_chat_answer", "text_item"]

CHAT_PATH = "/api/v1/chat"


def text_item(content: str) -> dict[str, str]:
    return {"type": "text", "content": content}


def image_item(data_url: str) -> dict[str, str]:
    return {"type": "image", "data_url": data_url}


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
    # A key left out lets the server (or the loaded model's config) decide.
    body.update({k: v for k, v in optional.items() if v is not None})
    if not store:
        body["store"] = False
    if stream:
        body["stream"] = True
    return body


def parse_chat_answer(transport: Transport, raw: bytes | Any) -> ChatResult:
    """A chat answer (a body, or ``chat.end``'s decoded result); one without ``output`` is a
    protocol error, never an empty success."""
    obj: Any = raw
    if isinstance(raw, bytes):
        try:
            obj = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise transport.err(
                ProtocolError, f"{transport.where} sent a chat answer that is not valid JSON."
            ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("output"), list):
        raise transport.err(
            ProtocolError,
            f"{transport.where} sent a chat answer without its output; the answer is lost.",
        )
    try:
        return chat_result_from(obj)
    except ProtocolError as exc:
        raise transport.err(ProtocolError, f"{transport.where}: {exc}") from None
