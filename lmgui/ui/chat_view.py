"""The transcript of one branch: selectable text, Markdown answers, per-turn actions as links.

Safety: every string from the user or a server is HTML-escaped before it becomes part of the
document, except answers, which go through Qt's Markdown parser with raw HTML discarded
(``MarkdownNoHTML``). ``loadResource`` returns nothing, so no image or stylesheet is ever fetched,
and links are never opened: only lmgui's own ``lmgui:`` actions are acted on. Model output cannot
forge those: in a parsed answer, every link whose target has the ``lmgui:`` scheme (inline,
reference, autolink, any case, around an image) becomes plain text before it is shown, so the only
``lmgui:`` links in the document are lmgui's own controls. A click acts only on a known action for
a turn that is in the document.

Streaming: deltas are appended at the end of the document, batched every 50 ms (a stream at
2000 tokens/s is 100 inserts a second, not 2000); at the end of the turn only that turn is
rendered again, from the position where it starts.

Staying responsive whatever the model answers. Qt lays out a whole block again whenever it
changes, and with the wrap mode it needs (``WrapAtWordBoundaryOrAnywhere``: lines break at spaces,
and anywhere when there is none) a run with no break opportunity costs the square of its length
(a line of 40 000 hex digits: 100 ms; 200 000: over 2 s). So the view never makes a long block,
never lays out much at once, and keeps its scroll bar (one that appears changes the width, and Qt
lays the whole document out again). Limits, measured on a 2-core VM offscreen with
``bench/transcript.py``, for no stall of the GUI thread over 50 ms (the longest stall of any case,
median of 3 runs: 25 ms; single runs reach 50 ms only while other work shares the machine):

- ``BLOCK_CHARS`` = 1000: no block of plain or streamed text is longer. A streamed line that
  reaches it goes on in a new block (at a space in its last quarter when there is one), so a
  flush lays out one short block plus the new text: about 5 ms, the same at 1 MB as at 1 KB.
  Blocks of 1000 cost what text with spaces costs; blocks of 8000 already cost 40 % more.
- ``FOLD_CHARS`` = 32 000 characters or ``FOLD_LINES`` = 1000 lines: longer text (an answer, the
  reasoning, the user's message) is folded. Plain text costs about 0.2 us a character and 7 us a
  line here, so 32 000 characters in 1000 lines is about 15 ms. The first ``PREVIEW_CHARS`` = 8000
  characters (at most ``PREVIEW_LINES`` = 200 lines) are shown, then "… N KB more (… in all,
  shown as plain text). Show all". Show all inserts the rest as plain text, ``SLICE_CHARS`` =
  16 000 characters (at most ``SLICE_LINES`` = 1000 lines) per turn of the event loop: about
  6 ms a slice, a 1 MB answer in a quarter of a second, the view usable all along.
- An answer is rendered as Markdown only within ``RICH_LINES`` = 600 lines, no run of
  ``RUN_CHARS`` = 2000 characters without a space, at most ``RICH_CELLS`` = 200 table cells and
  ``RICH_MARKS`` = 1000 Markdown marks, checked on the source so that costly cases never reach
  the parser, and only if its HTML is at most ``RICH_HTML`` = 64 000 characters. Qt lays out a
  table cell in about 0.13 ms, imports 2000 list items in 120 ms (quadratic), and its layout time
  follows the HTML's size (0.3 to 0.6 ms per KB). The costliest Markdown still rendered (each
  shape at its limit) takes 10 to 22 ms. Otherwise the answer is shown as plain text in the fixed
  font, with a line saying why; an ordinary answer of up to about 15 KB keeps its Markdown.
- A branch opens with its newest ``PAGE`` turns, but only ``STEP_HTML`` = 48 000 characters of
  HTML at once (the newest turns, at least one); the older turns of the page go in above them a
  step per turn of the event loop, and so do the turns "Show more" adds. Opening 40 turns of
  3 KB Markdown: 17 ms at most (83 ms before, in one go).
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QColor,
    QFontDatabase,
    QTextBlock,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextOption,
)
from PySide6.QtWidgets import QTextBrowser, QTextEdit, QWidget

from lmgui.core.branches import SiblingInfo  # computed beside the session; shown here
from lmgui.core.chat_store import TurnRecord

__all__ = ["SiblingInfo", "TranscriptView", "markdown_html"]

FLUSH_MS = 50
PAGE = 40
"""Turns shown when a branch opens; "Show earlier turns" adds this many more."""
BLOCK_CHARS = 1000
"""Longest block of plain or streamed text the view makes."""
FOLD_CHARS = 32_000
FOLD_LINES = 1000
"""Text longer than this (characters or lines) is folded behind "Show all"."""
PREVIEW_CHARS = 8000
PREVIEW_LINES = 200
"""How much of folded text is shown before "Show all"."""
SLICE_CHARS = 16_000
SLICE_LINES = 1000
"""How much "Show all" inserts per turn of the event loop."""
RICH_HTML = 64_000
RICH_LINES = 600
RICH_CELLS = 200
RICH_MARKS = 1000
RUN_CHARS = 2000
"""An answer is rendered as Markdown only within these (the module docstring says why)."""
STEP_HTML = 48_000
"""HTML rendered in one go when a branch opens or grows; older turns follow in later steps."""
NOWRAP_CHARS = 500
"""A line of a code block longer than this wraps like the rest of the text."""

_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.DOTALL | re.IGNORECASE)
_MD_FEATURES = (
    QTextDocument.MarkdownFeature.MarkdownNoHTML
    | QTextDocument.MarkdownFeature.MarkdownDialectGitHub
)
_MARKS = re.compile(r"[`*_\[<&|#>~]")
_FENCE = re.compile(r"\s{0,3}(```|~~~)")
_OWN_SCHEME = "lmgui"
_ACTIONS = frozenset({"continue", "copy", "copy-id", "reasoning", "sibling-prev", "sibling-next"})
_SHOW_ALL = {
    "show-all": "answer",
    "show-all-reasoning": "reasoning",
    "show-all-question": "question",
}


def markdown_html(text: str) -> str:
    """Markdown as an HTML fragment, raw HTML in it discarded and links to lmgui's own actions
    turned into text."""
    doc = QTextDocument()
    doc.setMarkdown(text, _MD_FEATURES)
    _disarm(doc)
    match = _BODY.search(doc.toHtml())
    return match.group(1) if match else html.escape(text)


def _is_own_link(href: str) -> bool:
    # QTextBrowser hands anchorClicked QUrl(href); the substring test also covers spellings QUrl
    # might clean up (spaces, case) so that no variant slips through.
    return QUrl(href).scheme().lower() == _OWN_SCHEME or _OWN_SCHEME in href.lower()


def _disarm(doc: QTextDocument) -> None:
    """In a parsed answer: links to lmgui's scheme become plain text, and very long code lines
    wrap. Works on the parsed document, so every Markdown spelling of a link is caught."""
    own: list[tuple[int, int, QTextCharFormat]] = []
    long_code: list[QTextBlock] = []
    block = doc.begin()
    while block.isValid():
        if block.blockFormat().nonBreakableLines() and block.length() > NOWRAP_CHARS:
            long_code.append(block)
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            fmt = fragment.charFormat()
            if fmt.isAnchor() and _is_own_link(fmt.anchorHref()):
                own.append((fragment.position(), fragment.length(), fmt))
            it += 1
        block = block.next()
    cursor = QTextCursor(doc)
    for position, length, fmt in own:  # collected first: changing formats merges fragments
        plain = QTextCharFormat(fmt)
        plain.setAnchor(False)
        plain.setAnchorHref("")
        plain.clearForeground()
        plain.setFontUnderline(False)
        cursor.setPosition(position)
        cursor.setPosition(position + length, QTextCursor.MoveMode.KeepAnchor)
        cursor.setCharFormat(plain)
    for block in long_code:
        wrapping = block.blockFormat()
        wrapping.setNonBreakableLines(False)
        QTextCursor(block).setBlockFormat(wrapping)


def _plain_reason(text: str) -> str | None:
    """Why an answer of at most FOLD_CHARS characters is not rendered as Markdown (None: it is).
    Looks at the source only, so the costly cases never reach the parser."""
    if text.count("\n") >= RICH_LINES:
        return f"it has over {RICH_LINES} lines"
    # split() rather than a regex: \S{N} is retried at every position, N times the text's length
    if any(len(word) >= RUN_CHARS for word in text.split()):
        return f"it has a run of over {RUN_CHARS} characters without a space"
    if len(_MARKS.findall(text)) > RICH_MARKS:
        return "it has too much Markdown markup"
    cells = 0
    fenced = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and "|" in line:
            cells += max(1, len(line.strip().strip("|").split("|")))
    if cells > RICH_CELLS:
        return f"its tables have about {cells} cells"
    return None


def _folds(text: str) -> bool:
    return len(text) > FOLD_CHARS or text.count("\n") >= FOLD_LINES


def _preview_end(text: str) -> int:
    """Where the shown part of folded text ends: after PREVIEW_LINES lines, or at the last line
    break (else space) in the second half of PREVIEW_CHARS, so that the fold falls between lines
    or words, or at PREVIEW_CHARS."""
    end = min(len(text), PREVIEW_CHARS)
    nth = -1
    for _ in range(PREVIEW_LINES):
        nth = text.find("\n", nth + 1, end)
        if nth < 0:
            break
    else:
        return nth
    if end == len(text):
        return end
    newline = text.rfind("\n", end // 2, end)
    if newline >= 0:
        return newline
    space = text.rfind(" ", end // 2, end)
    return space + 1 if space >= 0 else end


def _slice_end(text: str, start: int) -> int:
    end = min(len(text), start + SLICE_CHARS)
    if text.count("\n", start, end) > SLICE_LINES:
        end = start
        for _ in range(SLICE_LINES):
            end = text.index("\n", end) + 1
    return end


def _hard_wrap(text: str, used: int = 0, limit: int = BLOCK_CHARS) -> tuple[str, int]:
    """``text`` with line breaks added so that no line, counting ``used`` characters already on
    the current line, is longer than ``limit``; a break goes after a space in the last quarter of
    the line when there is one. Returns the text and the length of its last line."""
    out: list[str] = []
    for n, line in enumerate(text.split("\n")):
        if n:
            out.append("\n")
            used = 0
        start = 0
        while used + len(line) - start > limit:
            end = start + limit - used
            space = line.rfind(" ", max(start, end - limit // 4), end)
            cut = space + 1 if space >= start else end
            out.append(line[start:cut])
            out.append("\n")
            start, used = cut, 0
        out.append(line[start:])
        used += len(line) - start
    return "".join(out), used


def _size(chars: int) -> str:
    if chars >= 1_000_000:
        return f"{chars / 1_000_000:.1f} MB"
    if chars >= 1000:
        return f"{chars / 1000:.0f} KB"
    return f"{chars} characters"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _number(value: Any, spec: str = "") -> str | None:
    # Stats come from the server: anything but a number is left out rather than shown or raised on.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return format(value, spec)


def _stats_line(t: TurnRecord) -> str:
    s = t.stats
    bits = []
    if s.get("tokens_per_second") and (v := _number(s["tokens_per_second"], ".1f")):
        bits.append(f"{v} tok/s")
    if (v := _number(s.get("time_to_first_token_seconds"), ".2f")) is not None:
        bits.append(f"first token {v} s")
    if (v := _number(s.get("input_tokens"))) is not None:
        bits.append(f"{v} in")
    if (v := _number(s.get("total_output_tokens"))) is not None:
        bits.append(f"{v} out")
    if (v := _number(s.get("model_load_time_seconds"), ".1f")) is not None:
        bits.append(f"model load {v} s")
    return " · ".join(bits)


@dataclass
class _Fill:
    """The rest of folded text going into the document, a slice per turn of the event loop."""

    key: tuple[int, str]
    text: str
    offset: int
    cursor: QTextCursor
    """At the end of what has been inserted so far."""
    fold: QTextCursor
    """In the fold paragraph, which shows progress and goes when all is in."""
    fmt: QTextCharFormat
    used: int = 0
    started: bool = False


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
        # Long lines wrap at the widget's width, anywhere when there is no space: nothing ever
        # scrolls sideways. These are QTextEdit's defaults; the cost limits above rely on them.
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        # A scroll bar that comes and goes changes the width, and Qt then lays out the whole
        # document again (measured: as long again as showing it). Always there, it never does.
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        # The view is read-only: an undo history would only keep a copy of every streamed delta.
        self.document().setUndoRedoEnabled(False)
        self.anchorClicked.connect(self._on_anchor_clicked)
        self.expanded: set[int] = set()
        self.shown_all: set[tuple[int, str]] = set()
        """(turn id, "answer" | "reasoning" | "question") unfolded by "Show all"."""
        self.shown = PAGE
        self._answers: dict[tuple[int, str], str] = {}
        self._turns: list[TurnRecord] = []
        self._siblings: dict[int, SiblingInfo] = {}
        self._first = 0
        """Index in ``_turns`` of the first turn in the document."""
        self._target = 0
        """Index of the first turn the page is to show; turns before it are behind "Show more"."""
        self._head = False
        """Whether the first block is the "earlier turns not shown" paragraph."""
        self._stream_turn: int | None = None
        self._stream_start: QTextCursor | None = None
        self._stream_kind: str | None = None
        self._stream_used = 0
        self._pending: list[tuple[str, str]] = []
        self._flush = QTimer(self)
        self._flush.setInterval(FLUSH_MS)
        self._flush.timeout.connect(self.flush)
        self._fills: list[_Fill] = []
        # One bounded step of pending work per turn of the event loop. Not 0 ms: Qt runs a zero
        # timer again and again in one pass (measured: three steps back to back, 28 ms), 1 ms
        # lets input, paint and the stream's timers in between.
        self._work = QTimer(self)
        self._work.setInterval(1)
        self._work.timeout.connect(self._work_step)
        self._plain_block = QTextBlockFormat()
        self._turn_block = QTextBlockFormat()
        self._turn_block.setTopMargin(12)
        self._text_fmt = QTextCharFormat()
        # Answers shown as plain text are in the fixed font: a table's source then lines up, and
        # it is plain that this is the raw text. The HTML and "Show all" use the same family.
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
        self._mono_fmt = QTextCharFormat()
        self._mono_fmt.setFontFamilies([self._mono])
        self._reasoning_fmt = QTextCharFormat()
        self._reasoning_fmt.setForeground(QColor("#777777"))
        self._reasoning_fmt.setFontItalic(True)
        self._note_fmt = QTextCharFormat()
        self._note_fmt.setForeground(QColor("gray"))

    # WORKAROUND: QTextBrowser fetches <img src> and stylesheets through loadResource; nothing a
    # server wrote may load anything, so every resource is refused.
    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        return None

    @property
    def filling(self) -> bool:
        """Whether turns or "Show all" text are still going into the document."""
        return bool(self._fills) or self._first > self._target

    def _on_anchor_clicked(self, url: QUrl) -> None:
        if url.scheme() != _OWN_SCHEME:
            return  # links in answers are shown, never followed
        what, _, turn = url.path().partition("/")
        if what == "earlier":
            self._show_earlier()
            return
        if not (turn.isascii() and turn.isdigit()):
            return
        turn_id = int(turn)
        if not any(t.id == turn_id for t in self._turns[self._first :]):
            return  # lmgui shows controls only for turns in the document: anything else is forged
        if what in _SHOW_ALL:
            self._show_all((turn_id, _SHOW_ALL[what]))
        elif what in _ACTIONS:
            self.action.emit(what, turn_id)

    # ------------------------------------------------------------------ whole branches

    def show_branch(
        self, turns: list[TurnRecord], siblings: dict[int, SiblingInfo], *, keep_page: bool = False
    ) -> None:
        """The newest turns of a branch (``PAGE`` of them, more on request): opening any thread
        costs the same, however long it is. At most ``STEP_HTML`` of it is rendered at once; the
        older turns of the page follow in later turns of the event loop."""
        if not keep_page:
            self.shown = PAGE
        self._turns = list(turns)
        self._siblings = dict(siblings)
        self._stream_turn = None
        self._stream_start = None
        self._pending.clear()
        self._fills.clear()
        self._target = max(0, len(turns) - self.shown)
        self._first, body = self._render_back(len(turns), self._target)
        self._head = self._target > 0
        self.setHtml((self._head_html() if self._head else "") + body)
        self._resume_folds()
        self._work.start()
        if not keep_page:
            self.moveCursor(QTextCursor.MoveOperation.End)
            self.ensureCursorVisible()

    def _render_back(self, end: int, stop: int) -> tuple[int, str]:
        """HTML for turns before index ``end`` (down to ``stop``), newest first, until
        STEP_HTML characters (at least one turn). Returns the first index rendered and the HTML."""
        pieces: list[str] = []
        size = 0
        first = end
        while first > stop:
            piece = self._turn_html(self._turns[first - 1])
            if pieces and size + len(piece) > STEP_HTML:
                break
            pieces.append(piece)
            size += len(piece)
            first -= 1
        return first, "".join(reversed(pieces))

    def _head_html(self) -> str:
        return f"<p>{self._head_inner()}</p>"

    def _head_inner(self) -> str:
        hidden = self._target
        return (
            f'<span style="color:gray">{hidden} earlier turn{"s" * (hidden > 1)} not shown. '
            f'</span><a href="lmgui:earlier/0">Show {min(PAGE, hidden)} more</a>'
        )

    def _show_earlier(self) -> None:
        if self._target == 0:
            return
        self._target = max(0, self._target - PAGE)
        self.shown = len(self._turns) - self._target
        cursor = QTextCursor(self.document())
        if self._target:
            cursor.movePosition(
                QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor
            )
            cursor.insertHtml(self._head_inner())
        else:  # nothing earlier: the paragraph goes
            second = self.document().findBlockByNumber(1).position()
            cursor.setPosition(second, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            self._head = False
        self._prepend_step()  # the first step at once, so that the click shows something
        self.moveCursor(QTextCursor.MoveOperation.Start)
        self.verticalScrollBar().setValue(0)  # the earliest turns, as they come in
        self._work.start()

    def _prepend_step(self) -> None:
        """The next older turns of the page, above those shown, the view kept where it was."""
        first, body = self._render_back(self._first, self._target)
        if first == self._first:
            return
        doc = self.document()
        bar = self.verticalScrollBar()
        at_top = bar.value() == 0
        from_bottom = bar.maximum() - bar.value()
        cursor = QTextCursor(doc)
        cursor.setPosition(doc.findBlockByNumber(1 if self._head else 0).position())
        cursor.beginEditBlock()
        # An empty block of its own to insert into: inserted HTML merges its first and last
        # blocks with the block at the cursor (the <hr> would join the next turn's first line).
        cursor.insertBlock()
        cursor.movePosition(QTextCursor.MoveOperation.PreviousBlock)
        cursor.insertHtml(body)
        cursor.endEditBlock()
        ids = {t.id for t in self._turns[first : self._first]}
        self._first = first
        self._resume_folds(ids)
        if not at_top:  # at the top, the turns going in are what the reader waits for
            bar.setValue(bar.maximum() - from_bottom)

    def _answer_html(self, t: TurnRecord) -> str:
        key = (t.id, t.text)
        cached = self._answers.get(key)
        if cached is None:
            cached = self._render_answer(t)
            self._answers[key] = cached
        return cached

    def _render_answer(self, t: TurnRecord) -> str:
        text = t.text
        if not text:
            return ""
        mono = f" font-family:'{_esc(self._mono)}';"
        if _folds(text):
            return self._plain_html(t, "answer", text, mono)
        reason = _plain_reason(text)
        if reason is None:
            rich = markdown_html(text)
            if len(rich) <= RICH_HTML:
                return rich
            reason = "it is too long to lay out as Markdown at once"
        return self._plain_html(t, "answer", text, mono) + (
            f'<p style="color:gray; font-size:small">Shown as plain text: {_esc(reason)}.</p>'
        )

    def _plain_html(self, t: TurnRecord, part: str, text: str, style: str) -> str:
        """Text as plain paragraphs of at most BLOCK_CHARS; folded past FOLD_CHARS/FOLD_LINES."""
        folded = _folds(text)
        shown = text[: _preview_end(text)] if folded else text
        out = (
            f'<p style="margin-top:0px; margin-bottom:0px; white-space:pre-wrap;{style}">'
            f"{_esc(_hard_wrap(shown)[0])}</p>"
        )
        if folded:
            what = next(w for w, p in _SHOW_ALL.items() if p == part)
            out += (
                f'<p style="color:gray">… {_size(len(text) - len(shown))} more '
                f"({_size(len(text))} in all, shown as plain text). "
                f'<a href="lmgui:{what}/{t.id}">Show all</a></p>'
            )
        return out

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
            self._plain_html(t, "question", t.user_text, ""),
        ]
        for item in t.input:
            if item.get("type") == "image":
                mime = _esc(_short(str(item.get("mime"))))
                parts.append(f'<p style="color:gray">[image, {mime}]</p>')
        who = _esc(_short(t.instance_id or t.model))
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
                style = " color:#666; font-style:italic;"
                parts.append(self._plain_html(t, "reasoning", t.reasoning, style))
        for item in t.output:
            if item.get("type") == "tool_call":
                args = _esc(_short(item.get("arguments")))
                result = _esc(_short(item.get("output")))
                tool = _esc(_short(str(item.get("tool"))))
                parts.append(
                    f'<p style="color:#555">⚙ Tool call <b>{tool}</b> {args} → {result}</p>'
                )
            elif item.get("type") == "invalid_tool_call":
                reason = _esc(_short(str(item.get("reason")), 400))
                parts.append(f'<p style="color:#8a5a00">⚠ Invalid tool call: {reason}</p>')
        parts.append(self._answer_html(t))
        if t.status == "stopped":
            parts.append('<p style="color:#8a5a00">(stopped)</p>')
        elif t.status == "interrupted":
            parts.append('<p style="color:#8a5a00">(interrupted: the answer was cut off)</p>')
        elif t.status == "error":
            parts.append(f'<p style="color:#b00020">{_esc(_short(t.error or "error", 2000))}</p>')
        meta = [_stats_line(t)]
        if t.response_id:
            meta.append(f'<a href="lmgui:copy-id/{t.id}">{_esc(_short(t.response_id))}</a>')
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

    # ------------------------------------------------------------------ Show all

    def _show_all(self, key: tuple[int, str]) -> None:
        if key in self.shown_all:
            return
        self.shown_all.add(key)
        self._resume_folds({key[0]})
        self._work.start()

    def _resume_folds(self, turn_ids: set[int] | None = None) -> None:
        """Start filling in the folds of ``shown_all`` text in the document (of some turns)."""
        wanted = {
            f"lmgui:{what}/{turn_id}": (turn_id, part)
            for turn_id, part in self.shown_all
            if turn_ids is None or turn_id in turn_ids
            for what, p in _SHOW_ALL.items()
            if p == part
        }
        if not wanted:
            return
        block = self.document().begin()
        while block.isValid() and wanted:
            if "Show all" in block.text():
                it = block.begin()
                while not it.atEnd():
                    key = wanted.pop(it.fragment().charFormat().anchorHref(), None)
                    if key is not None:
                        self._start_fill(key, block)
                    it += 1
            block = block.next()

    def _start_fill(self, key: tuple[int, str], fold_block: QTextBlock) -> None:
        t = self.turn(key[0])
        if t is None:
            return
        text = {"answer": t.text, "reasoning": t.reasoning, "question": t.user_text}[key[1]]
        start = _preview_end(text)
        if text[start : start + 1] == "\n":
            start += 1  # the fold fell on a line break, which the new block stands for
        cursor = QTextCursor(self.document())
        cursor.setPosition(fold_block.position() - 1)  # the end of the preview's last block
        fold = QTextCursor(fold_block)
        fmt = {"answer": self._mono_fmt, "reasoning": self._reasoning_fmt}.get(
            key[1], self._text_fmt
        )
        self._fills.append(_Fill(key, text, start, cursor, fold, fmt))
        self._progress(self._fills[-1])

    def _progress(self, fill: _Fill) -> None:
        fold = fill.fold
        fold.movePosition(QTextCursor.MoveOperation.StartOfBlock)
        fold.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
        left = len(fill.text) - fill.offset
        fold.insertText(f"… showing all: {_size(left)} to go", self._note_fmt)

    def _fill_step(self, fill: _Fill) -> bool:
        """One slice of ``fill``; True when it is complete."""
        end = _slice_end(fill.text, fill.offset)
        piece, fill.used = _hard_wrap(fill.text[fill.offset : end], fill.used)
        cursor = fill.cursor
        bar = self.verticalScrollBar()
        from_bottom = bar.maximum() - bar.value()
        above = self.cursorRect(cursor).bottom() < 0  # above the viewport: keep what is seen
        cursor.beginEditBlock()
        if not fill.started:
            cursor.insertBlock(self._plain_block, fill.fmt)
            fill.started = True
        cursor.insertText(piece, fill.fmt)
        cursor.endEditBlock()
        if above:
            bar.setValue(bar.maximum() - from_bottom)
        fill.offset = end
        if fill.offset < len(fill.text):
            self._progress(fill)
            return False
        fold = fill.fold.block()
        cursor.setPosition(fold.position() + fold.length() - 1, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()  # the fold paragraph, and the line break before it
        return True

    def _work_step(self) -> None:
        """One bounded piece of pending work: a slice of "Show all" text, or older turns."""
        if self._fills:
            if self._fill_step(self._fills[0]):
                self._fills.pop(0)
        elif self._first > self._target:
            self._prepend_step()
        else:
            self._work.stop()

    # ------------------------------------------------------------------ streaming

    def begin_stream(self, turn: TurnRecord) -> None:
        """Show the user's turn and an answer that grows at the end of the document."""
        self.flush()
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not self.document().isEmpty():
            # A block of its own: HTML inserted into the last one (the <hr>) would merge with it.
            cursor.insertBlock(self._turn_block, self._text_fmt)
        start = cursor.position()
        cursor.insertHtml(self._turn_html(turn, streaming=True))
        cursor.insertBlock(self._plain_block, self._text_fmt)
        self._stream_start = QTextCursor(self.document())
        self._stream_start.setPosition(start)
        self._stream_turn = turn.id
        self._stream_kind = None
        self._stream_used = 0
        self._flush.start()
        self._scroll_to_end()

    def append_delta(self, kind: str, text: str) -> None:
        self._pending.append((kind, text))

    def flush(self) -> None:
        """The batched deltas, at the end, in blocks of at most BLOCK_CHARS: the one block that
        grows is all Qt lays out again."""
        if not self._pending or self._stream_turn is None:
            return
        pending, self._pending = self._pending, []
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()
        for kind, text in pending:
            fmt = self._reasoning_fmt if kind == "reasoning" else self._text_fmt
            if kind != self._stream_kind:
                if self._stream_kind is not None:
                    cursor.insertBlock(self._plain_block, fmt)
                self._stream_kind = kind
                self._stream_used = 0
            piece, self._stream_used = _hard_wrap(text, self._stream_used)
            cursor.insertText(piece, fmt)
        cursor.endEditBlock()
        self._scroll_to_end()

    def note(self, text: str) -> None:
        """A line of progress in the streaming turn (model loading...)."""
        self.append_delta("note", _short(text, 400) + "\n")

    def end_stream(self, turn: TurnRecord, siblings: dict[int, SiblingInfo] | None = None) -> None:
        """Replace the streamed text with the finished turn, rendered."""
        self._flush.stop()
        self._pending.clear()
        if siblings is not None:
            self._siblings = dict(siblings)
        cursor = QTextCursor(self.document())
        if self._stream_start is not None:
            cursor.setPosition(self._stream_start.position())
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.insertHtml(self._turn_html(turn))
        self._turns.append(turn)
        self._stream_turn = None
        self._stream_start = None
        self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def turn(self, turn_id: int) -> TurnRecord | None:
        return next((t for t in self._turns if t.id == turn_id), None)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
