"""How long the chat transcript stalls the GUI thread on hostile answers (never asserted in tests).

    .venv/bin/python bench/transcript.py                  # the working tree's TranscriptView
    .venv/bin/python bench/transcript.py --against HEAD   # the view as committed at HEAD
    ... --json, --only line200k,table2000, --rate-ms 5, --repeat 3 (median and worst of 3 runs)

Each case puts one answer into a 900x700 ``TranscriptView`` (offscreen) after two ordinary turns,
the way the chat pane does, and measures the longest gap of a 1 ms timer on the GUI thread (how
long the event loop stalled) from the call until the view is idle again (300 ms of quiet):

- finished: ``begin_stream`` then ``end_stream`` with the whole answer (a turn finishing);
- show_branch: the thread opened (``show_branch``) with that turn last;
- show_all: the turn's "Show all" control clicked, until the whole answer is in the document;
- stream: the answer streamed in 100-character deltas (one every ``--rate-ms``, the view's own
  50 ms flush batching), then ``end_stream``. GUI-thread CPU time for the whole stream is given.

Cases: line200k and line1m are hex digits with no space or other break opportunity (a hash or a
blob dump, a model stuck on one token; base64 is kinder to Qt because ``/`` and ``+`` allow a
break); table2000 is a 2000-row, 4-column Markdown table; normal40 is a 40-turn thread of ordinary
3 KB Markdown answers, to check that nothing ordinary got slower; markdown is one turn of each
Markdown shape that is costly for Qt (headings, long lists, code spans, links, entities, a table,
long runs), each at the limits of what the view still renders as Markdown. Target: no stall over
50 ms. A stall is a maximum, so anything else busy on the machine inflates it: use --repeat.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("QT_API", "pyside6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer, QUrl
from PySide6.QtWidgets import QApplication, QTextBrowser

from lmgui.core.chat_store import TurnRecord

ROOT = Path(__file__).resolve().parent.parent
QUIET_MS = 300
"""How long the loop must run after an action before it counts as finished (lazy layout, paint)."""

NORMAL = """## Part {i}

The **KV cache** grows with the context length, and `n_ctx` sets its size. A longer context costs
memory: roughly *two* vectors per layer per token, so halving the precision halves it.

- a first point about {i}, with `inline code`
- a second point, a little longer, on why quantisation helps on small GPUs

```python
def size(tokens: int) -> int:
    return tokens * {i}  # bytes per token
```

"""


def hex_line(n: int) -> str:
    return random.Random(n).randbytes(n // 2 + 1).hex()[:n]


def table(rows: int) -> str:
    head = "| # | name | value | note |\n|---|---|---|---|\n"
    return head + "".join(f"| {i} | item {i} | {i * 7} | some text |\n" for i in range(rows))


def normal_answer(n: int) -> str:
    out, i = "", 0
    while len(out) < n:
        out += NORMAL.format(i=i)
        i += 1
    return out


def markdown_edges() -> dict[str, str]:
    """Markdown shapes that are costly for Qt, each as big as the view still renders as Markdown
    (just under its limits), or just over (then it is shown as plain text)."""
    from lmgui.ui.chat_view import FOLD_CHARS, RICH_CELLS, RICH_LINES, RICH_MARKS, RUN_CHARS

    lines = RICH_LINES - 1
    return {
        "prose": normal_answer(FOLD_CHARS - 100),
        "headings": "# heading\n" * lines,
        "numbered": "".join(f"{i}. item\n" for i in range(lines)),
        "bullets": "- item\n" * lines,
        "code lines": "```\n" + "x = 1\n" * (lines - 2) + "```\n",
        "code spans": "`a` " * (RICH_MARKS // 2),
        "links": "[a](http://x) " * (RICH_MARKS // 2),
        "bold": "**a** " * (RICH_MARKS // 4),
        "entities": "&amp; " * RICH_MARKS,
        "table": "| a | b | c | d |\n|---|---|---|---|\n"
        + "| 1 | 2 | 3 | 4 |\n" * (RICH_CELLS // 4 - 2),
        "runs": (("y" * (RUN_CHARS - 1) + " ") * (FOLD_CHARS // RUN_CHARS))[: FOLD_CHARS - 1],
        "one-char lines": "a\n" * lines,
    }


CASES: dict[str, Callable[[], str]] = {
    "line200k": lambda: hex_line(200_000),
    "line1m": lambda: hex_line(1_000_000),
    "table2000": lambda: table(2000),
}


def record(turn_id: int, answer: str, *, question: str = "Show me the data.") -> TurnRecord:
    return TurnRecord(
        id=turn_id,
        thread_id=1,
        parent_id=turn_id - 1 or None,
        input=[{"type": "text", "content": question}],
        output=[{"type": "message", "content": answer}] if answer else [],
        stats={"tokens_per_second": 42.0, "input_tokens": 100, "total_output_tokens": 900},
        response_id=f"resp_{turn_id}",
        model="google/gemma-3-270m",
        instance_id="google/gemma-3-270m",
        settings={},
        status="complete" if answer else "streaming",
        error=None,
        created=time.time(),
        completed=time.time(),
    )


def load_view_class(against: str | None) -> type[Any]:
    """``TranscriptView`` from the working tree, or from a git revision (for "before" figures)."""
    if against is None:
        from lmgui.ui.chat_view import TranscriptView

        return TranscriptView
    source = subprocess.run(
        ["git", "show", f"{against}:lmgui/ui/chat_view.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "chat_view_at_rev.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("chat_view_at_rev", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    view_class: type[Any] = module.TranscriptView
    return view_class


class GapMeter:
    """The longest gap of a 1 ms timer on the GUI thread: how long the event loop stalled."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self._last = 0
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(1)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed()
        self.max_gap = max(self.max_gap, (now - self._last) / 1e6)
        self._last = now

    def start(self) -> None:
        self._clock.start()
        self._last = self._clock.nsecsElapsed()
        self._timer.start()

    def stop(self) -> float:
        self._tick()
        self._timer.stop()
        return round(self.max_gap, 1)


def spin(until: Callable[[], bool], limit_s: float = 600.0) -> None:
    """Run the Qt event loop until ``until()`` holds, then for QUIET_MS more."""
    loop = QEventLoop()
    deadline = time.monotonic() + limit_s
    quiet_from: list[float] = []

    def check() -> None:
        now = time.monotonic()
        if now > deadline:
            loop.quit()
        elif until():
            quiet_from.append(now) if not quiet_from else None
            if now - quiet_from[0] >= QUIET_MS / 1000:
                loop.quit()

    poll = QTimer()
    poll.setInterval(5)
    poll.timeout.connect(check)
    poll.start()
    loop.exec()
    poll.stop()


def measure(action: Callable[[], object], until: Callable[[], bool] = lambda: True) -> float:
    """The longest stall from running ``action`` inside the event loop until the view is idle."""
    meter = GapMeter()
    meter.start()
    done: list[bool] = []

    def run() -> None:
        action()
        done.append(True)

    QTimer.singleShot(0, run)
    spin(lambda: bool(done) and until())
    return meter.stop()


def new_view(view_class: type[Any]) -> Any:
    view = view_class()
    view.resize(900, 700)
    view.show()
    spin(lambda: True)
    return view


def anchors(view: QTextBrowser, prefix: str) -> list[str]:
    """The hrefs of the document's links that start with ``prefix``, in document order."""
    out: list[str] = []
    block = view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            href = it.fragment().charFormat().anchorHref()
            if href.startswith(prefix):
                out.append(href)
            it += 1
        block = block.next()
    return out


def bench_case(view_class: type[Any], text: str, rate_ms: float) -> dict[str, Any]:
    earlier = [record(1, normal_answer(2000)), record(2, "A short answer.")]
    big = record(3, text)
    out: dict[str, Any] = {"chars": len(text)}

    view = new_view(view_class)
    view.show_branch(earlier, {})
    spin(lambda: True)
    out["finished_ms"] = measure(lambda: (view.begin_stream(record(3, "")), view.end_stream(big)))

    view = new_view(view_class)
    out["show_branch_ms"] = measure(lambda: view.show_branch([*earlier, big], {}))
    show_all = anchors(view, "lmgui:show-all")
    if show_all:
        filling: Callable[[], bool] = lambda: bool(view.filling)  # noqa: E731
        t = time.perf_counter()
        out["show_all_ms"] = measure(
            lambda: view.anchorClicked.emit(QUrl(show_all[-1])), lambda: not filling()
        )
        out["show_all_s"] = round(time.perf_counter() - t - QUIET_MS / 1000, 2)
    else:
        out["show_all_ms"] = None
    out["shown_chars"] = len(view.toPlainText())
    return out


def bench_stream(view_class: type[Any], text: str, rate_ms: float) -> dict[str, Any]:
    """Stream ``text`` in 100-character deltas, one every ``rate_ms``, into a thread."""
    view = new_view(view_class)
    view.show_branch([record(1, normal_answer(2000)), record(2, "A short answer.")], {})
    spin(lambda: True)
    deltas = [text[i : i + 100] for i in range(0, len(text), 100)]
    feeder = QTimer()
    feeder.setInterval(1)
    sent = [0]
    clock = QElapsedTimer()

    def feed() -> None:
        # By the clock, as a socket would deliver them: a stalled GUI thread gets the deltas
        # that arrived meanwhile all at once, it does not slow the model down.
        due = min(len(deltas), int(clock.nsecsElapsed() / 1e6 / rate_ms) + 1)
        while sent[0] < due:
            view.append_delta("message", deltas[sent[0]])
            sent[0] += 1
        if sent[0] >= len(deltas):
            feeder.stop()

    feeder.timeout.connect(feed)
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    out: dict[str, Any] = {"chars": len(text), "deltas": len(deltas)}
    out["stream_ms"] = measure(
        lambda: (view.begin_stream(record(3, "")), clock.restart(), feeder.start()),
        lambda: sent[0] >= len(deltas) and not view._pending,
    )
    out["stream_cpu_s"] = round(time.thread_time() - cpu0, 2)
    out["stream_wall_s"] = round(time.perf_counter() - wall0 - QUIET_MS / 1000, 2)
    out["end_stream_ms"] = measure(lambda: view.end_stream(record(3, text)))
    return out


def bench_normal(view_class: type[Any]) -> dict[str, Any]:
    """A 40-turn thread of ordinary 3 KB Markdown answers opened, and one more streamed."""
    turns = [record(n, normal_answer(3000), question=f"question {n}") for n in range(1, 41)]
    view = new_view(view_class)
    out: dict[str, Any] = {"turns": len(turns)}
    out["show_branch_ms"] = measure(lambda: view.show_branch(turns, {}))
    out["finished_ms"] = measure(
        lambda: (
            view.begin_stream(record(41, "")),
            view.end_stream(record(41, normal_answer(3000))),
        )
    )
    return out


def bench_markdown_edges(view_class: type[Any]) -> dict[str, Any]:
    """The worst Markdown the view still renders, one turn each: finished and opened."""
    out: dict[str, Any] = {}
    for name, text in markdown_edges().items():
        view = new_view(view_class)
        view.show_branch([record(1, "A short answer.")], {})
        spin(lambda: True)
        finished = measure(
            lambda: (view.begin_stream(record(2, "")), view.end_stream(record(2, text)))  # noqa: B023
        )
        view = new_view(view_class)
        opened = measure(lambda: view.show_branch([record(1, "Short."), record(2, text)], {}))  # noqa: B023
        plain = "Shown as plain text" in view.toPlainText() or "Show all" in view.toPlainText()
        out[name] = {"chars": len(text), "finished_ms": finished, "show_branch_ms": opened}
        out[name]["plain"] = plain
    return out


def combine(runs: list[Any]) -> Any:
    """Repeated runs of a case as one: each figure as "median (worst)" of the runs."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: combine([run[key] for run in runs]) for key in first}
    if isinstance(first, float) and len(runs) > 1:
        values = sorted(runs)
        return f"{statistics.median(values):g} ({values[-1]:g})"
    return first


def run_case(name: str, view_class: type[Any], rate_ms: float) -> dict[str, Any]:
    if name in CASES:
        return bench_case(view_class, CASES[name](), rate_ms)
    if name.startswith("stream"):
        size = {"stream200k": 200_000, "stream1m": 1_000_000}[name]
        return bench_stream(view_class, hex_line(size), rate_ms)
    if name == "normal40":
        return bench_normal(view_class)
    return bench_markdown_edges(view_class)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--against", help="a git revision whose chat_view.py to measure instead")
    p.add_argument("--only", default="line200k,line1m,table2000,stream200k,normal40,markdown")
    p.add_argument("--rate-ms", type=float, default=5.0, help="one 100-char delta every N ms")
    p.add_argument("--repeat", type=int, default=1, help="run each case N times")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    view_class = load_view_class(args.against)
    only = args.only.split(",")
    result: dict[str, Any] = {"against": args.against or "working tree", "rate_ms": args.rate_ms}
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in only:
        runs[name] = [run_case(name, view_class, args.rate_ms) for _ in range(args.repeat)]
        print(f"{name}: {json.dumps(runs[name])}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({**result, "runs": runs}, indent=2))
        return
    print(f"TranscriptView from {result['against']}; longest GUI-thread stall in ms (target 50)")
    if args.repeat > 1:
        print(f"each figure: median (worst) of {args.repeat} runs")
    print(f"{'case':<16}{'finished':>14}{'show_branch':>14}{'show_all':>14}  notes")
    for name in only:
        r = combine(runs[name])
        if "stream_ms" in r:
            print(
                f"{name:<16}{r['end_stream_ms']:>14}{'':>14}{'':>14}  streaming: longest stall "
                f"{r['stream_ms']} ms, GUI-thread CPU {r['stream_cpu_s']} s over "
                f"{r['stream_wall_s']} s ({r['deltas']} deltas, one per {args.rate_ms:g} ms)"
            )
        elif "chars" in r:
            all_ms = "-" if r["show_all_ms"] is None else r["show_all_ms"]
            note = f"{r['chars']} chars"
            if r.get("show_all_s") is not None:
                note += f"; Show all done in {r['show_all_s']} s"
            print(f"{name:<16}{r['finished_ms']:>14}{r['show_branch_ms']:>14}{all_ms:>14}  {note}")
        elif name == "normal40":
            print(
                f"{name:<16}{r['finished_ms']:>14}{r['show_branch_ms']:>14}{'-':>14}  "
                f"{r['turns']} turns of 3 KB Markdown"
            )
        else:
            for shape, e in r.items():
                how = "plain text" if e["plain"] else "Markdown"
                print(
                    f"{'md ' + shape:<16}{e['finished_ms']:>14}{e['show_branch_ms']:>14}{'-':>14}"
                    f"  {e['chars']} chars, shown as {how}"
                )


if __name__ == "__main__":
    main()
