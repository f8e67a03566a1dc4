"""The chat pane in the running app, against the simulator, as a user works with it."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, QUrl
from pytestqt.qtbot import QtBot

from lmgui.app import LmguiApp
from lmgui.core.actions import LoadRequest
from lmgui.core.chat_store import TurnRecord
from lmgui.core.paths import AppPaths
from lmgui.sim import Simulator
from lmgui.ui.chat_view import SiblingInfo, TranscriptView, markdown_html
from tests.conftest import SimFactory
from tests.gui.conftest import running, wait_for


def chat_bodies(sim: Simulator) -> list[dict[str, object]]:
    return [r.body for r in sim.received("POST", "/api/v1/chat")]


async def start_chat(app: LmguiApp, instance: str = "google/gemma-3-270m") -> None:
    await app.actions.load(LoadRequest(instance))
    await wait_for(lambda: app.tree.instance_index(instance).isValid())
    app.window.select_instance(instance)
    app.window.open_chat()
    await app.chat.settle()


async def say(qtbot: QtBot, app: LmguiApp, text: str) -> TurnRecord:
    pane = app.chat
    pane.composer.input.setPlainText(text)
    qtbot.keyClick(pane.composer.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert pane.session is not None
    await wait_for(lambda: pane.session is not None and not pane.session.busy)
    await pane.settle()
    turns = await pane.session.branch()
    return turns[-1]


async def test_a_conversation_in_the_pane(qtbot: QtBot, sim: Simulator, paths: AppPaths) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app)
        pane = app.chat
        assert app.window.chat_dock.isVisible()
        assert pane.settings_bar.model_box.currentData() == "google/gemma-3-270m"
        first = await say(qtbot, app, "What is a context window?")
        assert first.status == "complete" and pane.composer.input.toPlainText() == ""
        before = app.ledger.entries["google/gemma-3-270m"].last_used
        text = pane.view.toPlainText()
        assert "What is a context window?" in text and first.text[:40] in text
        assert first.response_id is not None and first.response_id in text
        assert "Continue from here" in text
        assert (
            pane.threads.thread_list.item(0).text() == "What is a context window?"
        )  # titled by it
        second = await say(qtbot, app, "Say more")
        assert chat_bodies(sim)[-1]["previous_response_id"] == first.response_id
        assert second.text.startswith("Turn 2.")
        assert pane.composer.context_meter.format().startswith("context: ")
        assert "of 4k tokens" in pane.composer.context_meter.format()
        # lmgui's own chats reset the instance's idle timer (the TTL lmgui may enforce)
        assert app.ledger.entries["google/gemma-3-270m"].last_used > before


async def test_stop_mid_answer(qtbot: QtBot, make_sim: SimFactory, paths: AppPaths) -> None:
    sim = make_sim(tokens_per_second=25, answer_tokens=300)
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app)
        pane = app.chat
        pane.composer.input.setPlainText("a long one")
        qtbot.keyClick(pane.composer.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        await wait_for(lambda: "Turn 1." in pane.view.toPlainText())
        assert pane.composer.send_button.text() == "&Stop"
        qtbot.mouseClick(pane.composer.send_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: "(stopped)" in pane.view.toPlainText())
        assert pane.composer.send_button.text() == "&Send"
        assert pane.session is not None
        [turn] = await pane.session.branch()
        assert turn.status == "stopped" and 0 < len(turn.text.split()) < 300


async def test_branch_from_an_earlier_answer_and_switch_branches(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app)
        pane = app.chat
        first = await say(qtbot, app, "alpha")
        await say(qtbot, app, "beta")
        pane.view.anchorClicked.emit(QUrl(f"lmgui:continue/{first.id}"))  # "Continue from here"
        await pane.settle()
        assert "beta" not in pane.view.toPlainText()
        gamma = await say(qtbot, app, "gamma")
        assert chat_bodies(sim)[-1]["previous_response_id"] == first.response_id
        assert "branch 2 of 2" in pane.view.toPlainText()
        pane.view.anchorClicked.emit(QUrl(f"lmgui:sibling-prev/{gamma.id}"))
        await pane.settle()
        shown = pane.view.toPlainText()
        assert "beta" in shown and "gamma" not in shown and "branch 1 of 2" in shown
        await say(qtbot, app, "delta")  # continues the branch now shown
        assert [t.user_text for t in await pane.session.branch()] == ["alpha", "beta", "delta"]  # type: ignore[union-attr]


async def test_a_lost_thread_offers_a_new_one_seeded_with_its_transcript(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app)
        pane = app.chat
        await say(qtbot, app, "remember the word heron")
        sim.state.restart()  # LM Studio restarted: it has forgotten the thread
        await app.actions.load(LoadRequest("google/gemma-3-270m"))
        failed = await say(qtbot, app, "which word?")
        assert failed.status == "error"
        assert pane.lost_bar.isVisible()
        assert pane.lost_label.text().startswith("The server no longer knows this conversation")
        qtbot.mouseClick(pane.reseed_button, Qt.MouseButton.LeftButton)
        await wait_for(
            lambda: pane.session is not None and pane.session.record.title.endswith("(continued)")
        )
        await pane.settle()
        await say(qtbot, app, "which word?")
        body = chat_bodies(sim)[-1]
        assert "previous_response_id" not in body
        assert "remember the word heron" in str(body["system_prompt"])


async def test_thread_list_search_rename_delete_and_undo(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app)
        pane = app.chat
        await say(qtbot, app, "about herons")
        await pane.new_thread()
        await say(qtbot, app, "about owls")
        assert [
            pane.threads.thread_list.item(i).text() for i in range(pane.threads.thread_list.count())
        ] == [
            "about owls",
            "about herons",
        ]
        pane.threads.search.setText("heron")
        await pane.settle()
        assert pane.threads.thread_list.count() == 1
        pane.threads.search.clear()
        await pane.settle()
        await pane.rename("Birds of prey")
        assert pane.threads.thread_list.item(0).text() == "Birds of prey"
        pane.delete_current()
        await pane.settle()
        assert pane.threads.undo_bar.isVisible() and pane.threads.thread_list.count() == 1
        pane.undo_delete()
        await pane.settle()
        assert pane.threads.thread_list.count() == 2 and pane.session is not None
        pane.delete_current()
        pane.threads.delete_timer.timeout.emit()  # the undo time ran out
        await pane.settle()
        threads = await app.chat_store.threads()
        assert [t.title for t in threads] == ["about herons"]


async def test_export_from_the_pane(qtbot: QtBot, sim: Simulator, paths: AppPaths) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app, "qwen/qwen3-4b")
        pane = app.chat
        turn = await say(qtbot, app, "explain quantization")
        md = await pane.export_text("md", reasoning=False)
        assert md.startswith("# explain quantization") and turn.text in md
        assert turn.reasoning not in md
        assert turn.reasoning.strip().splitlines()[0] in await pane.export_text(
            "md", reasoning=True
        )
        data = json.loads(await pane.export_text("json", reasoning=False))
        assert data["turns"][0]["response_id"] == turn.response_id


async def test_history_survives_a_restart_and_continues(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app)
        first = await say(qtbot, app, "before the restart")
    async with running(qtbot, paths, sim.url) as again:
        await again.start_chat()  # what run() does at start
        pane = again.chat
        assert pane.session is not None
        assert "before the restart" in pane.view.toPlainText()
        await say(qtbot, again, "after it")
        assert chat_bodies(sim)[-1]["previous_response_id"] == first.response_id


async def test_jit_load_from_the_picker(
    qtbot: QtBot, make_sim: SimFactory, paths: AppPaths
) -> None:
    sim = make_sim(load_seconds_per_gb=0.6)
    async with running(qtbot, paths, sim.url) as app:
        await wait_for(lambda: app.tree.rowCount() == 15)
        app.window.chat_dock.show()
        pane = app.chat
        await pane.new_thread("qwen/qwen3-4b")  # not loaded: "loads on first message"
        assert "loads on first message" in pane.settings_bar.model_box.currentText()
        seen: list[int] = []
        pane.load_bar.valueChanged.connect(seen.append)
        turn = await say(qtbot, app, "wake up")
        assert seen and seen[-1] == 100 and not pane.load_bar.isVisible()
        assert turn.stats["model_load_time_seconds"] == 1.5
        await wait_for(lambda: app.tree.instance_index("qwen/qwen3-4b").isValid())


async def test_images_for_vision_models(qtbot: QtBot, sim: Simulator, paths: AppPaths) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app)
        pane = app.chat
        assert not pane.composer.attach_button.isEnabled()  # gemma-3-270m takes no images
        await app.actions.load(LoadRequest("qwen/qwen3.5-9b"))
        await wait_for(lambda: app.tree.instance_index("qwen/qwen3.5-9b").isValid())
        await pane.new_thread("qwen/qwen3.5-9b")
        assert pane.composer.attach_button.isEnabled()
        pane.composer.add_image("image/png", b"\x89PNG\r\n\x1a\n" + bytes(64))
        assert pane.composer.attachments.text().startswith("1 image attached")
        turn = await say(qtbot, app, "what is in it?")
        assert "I see 1 image" in turn.text and pane.composer.attachments.text() == ""
        assert "[image, image/png]" in pane.view.toPlainText()
        pane.composer.add_image("image/png", bytes(20 * 2**20))
        assert pane.composer.attachments.text() == ""
        assert "can be sent" in app.window.statusBar().currentMessage()


async def test_store_off_says_the_turn_cannot_be_continued(
    qtbot: QtBot, sim: Simulator, paths: AppPaths
) -> None:
    async with running(qtbot, paths, sim.url) as app:
        await start_chat(app)
        pane = app.chat
        pane.settings_bar.store_box.setChecked(False)
        await pane.settle()
        assert "cannot be continued" in app.window.statusBar().currentMessage()
        turn = await say(qtbot, app, "ephemeral")
        assert turn.response_id is None and chat_bodies(sim)[-1]["store"] is False
        assert "not stored: cannot be continued" in pane.view.toPlainText()


def test_server_text_is_plain_and_loads_nothing(qtbot: QtBot) -> None:
    view = TranscriptView()
    qtbot.addWidget(view)
    evil = TurnRecord(
        id=1,
        thread_id=1,
        parent_id=None,
        input=[{"type": "text", "content": "<b>bold?</b> <script>x()</script>"}],
        output=[
            {
                "type": "message",
                "content": "Hi <img src='http://evil.example/x.png'> "
                "![a](http://evil.example/y.png) **ok**",
            }
        ],
        stats={},
        response_id="resp_<i>x</i>",
        model="m<b>",
        instance_id=None,
        settings={},
        status="complete",
        error=None,
        created=0.0,
        completed=1.0,
    )
    view.show_branch([evil], {1: SiblingInfo(1, 1, None, None)})
    text = view.toPlainText()
    assert "<b>bold?</b> <script>x()</script>" in text  # the user's text, as typed
    assert "resp_<i>x</i>" in text and "m<b>" in text  # server strings as text
    assert "<img" not in markdown_html(
        "Hi <img src='http://evil.example/x.png'>"
    )  # raw HTML dropped
    assert view.loadResource(2, QUrl("http://evil.example/y.png")) is None  # nothing is fetched


def test_a_long_branch_opens_with_its_newest_turns(qtbot: QtBot) -> None:
    from lmgui.ui.chat_view import PAGE

    view = TranscriptView()
    qtbot.addWidget(view)

    def turn(n: int) -> TurnRecord:
        return TurnRecord(
            id=n,
            thread_id=1,
            parent_id=n - 1 or None,
            input=[{"type": "text", "content": f"question {n}"}],
            output=[{"type": "message", "content": f"answer {n}"}],
            stats={},
            response_id=f"resp_{n}",
            model="m",
            instance_id="m",
            settings={},
            status="complete",
            error=None,
            created=0.0,
            completed=1.0,
        )

    turns = [turn(n) for n in range(1, 101)]
    view.show_branch(turns, {})
    text = view.toPlainText()
    assert "question 100" in text and "question 61" in text and "question 60" not in text
    assert f"{100 - PAGE} earlier turns not shown" in text
    view.anchorClicked.emit(QUrl("lmgui:earlier/0"))
    text = view.toPlainText()
    assert "question 21" in text and "question 20" not in text and "20 earlier turns" in text
