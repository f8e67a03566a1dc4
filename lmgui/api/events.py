"""Typed events of a streamed chat (``POST /api/v1/chat`` with ``stream: true``).

Each event's ``type`` equals its SSE event name. The stream always starts with ``chat.start`` and
ends with ``chat.end``, whose ``result`` is the non-streamed ChatResult. An ``error`` event is an
event, not an exception: the server still ends the stream with ``chat.end``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from lmgui.api.records import ChatResult, chat_result_from

__all__ = [
    "ChatEnd",
    "ChatEvent",
    "ChatStart",
    "ErrorEvent",
    "ErrorInfo",
    "MessageDelta",
    "MessageEnd",
    "MessageStart",
    "ModelLoadEnd",
    "ModelLoadProgress",
    "ModelLoadStart",
    "PromptProcessingEnd",
    "PromptProcessingProgress",
    "PromptProcessingStart",
    "ReasoningDelta",
    "ReasoningEnd",
    "ReasoningStart",
    "ToolCallArguments",
    "ToolCallFailure",
    "ToolCallStart",
    "ToolCallSuccess",
    "UnknownEvent",
    "parse_event",
]


class _Event(msgspec.Struct, frozen=True):
    type: ClassVar[str]


class ChatStart(_Event, frozen=True):
    type: ClassVar[str] = "chat.start"
    model_instance_id: str | None = None


class ModelLoadStart(_Event, frozen=True):
    type: ClassVar[str] = "model_load.start"
    model_instance_id: str | None = None


class ModelLoadProgress(_Event, frozen=True):
    type: ClassVar[str] = "model_load.progress"
    model_instance_id: str | None = None
    progress: float = 0.0


class ModelLoadEnd(_Event, frozen=True):
    type: ClassVar[str] = "model_load.end"
    model_instance_id: str | None = None
    load_time_seconds: float | None = None


class PromptProcessingStart(_Event, frozen=True):
    type: ClassVar[str] = "prompt_processing.start"


class PromptProcessingProgress(_Event, frozen=True):
    type: ClassVar[str] = "prompt_processing.progress"
    progress: float = 0.0


class PromptProcessingEnd(_Event, frozen=True):
    type: ClassVar[str] = "prompt_processing.end"


class ReasoningStart(_Event, frozen=True):
    type: ClassVar[str] = "reasoning.start"


class ReasoningDelta(_Event, frozen=True):
    type: ClassVar[str] = "reasoning.delta"
    content: str = ""


class ReasoningEnd(_Event, frozen=True):
    type: ClassVar[str] = "reasoning.end"


class MessageStart(_Event, frozen=True):
    type: ClassVar[str] = "message.start"


class MessageDelta(_Event, frozen=True):
    type: ClassVar[str] = "message.delta"
    content: str = ""


class MessageEnd(_Event, frozen=True):
    type: ClassVar[str] = "message.end"


class ToolCallStart(_Event, frozen=True):
    type: ClassVar[str] = "tool_call.start"
    tool: str | None = None
    provider_info: dict[str, Any] | None = None


class ToolCallArguments(_Event, frozen=True):
    type: ClassVar[str] = "tool_call.arguments"
    tool: str | None = None
    arguments: Any = None
    provider_info: dict[str, Any] | None = None


class ToolCallSuccess(_Event, frozen=True):
    type: ClassVar[str] = "tool_call.success"
    tool: str | None = None
    arguments: Any = None
    output: Any = None
    provider_info: dict[str, Any] | None = None


class ToolCallFailure(_Event, frozen=True):
    type: ClassVar[str] = "tool_call.failure"
    reason: str = ""
    metadata: dict[str, Any] | None = None


class ErrorInfo(msgspec.Struct, frozen=True):
    message: str = ""
    type: str | None = None
    code: str | None = None
    param: str | None = None


class ErrorEvent(_Event, frozen=True):
    type: ClassVar[str] = "error"
    error: ErrorInfo = ErrorInfo()

    @property
    def message(self) -> str:
        return self.error.message


class ChatEnd(_Event, frozen=True):
    type: ClassVar[str] = "chat.end"
    result: ChatResult = ChatResult()


class UnknownEvent(msgspec.Struct, frozen=True):
    """An event this client does not know (a newer server); passed on, not dropped."""

    type: str
    data: Any = None


ChatEvent = (
    ChatStart
    | ModelLoadStart
    | ModelLoadProgress
    | ModelLoadEnd
    | PromptProcessingStart
    | PromptProcessingProgress
    | PromptProcessingEnd
    | ReasoningStart
    | ReasoningDelta
    | ReasoningEnd
    | MessageStart
    | MessageDelta
    | MessageEnd
    | ToolCallStart
    | ToolCallArguments
    | ToolCallSuccess
    | ToolCallFailure
    | ErrorEvent
    | ChatEnd
    | UnknownEvent
)

_SIMPLE: dict[str, type[_Event]] = {
    cls.type: cls
    for cls in (
        ChatStart,
        ModelLoadStart,
        ModelLoadProgress,
        ModelLoadEnd,
        PromptProcessingStart,
        PromptProcessingProgress,
        PromptProcessingEnd,
        ReasoningStart,
        ReasoningDelta,
        ReasoningEnd,
        MessageStart,
        MessageDelta,
        MessageEnd,
        ToolCallStart,
        ToolCallArguments,
        ToolCallSuccess,
        ToolCallFailure,
    )
}


def parse_event(name: str, data: Any) -> ChatEvent:
    """The typed event for an SSE frame whose JSON ``data`` is already decoded.

    Raises ``ProtocolError`` (through ``chat_result_from``) only for a ``chat.end`` whose result is
    unusable; any other malformed frame becomes an ``UnknownEvent`` so a stream is never lost to
    one odd frame.
    """
    if name == "chat.end":
        result = data.get("result") if isinstance(data, dict) else None
        return ChatEnd(result=chat_result_from(result if result is not None else {}))
    if name == "error":
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, str):
            return ErrorEvent(ErrorInfo(message=err))
        if isinstance(err, dict):
            try:
                return ErrorEvent(msgspec.convert(err, type=ErrorInfo, strict=False))
            except msgspec.ValidationError:
                return ErrorEvent(ErrorInfo(message=str(err.get("message", err))))
        return ErrorEvent(ErrorInfo(message="The server reported an error without details."))
    cls = _SIMPLE.get(name)
    if cls is not None and isinstance(data, dict):
        try:
            event: ChatEvent = msgspec.convert(data, type=cls, strict=False)  # type: ignore[assignment]
            return event
        except msgspec.ValidationError:
            pass
    return UnknownEvent(type=name, data=data)
