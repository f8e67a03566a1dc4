"""The transcript against hostile answers: huge lines, huge tables, forged lmgui links.

What is checked is what a user sees and can do (folded text with a Show all control, every block
short, nothing to scroll sideways, a forged control that does nothing); the times are measured by
``bench/transcript.py``, never asserted here.
"""

from __future__ import annotations

import random

import pytest
from PySide6.QtCore import QPoint, Qt, QUrl
from PySide6.QtGui import QTextCursor, QTextDocument, QTextOption, QTextTable
from PySide6.QtWidgets import QTextEdit
from pytestqt.qtbot import QtBot

from lmgui.core.chat_store import TurnRecord
from lmgui.ui.chat_view import (
    BLOCK_CHARS,
    FOLD_CHARS,
    PAGE,
    PREVIEW_CHARS,
    SiblingInfo,
    TranscriptView,
)


def record(
    turn_id: int,
    answer: str,
    *,
    question: str = "Show me.",
    reasoning: str = "",
    status: str = "complete",
    stats: dict[str, object] | None = None,
    response_id: str | None = None,
) -> TurnRecord:
    output = [{"type": "reasoning", "content": reasoning}] if reasoning else []
    output += [{"type": "message", "content": answer}] if answer else []
    return TurnRecord(
        id=turn_id,
        thread_id=1,
        parent_id=turn_id - 1 or None,
        input=[{"type": "text", "content": question}],
        output=output,
        stats=stats or {},
        response_id=response_id or f"resp_{turn_id}",
        model="m",
        instance_id="m",
        settings={},
        status=status,
        error=None,
        created=0.0,
        completed=1.0,
    )


def no_spaces(n: int) -> str:
    """Hex digits: no space and no other place where a line may break."""
    return random.Random(n).randbytes(n // 2 + 1).hex()[:n]


def make_view(qtbot: QtBot) -> TranscriptView:
    view = TranscriptView()
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    return view


def blocks(view: TranscriptView) -> list[str]:
    out = []
    block = view.document().begin()
    while block.isValid():
        out.append(block.text())
        block = block.next()
    return out


def links(view: TranscriptView) -> list[tuple[int, str, str]]:
    """(position, text, href) of every link in the document."""
    out = []
    block = view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            fmt = fragment.charFormat()
            if fmt.isAnchor() and fmt.anchorHref():
                out.append((fragment.position(), fragment.text(), fmt.anchorHref()))
            it += 1
        block = block.next()
    return out


def actions(view: TranscriptView) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    view.action.connect(lambda what, turn: seen.append((what, turn)))
    return seen


def tables(doc: QTextDocument) -> int:
    return sum(isinstance(f, QTextTable) for f in doc.rootFrame().childFrames())


def click_text(qtbot: QtBot, view: TranscriptView, cursor: QTextCursor) -> None:
    """A real mouse click in the middle of the text ``cursor`` selects."""
    middle = QTextCursor(view.document())
    middle.setPosition((cursor.selectionStart() + cursor.selectionEnd()) // 2)
    view.setTextCursor(middle)
    view.ensureCursorVisible()
    rect = view.cursorRect(middle)
    where = QPoint(rect.center().x(), rect.center().y())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=where)


# ---------------------------------------------------------------------- long lines


def test_long_lines_wrap_anywhere_and_nothing_scrolls_sideways(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    assert view.wordWrapMode() == QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere
    assert view.lineWrapMode() == QTextEdit.LineWrapMode.WidgetWidth
    wrap = view.document().defaultTextOption().wrapMode()
    assert wrap == QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere
    code = "```\n" + "x = 1  # " + "y" * 3000 + "\n```\n"  # a code line, too long to read
    view.show_branch([record(1, no_spaces(20_000)), record(2, code)], {})
    assert no_spaces(20_000) in view.toPlainText().replace("\n", "")
    assert view.horizontalScrollBar().maximum() == 0  # every line fits the width
    assert max(map(len, blocks(view))) <= BLOCK_CHARS


def test_a_1mb_line_is_folded_and_show_all_shows_all_of_it(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    huge = no_spaces(1_000_000)
    view.show_branch([record(1, "A short first answer."), record(2, huge)], {})
    text = view.toPlainText()
    assert len(text) < PREVIEW_CHARS + 2000  # the preview and the turns around it
    assert huge[:1000] in text.replace("\n", "")
    assert "shown as plain text" in text and "MB in all" in text
    [show_all] = [link for link in links(view) if link[1] == "Show all"]
    assert show_all[2].startswith("lmgui:show-all/2")

    seen = actions(view)
    view.anchorClicked.emit(QUrl(show_all[2]))
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    assert huge in view.toPlainText().replace("\n", "")
    assert "Show all" not in view.toPlainText()
    assert max(map(len, blocks(view))) <= BLOCK_CHARS
    assert view.horizontalScrollBar().maximum() == 0
    assert seen == []  # Show all is the view's own business, no action for the pane

    # Opening the thread again keeps it unfolded, filled in again in the background.
    view.show_branch([record(1, "A short first answer."), record(2, huge)], {})
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    assert huge in view.toPlainText().replace("\n", "")


def test_streaming_a_long_line_keeps_every_block_short(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    view.show_branch([record(1, "Earlier answer.")], {})
    line = no_spaces(200_000)
    view.begin_stream(record(2, ""))
    for start in range(0, len(line), 100):
        view.append_delta("message", line[start : start + 100])
        if start % 2000 == 0:
            view.flush()  # what the 50 ms timer does
    view.flush()
    assert max(map(len, blocks(view))) <= BLOCK_CHARS
    assert line in view.toPlainText().replace("\n", "")

    view.end_stream(record(2, line))
    assert max(map(len, blocks(view))) <= BLOCK_CHARS
    shown = view.toPlainText()
    assert "Earlier answer." in shown and "Show all" in shown and "Continue from here" in shown


def test_a_streamed_line_breaks_at_a_space_when_there_is_one(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    view.begin_stream(record(1, ""))
    words = "word " * 1000
    view.append_delta("message", words)
    view.flush()
    streamed = [b for b in blocks(view) if b.startswith("word")]
    assert len(streamed) > 1
    assert all(b.endswith("word ") for b in streamed[:-1])  # no word cut in two
    assert max(map(len, streamed)) <= BLOCK_CHARS


# ---------------------------------------------------------------------- big tables


def test_a_2000_row_table_is_shown_folded_as_plain_text(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    rows = "".join(f"| {i} | item {i} | {i * 7} |\n" for i in range(2000))
    view.show_branch([record(1, "| # | name | value |\n|---|---|---|\n" + rows)], {})
    assert tables(view.document()) == 0  # not laid out as a table
    text = view.toPlainText()
    assert "| 5 | item 5 | 35 |" in text and "| 1999 |" not in text
    assert "Show all" in text and "shown as plain text" in text

    view.anchorClicked.emit(QUrl("lmgui:show-all/1"))
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    assert "| 1999 | item 1999 | 13993 |" in view.toPlainText()
    assert tables(view.document()) == 0


def test_a_table_just_too_big_is_plain_text_with_a_reason(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    rows = "".join(f"| {i} | item {i} | {i * 7} |\n" for i in range(150))  # 450 cells
    view.show_branch([record(1, "| # | name | value |\n|---|---|---|\n" + rows)], {})
    assert tables(view.document()) == 0
    text = view.toPlainText()
    assert "| 149 | item 149 | 1043 |" in text  # all of it: it is not long enough to fold
    assert "Show all" not in text
    assert "Shown as plain text: its tables have about" in text


def test_ordinary_markdown_is_still_rendered(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    answer = "Some **bold** text.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n- two\n"
    view.show_branch([record(1, answer)], {})
    assert tables(view.document()) == 1
    text = view.toPlainText()
    assert "**" not in text and "Some bold text." in text
    assert "Shown as plain text" not in text


def test_long_reasoning_and_a_long_question_fold_too(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    turn = record(1, "ok", question="q" * 100_000, reasoning="thinking " * 20_000)
    view.expanded.add(1)
    view.show_branch([turn], {})
    hrefs = [href for _, text, href in links(view) if text == "Show all"]
    assert hrefs == ["lmgui:show-all-question/1", "lmgui:show-all-reasoning/1"]
    assert len(view.toPlainText()) < 3 * PREVIEW_CHARS
    view.anchorClicked.emit(QUrl("lmgui:show-all-reasoning/1"))
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    assert view.toPlainText().count("thinking") == 20_000
    assert [text for _, text, _ in links(view) if text == "Show all"] == ["Show all"]


# ---------------------------------------------------------------------- long threads


def test_a_thread_of_long_answers_opens_at_its_newest_turns(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    answer = "A paragraph of an ordinary answer, with **some** Markdown.\n\n" * 60
    turns = [record(n, f"Answer {n}.\n\n{answer}", question=f"question {n}") for n in range(1, 101)]
    view.show_branch(turns, {})
    assert "question 100" in view.toPlainText()  # the newest at once
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    text = view.toPlainText()
    assert "question 61\n" in text and "question 60\n" not in text
    assert text.startswith(f"{100 - PAGE} earlier turns not shown")
    bar = view.verticalScrollBar()
    assert bar.maximum() - bar.value() < 50  # still at the end, where the newest turn is

    view.anchorClicked.emit(QUrl("lmgui:earlier/0"))
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    text = view.toPlainText()
    assert "question 21\n" in text and "question 20\n" not in text
    assert text.startswith("20 earlier turns not shown")
    assert view.verticalScrollBar().value() == 0  # at the earliest turns, as before


def test_show_all_filled_in_again_above_the_reader_does_not_move_the_view(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    turns = [record(1, no_spaces(300_000))] + [
        record(n, "An answer.\n\n" * 40) for n in range(2, 8)
    ]
    view.show_branch(turns, {})
    view.anchorClicked.emit(QUrl("lmgui:show-all/1"))
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    view.show_branch(turns, {})  # the thread opened again: the newest turn is shown
    bar = view.verticalScrollBar()
    assert bar.maximum() - bar.value() < 50
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    assert no_spaces(300_000) in view.toPlainText().replace("\n", "")
    assert bar.maximum() - bar.value() < 50  # still there, though 300 KB went in above it


# ---------------------------------------------------------------------- forged links

FORGED = (
    "Please [FORGED continue](lmgui:continue/1), or <lmgui:copy/1>, or [FORGED ref][r],"
    " or [FORGED entity](&#108;mgui:copy-id/1), or [FORGED caps](LMGUI:Continue/1),"
    " or [![FORGED image](x.png)](lmgui:continue/1). A real site: [docs](https://example.com)."
    "\n\n[r]: lmgui:sibling-next/1\n"
)


# QTest reports a click that no widget acted on: here that is the point.
@pytest.mark.qt_log_ignore("Mouse event .* not accepted by receiving widget")
def test_forged_lmgui_links_in_an_answer_are_plain_text_and_do_nothing(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    seen = actions(view)
    siblings = {1: SiblingInfo(1, 2, None, 2)}
    view.show_branch([record(1, FORGED)], siblings)
    doc = view.document()
    text = view.toPlainText()
    assert "FORGED continue" in text and "lmgui:copy/1" in text  # shown, as text

    # The only lmgui: links are lmgui's own controls, after the answer.
    own = [(pos, href) for pos, _, href in links(view) if "mgui:" in href.lower()]
    answer_end = doc.find("A real site").selectionEnd()
    forged = [(pos, href) for pos, href in own if pos < answer_end and "sibling" not in href]
    assert all(not QUrl(href).scheme() for _, href in forged)  # at most an inert relative link
    assert {href for pos, href in own if pos > answer_end} == {
        "lmgui:copy-id/1",
        "lmgui:copy/1",
        "lmgui:continue/1",
    }
    for word in ("FORGED continue", "FORGED ref", "FORGED caps"):
        found = doc.find(word)
        assert not found.charFormat().isAnchor(), word

    # Activating whatever link the answer holds does nothing; nor does a real click on it.
    for pos, _, href in links(view):
        if pos < answer_end and "sibling" not in href:
            view.anchorClicked.emit(QUrl(href))
    for word in ("FORGED continue", "FORGED ref", "FORGED entity", "FORGED caps"):
        click_text(qtbot, view, doc.find(word))
    assert seen == []


def test_lmgui_own_controls_still_act(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    seen = actions(view)
    turns = [record(1, FORGED, reasoning="because"), record(2, "Second.")]
    view.show_branch(turns, {2: SiblingInfo(1, 2, None, 3), 1: SiblingInfo(2, 2, 9, None)})
    for _, _, href in links(view):
        if href.startswith("lmgui:"):
            view.anchorClicked.emit(QUrl(href))
    assert sorted(seen) == sorted(
        [
            ("sibling-prev", 1),
            ("reasoning", 1),
            ("copy-id", 1),
            ("copy", 1),
            ("continue", 1),
            ("sibling-next", 2),
            ("copy-id", 2),
            ("copy", 2),
            ("continue", 2),
        ]
    )
    seen.clear()
    doc = view.document()
    copy = doc.find("Copy", doc.find("Second.").selectionEnd())
    click_text(qtbot, view, copy)  # a real click on the real control
    assert seen == [("copy", 2)]


def test_controls_for_turns_not_shown_do_nothing(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    seen = actions(view)
    view.show_branch([record(n, f"answer {n}") for n in range(1, PAGE + 6)], {})
    qtbot.waitUntil(lambda: not view.filling, timeout=20_000)
    view.anchorClicked.emit(QUrl("lmgui:continue/3"))  # behind "Show more"
    view.anchorClicked.emit(QUrl("lmgui:copy/999"))  # no such turn
    view.anchorClicked.emit(QUrl("lmgui:delete/10"))  # no such action
    assert seen == []
    view.anchorClicked.emit(QUrl("lmgui:continue/10"))
    assert seen == [("continue", 10)]


# ---------------------------------------------------------------------- server strings


def test_odd_server_fields_neither_break_nor_flood_the_transcript(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    turn = record(
        1,
        "ok",
        stats={"tokens_per_second": "fast", "input_tokens": "x" * 10_000, "total_output_tokens": 7},
        response_id="r" * 100_000,
    )
    view.show_branch([turn], {})
    text = view.toPlainText()
    assert "7 out" in text and "fast" not in text and "x" * 100 not in text
    assert len(text) < 1000
    assert len(text) < FOLD_CHARS
