"""The transcript of one branch: selectable text, Markdown answers, per-turn actions as links.

Safety: every string from the user or a server is HTML-escaped before it becomes part of the
document, except answers, which go through Qt's Markdown parser with raw HTML discarded
(``MarkdownNoHTML``). ``loadResource`` returns nothing, so no image or stylesheet is ever fetched,
and links are never opened: only lmgui's own ``lmgui:`` actions are acted on.

Streaming: deltas are appended at the end of the document, batched every 50 ms (a stream at
2000 tokens/s is 100 inserts a second, not 2000); at the end of the turn only that turn is
rendered again, from the position where it starts.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import QTextBrowser, QWidget

from lmgui.core.chat_store import TurnRecord

__all__ = ["SiblingInfo", "TranscriptView", "markdown_html"]

FLUSH_MS = 50
PAGE = 40
"""Turns shown when a branch opens; "Show earlier turns" adds this many more."""
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.DOTALL | re.IGNORECASE)
_MD_FEATURES = (
    QTextDocument.MarkdownFeature.MarkdownNoHTML
    | QTextDocument.MarkdownFeature.MarkdownDialectGitHub
)


def markdown_html(text: str) -> str:
    """Markdown as an HTML fragment, raw HTML in it discarded."""
    doc = QTextDocument()
    doc.setMarkdown(text, _MD_FEATURES)
    match = _BODY.search(doc.toHtml())
    return match.group(1) if match else html.escape(text)


@dataclass(frozen=True)
class SiblingInfo:
    """Where a turn sits among the answers to the same earlier turn (the branches there)."""

    index: int
    count: int
    previous: int | None
    next: int | None


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _stats_line(t: TurnRecord) -> str:
    s = t.stats
    bits = []
    if s.get("tokens_per_second"):
        bits.append(f"{s['tokens_per_second']:.1f} tok/s")
    if s.get("time_to_first_token_seconds") is not None:
        bits.append(f"first token {s['time_to_first_token_seconds']:.2f} s")
    if s.get("input_tokens") is not None:
        bits.append(f"{s['input_tokens']} in")
    if s.get("total_output_tokens") is not None:
        bits.append(f"{s['total_output_tokens']} out")
    if s.get("model_load_time_seconds") is not None:
        bits.append(f"model load {s['model_load_time_seconds']:.1f} s")
    return " · ".join(bits)


class TranscriptView(QTextBrowser):
    action = Signal(str, int)
    """(what, turn id): "continue", "copy", "copy-id", "reasoning", "sibling-prev" or
    "sibling-next"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setAccessibleName("Chat transcript")
        self.setPlaceholderText("No messages yet. Write below and press Ctrl+Enter.")
        self.anchorClicked.connect(self._on_anchor_clicked)
        self.expanded: set[int] = set()
        self.shown = PAGE
        self._answers: dict[tuple[int, str], str] = {}
        self._turns: list[TurnRecord] = []
        self._siblings: dict[int, SiblingInfo] = {}
        self._stream_turn: int | None = None
        self._stream_start = 0
        self._stream_kind: str | None = None
        self._pending: list[tuple[str, str]] = []
        self._flush = QTimer(self)
        self._flush.setInterval(FLUSH_MS)
        self._flush.timeout.connect(self.flush)

    # WORKAROUND: QTextBrowser fetches <img src> and stylesheets through loadResource; nothing a
    # server wrote may load anything, so every resource is refused.
    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        return None

    def _on_anchor_clicked(self, url: QUrl) -> None:
        if url.scheme() != "lmgui":
            return  # links in answers are shown, never followed
        what, _, turn = url.path().partition("/")
        if what == "earlier":
            self.shown += PAGE
            self.show_branch(self._turns, self._siblings, keep_page=True)
            self.moveCursor(QTextCursor.MoveOperation.Start)
            return
        if turn.isdigit():
            self.action.emit(what, int(turn))

    # ------------------------------------------------------------------ whole branches

    def show_branch(
        self, turns: list[TurnRecord], siblings: dict[int, SiblingInfo], *, keep_page: bool = False
    ) -> None:
        """The newest turns of a branch (``PAGE`` of them, more on request): opening any thread
        costs the same, however long it is."""
        if not keep_page:
            self.shown = PAGE
        self._turns = list(turns)
        self._siblings = dict(siblings)
        self._stream_turn = None
        self._pending.clear()
        hidden = max(0, len(turns) - self.shown)
        head = ""
        if hidden:
            more = min(PAGE, hidden)
            head = (
                f'<p style="color:gray">{hidden} earlier turn{"s" * (hidden > 1)} not shown. '
                f'<a href="lmgui:earlier/0">Show {more} more</a></p><hr>'
            )
        self.setHtml(head + "".join(self._turn_html(t) for t in turns[hidden:]))
        if not keep_page:
            self.moveCursor(QTextCursor.MoveOperation.End)
            self.ensureCursorVisible()

    def _answer_html(self, t: TurnRecord) -> str:
        key = (t.id, t.text)
        cached = self._answers.get(key)
        if cached is None:
            cached = markdown_html(t.text) if t.text else ""
            self._answers[key] = cached
        return cached

    def _turn_html(self, t: TurnRecord, *, streaming: bool = False) -> str:
        when = time.strftime("%H:%M", time.localtime(t.created))
        nav = ""
        sib = self._siblings.get(t.id)
        if sib is not None and sib.count > 1:
            prev_link = f'<a href="lmgui:sibling-prev/{t.id}">◀</a>' if sib.previous else "◁"
            next_link = f'<a href="lmgui:sibling-next/{t.id}">▶</a>' if sib.next else "▷"
            where = f"{prev_link} branch {sib.index} of {sib.count} {next_link}"
            nav = f' &nbsp; <span style="color:#555">{where}</span>'
        parts = [
            f'<p style="margin-top:12px"><b>You</b> <span style="color:gray">{when}</span>'
            f"{nav}</p>",
            f'<p style="white-space:pre-wrap">{_esc(t.user_text)}</p>',
        ]
        for item in t.input:
            if item.get("type") == "image":
                parts.append(f'<p style="color:gray">[image, {_esc(str(item.get("mime")))}]</p>')
        who = _esc(t.instance_id or t.model)
        parts.append(f'<p style="margin-top:6px"><b>{who}</b></p>')
        if streaming:
            return "".join(parts)
        if t.reasoning:
            words = len(t.reasoning.split())
            arrow = "▾" if t.id in self.expanded else "▸"
            parts.append(
                f'<p style="color:#555"><a href="lmgui:reasoning/{t.id}">{arrow} Reasoning</a>'
                f" ({words} words)</p>"
            )
            if t.id in self.expanded:
                parts.append(
                    f'<p style="color:#666; white-space:pre-wrap"><i>{_esc(t.reasoning)}</i></p>'
                )
        for item in t.output:
            if item.get("type") == "tool_call":
                args = _esc(_short(item.get("arguments")))
                result = _esc(_short(item.get("output")))
                tool = _esc(str(item.get("tool")))
                parts.append(
                    f'<p style="color:#555">⚙ Tool call <b>{tool}</b> {args} → {result}</p>'
                )
            elif item.get("type") == "invalid_tool_call":
                reason = _esc(str(item.get("reason")))
                parts.append(f'<p style="color:#8a5a00">⚠ Invalid tool call: {reason}</p>')
        parts.append(self._answer_html(t))
        if t.status == "stopped":
            parts.append('<p style="color:#8a5a00">(stopped)</p>')
        elif t.status == "interrupted":
            parts.append('<p style="color:#8a5a00">(interrupted: the answer was cut off)</p>')
        elif t.status == "error":
            parts.append(f'<p style="color:#b00020">{_esc(t.error or "error")}</p>')
        meta = [_stats_line(t)]
        if t.response_id:
            meta.append(f'<a href="lmgui:copy-id/{t.id}">{_esc(t.response_id)}</a>')
        meta.append(f'<a href="lmgui:copy/{t.id}">Copy</a>')
        if t.response_id:
            meta.append(f'<a href="lmgui:continue/{t.id}">Continue from here</a>')
        else:
            meta.append("<span>not stored: cannot be continued</span>")
        parts.append(
            '<p style="color:gray; font-size:small">'
            + " · ".join(m for m in meta if m)
            + "</p><hr>"
        )
        return "".join(parts)

    # ------------------------------------------------------------------ streaming

    def begin_stream(self, turn: TurnRecord) -> None:
        """Show the user's turn and an answer that grows at the end of the document."""
        self.flush()
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self._stream_start = cursor.position()
        cursor.insertHtml(self._turn_html(turn, streaming=True))
        cursor.insertBlock()
        self._stream_turn = turn.id
        self._stream_kind = None
        self._flush.start()
        self._scroll_to_end()

    def append_delta(self, kind: str, text: str) -> None:
        self._pending.append((kind, text))

    def flush(self) -> None:
        if not self._pending or self._stream_turn is None:
            return
        pending, self._pending = self._pending, []
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()
        for kind, text in pending:
            if kind != self._stream_kind:
                if self._stream_kind is not None:
                    cursor.insertBlock()
                self._stream_kind = kind
            fmt = QTextCharFormat()
            if kind == "reasoning":
                fmt.setForeground(QColor("#777777"))
                fmt.setFontItalic(True)
            cursor.insertText(text, fmt)
        cursor.endEditBlock()
        self._scroll_to_end()

    def note(self, text: str) -> None:
        """A line of progress in the streaming turn (model loading...)."""
        self.append_delta("note", text + "\n")

    def end_stream(self, turn: TurnRecord, siblings: dict[int, SiblingInfo] | None = None) -> None:
        """Replace the streamed text with the finished turn, rendered."""
        self._flush.stop()
        self._pending.clear()
        if siblings is not None:
            self._siblings = dict(siblings)
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._stream_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.insertHtml(self._turn_html(turn))
        self._turns.append(turn)
        self._stream_turn = None
        self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def turn(self, turn_id: int) -> TurnRecord | None:
        return next((t for t in self._turns if t.id == turn_id), None)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
