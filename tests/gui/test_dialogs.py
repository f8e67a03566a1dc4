"""The dialogs on their own: validation beside the fields, and the value objects they produce."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from lmgui.api import Instance, Model, Quantization
from lmgui.api.records import LoadResult
from lmgui.core.actions import LoadRequest
from lmgui.core.profiles import Profile
from lmgui.core.settings import SettingsValues
from lmgui.ui.load_dialog import LoadDialog, VramContext, is_moe
from lmgui.ui.settings_dialog import SettingsDialog, url_problem
from lmgui.ui.unload_dialog import UnloadDialog

GB = 1_000_000_000


def model(key: str, *instances: Instance, **kw: Any) -> Model:
    base: dict[str, Any] = {
        "type": "llm",
        "display_name": key,
        "size_bytes": 5 * GB,
        "params_string": "8B",
        "max_context_length": 32768,
        "quantization": Quantization("Q4_K_M", 4),
    }
    base.update(kw)
    return Model(key=key, instances=instances, **base)


LOADED = model("a/loaded", Instance("a/loaded", "a/loaded", {"context_length": 4096}))
FREE = model("b/free")
MOE = model("c/moe", params_string="26B-A4B", size_bytes=18 * GB)
BUDGET = VramContext(total_bytes=24 * GB, used_bytes=4 * GB, source="budget")


def dialog(qtbot: QtBot, key: str = "b/free", vram: VramContext = BUDGET, **kw: Any) -> LoadDialog:
    d = LoadDialog([LOADED, FREE, MOE], key, vram, **kw)
    qtbot.addWidget(d)
    d.show()
    return d


def test_defaults_send_only_what_the_user_set(qtbot: QtBot) -> None:
    d = dialog(qtbot)
    assert d.request() == LoadRequest(model_key="b/free", context_length=4096)
    assert not d.loaded_box.isVisible()
    assert not d.experts.isVisible()  # not a mixture-of-experts model
    assert "Fits" in d.fit.text() and "VRAM budget" in d.fit.text()


def test_every_field_reaches_the_request(qtbot: QtBot) -> None:
    d = dialog(qtbot, "c/moe")
    assert d.experts.isVisible()
    d.gpu_mode.setCurrentIndex(d.gpu_mode.findData("fraction"))
    d.gpu_fraction.setValue(0.75)
    d.context.setValue(16384)
    d.ttl_on.setChecked(True)
    d.ttl_value.setValue(2)
    d.ttl_unit.setCurrentIndex(1)  # hours
    d.identifier.setText("work-moe")
    d.flash.setCurrentIndex(d.flash.findData(True))
    d.kv_gpu.setCurrentIndex(d.kv_gpu.findData(False))
    d.batch.setValue(1024)
    d.experts.setValue(8)
    d.parallel.setValue(2)
    assert d.request() == LoadRequest(
        model_key="c/moe",
        context_length=16384,
        gpu=0.75,
        ttl_seconds=7200,
        identifier="work-moe",
        flash_attention=True,
        eval_batch_size=1024,
        num_experts=8,
        offload_kv_cache_to_gpu=False,
        parallel=2,
    )


def test_the_estimate_follows_the_settings(qtbot: QtBot) -> None:
    d = dialog(qtbot)
    small = d.estimate.text()
    d.context.setValue(32768)
    assert d.estimate.text() != small
    d.gpu_mode.setCurrentIndex(d.gpu_mode.findData("off"))
    assert "of RAM" in d.estimate.text()


def test_fit_warning(qtbot: QtBot) -> None:
    tight = VramContext(total_bytes=8 * GB, used_bytes=6 * GB, source="nvml")
    d = dialog(qtbot, vram=tight)
    assert d.fit.text().startswith("This may not fit") and "NVML" in d.fit.text()
    unknown = dialog(qtbot, vram=VramContext(None, 0, "none"))
    assert "set a VRAM budget in Settings" in unknown.fit.text()


def test_context_presets_stop_at_the_models_maximum(qtbot: QtBot) -> None:
    d = dialog(qtbot)
    presets = [d.context_presets.itemData(i) for i in range(d.context_presets.count())]
    assert presets[-1] == 32768 and d.context.maximum() == 32768
    d.context_presets.setCurrentIndex(presets.index(16384))
    d.context_presets.activated.emit(presets.index(16384))
    assert d.context.value() == 16384


@pytest.mark.parametrize(
    ("identifier", "problem"),
    [("has space", "without spaces"), ("a/loaded", "already loaded"), ("fine-id", None)],
)
def test_identifier_validation_beside_the_field(
    qtbot: QtBot, identifier: str, problem: str | None
) -> None:
    d = dialog(qtbot)
    d.identifier.setText(identifier)
    if problem is None:
        assert not d.identifier_error.isVisible() and d.load_button.isEnabled()
    else:
        assert d.identifier_error.isVisible() and problem in d.identifier_error.text()
        assert not d.load_button.isEnabled()


def test_a_loaded_model_offers_its_instance(qtbot: QtBot) -> None:
    d = dialog(qtbot, "a/loaded")
    used: list[str] = []
    asked: list[LoadRequest] = []
    d.use_loaded.connect(used.append)
    d.load_requested.connect(asked.append)
    assert d.loaded_box.isVisible() and d.use_existing.isChecked()
    qtbot.mouseClick(d.load_button, Qt.MouseButton.LeftButton)
    assert used == ["a/loaded"] and asked == []

    again = dialog(qtbot, "a/loaded")
    again.load_requested.connect(asked.append)
    again.load_another.setChecked(True)
    assert again.load_button.text() == "&Load"
    qtbot.mouseClick(again.load_button, Qt.MouseButton.LeftButton)
    assert [r.model_key for r in asked] == ["a/loaded"]


def test_saved_defaults_prefill_the_dialog(qtbot: QtBot) -> None:
    saved = LoadRequest("b/free", context_length=8192, gpu="off", ttl_seconds=1800, parallel=2)
    d = dialog(qtbot, defaults={"b/free": saved})
    assert d.request() == saved


def test_progress_and_outcomes(qtbot: QtBot) -> None:
    d = dialog(qtbot)
    d.show_started(LoadRequest("b/free"))
    assert d.progress.isVisible() and not d.load_button.isEnabled()
    d.show_failed("Loading b/free failed: out of memory.")
    assert not d.progress.isVisible() and d.load_button.isEnabled()
    assert d.status.text() == "Loading b/free failed: out of memory."
    d.show_started(LoadRequest("b/free"))
    d.show_finished(
        LoadResult(
            "b/free",
            not_applied=("ttl",),
            not_applied_reason="LM Studio's REST API does not take them, and lms was not found "
            "on this machine",
        )
    )
    assert d.isVisible()
    assert d.status.text() == (
        "Loaded as b/free. The server did not apply ttl (LM Studio's REST API does not take "
        "them, and lms was not found on this machine). lmgui enforces the TTL itself while it "
        "runs."
    )
    with qtbot.waitSignal(d.accepted):
        d.show_finished(LoadResult("b/free"))


def test_moe_detection() -> None:
    assert is_moe(MOE) and not is_moe(FREE)
    assert is_moe(model("x", params_string="21B-A3.6B")) and is_moe(
        model("y", architecture="gpt-oss")
    )


def test_unload_dialog_selection(qtbot: QtBot) -> None:
    instances = [Instance(f"k:{n}", "k", {"context_length": 4096}) for n in (1, 2, 3)]
    d = UnloadDialog(instances, preselected={"k:2"})
    qtbot.addWidget(d)
    assert d.selected() == ["k:2"] and d.unload_button.text() == "&Unload 1"
    d.toggle_all.click()
    assert d.selected() == ["k:1", "k:2", "k:3"]
    assert d.toggle_all.text() == "Select &none"
    d.toggle_all.click()
    assert d.selected() == [] and not d.unload_button.isEnabled()
    d.list.item(0).setCheckState(Qt.CheckState.Checked)
    d.dont_ask.setChecked(True)
    with qtbot.waitSignal(d.unload_requested) as sig:
        d.unload_button.click()
    assert sig.args == [["k:1"], True]


def test_the_unload_dialog_names_the_ticked_instances_that_are_answering(qtbot: QtBot) -> None:
    instances = [
        Instance("qwen-1", "k", {"context_length": 4096}, status="generating"),
        Instance("k:2", "k", {}, status="idle"),
        Instance("k:3", "k", {}, status="processingPrompt", queued=3),
    ]
    d = UnloadDialog(instances, preselected={"qwen-1", "k:2"}, offer_dont_ask=False)
    qtbot.addWidget(d)
    assert d.list.item(0).text() == "qwen-1  (context 4k)  ● generating"
    assert d.list.item(1).text() == "k:2"
    assert d.list.item(2).text() == "k:3  ● reading prompt (+2 queued)"
    assert not d.busy_warning.isHidden()
    assert d.busy_warning.text() == "qwen-1 is generating an answer; unload it anyway?"
    assert d.dont_ask.isHidden()  # the user already said not to ask: asked only for this
    d.list.item(2).setCheckState(Qt.CheckState.Checked)
    assert d.busy_warning.text() == (
        "qwen-1 is generating an answer and k:3 is reading a prompt (2 more waiting); "
        "unload them anyway?"
    )
    d.list.item(0).setCheckState(Qt.CheckState.Unchecked)
    d.list.item(2).setCheckState(Qt.CheckState.Unchecked)
    assert d.busy_warning.isHidden()  # only what would be unloaded is asked about
    assert not UnloadDialog(instances[1:2]).dont_ask.isHidden()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Enter the server"),
        ("ftp://x:1", "http://"),
        ("http://:1234", "host"),
        ("http://h:99999", "port"),
        ("127.0.0.1:1234", None),
        ("https://lm.example.org/api/v1", None),
    ],
)
def test_server_address_validation(text: str, problem: str | None) -> None:
    found = url_problem(text)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_settings_dialog(qtbot: QtBot) -> None:
    values = SettingsValues(
        "http://127.0.0.1:1234",
        None,
        2000,
        0.0,
        True,
        profiles=(
            Profile("Local", "http://127.0.0.1:1234"),
            Profile("Lab", "http://10.0.0.5:1234"),
        ),
        favourites=(),
    )
    defaults = {"a/one": LoadRequest("a/one", context_length=8192), "b/two": LoadRequest("b/two")}
    d = SettingsDialog(
        values, has_token=lambda url: True, keyring_note=None, load_defaults=defaults
    )
    qtbot.addWidget(d)
    ok = d.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert d.profile_box.currentText() == "Local" and d.server.text() == "http://127.0.0.1:1234"
    d.server.setText("not a url at all://")
    assert not ok.isEnabled() and d.server_error.text()
    d.server.setText("192.168.1.20:1234")
    assert ok.isEnabled()
    d.profile_box.setCurrentIndex(1)  # switching keeps the edit of the first profile
    assert d.server.text() == "http://10.0.0.5:1234"
    d.profile_box.setCurrentIndex(0)
    assert d.server.text() == "192.168.1.20:1234"
    d.add_profile.click()
    d.server.setText("http://box:4321")
    d.profile_name.setText("Box")
    d.poll.setValue(5)
    d.hidden_poll.setValue(20)
    d.budget.setValue(24)
    d.confirm.setChecked(False)
    d.clear_token.setChecked(True)
    d.notify_boxes["vanished"].setChecked(False)
    d.close_to_tray.setChecked(False)
    d.start_minimized.setChecked(True)
    d.defaults.item(0).setCheckState(Qt.CheckState.Checked)  # a/one is a favourite
    d.defaults.item(1).setSelected(True)
    d.forget.click()  # forget b/two's saved settings
    with qtbot.waitSignal(d.applied) as sig:
        ok.click()
    v: SettingsValues = sig.args[0]
    assert v.server_url == "http://box:4321" and v.token == ""
    assert v.token_changes == (("http://box:4321", ""),)
    assert v.profiles == (
        Profile("Local", "http://192.168.1.20:1234"),
        Profile("Lab", "http://10.0.0.5:1234"),
        Profile("Box", "http://box:4321"),
    )
    assert (v.poll_interval_ms, v.hidden_poll_interval_ms) == (5000, 20000)
    assert (v.vram_budget_gb, v.confirm_unload, v.close_to_tray, v.start_minimized) == (
        24.0,
        False,
        False,
        True,
    )
    assert v.notify["vanished"] is False and v.notify["loaded"] is True
    assert v.favourites == ("a/one",) and v.forget_defaults == ("b/two",)


def test_settings_dialog_says_what_is_not_available(qtbot: QtBot) -> None:
    values = SettingsValues("http://127.0.0.1:1234", None, 2000, 0.0, True)
    d = SettingsDialog(
        values,
        has_token=lambda url: False,
        keyring_note="No usable keyring; tokens are kept for this session only.",
        tray_available=False,
        autostart_supported=False,
    )
    qtbot.addWidget(d)
    assert not d.clear_token.isVisibleTo(d)
    assert "session only" in d.token_note.text()
    assert not d.start_on_login.isEnabled()
    assert not d.remove_profile.isEnabled()  # the last profile cannot be removed


def test_settings_dialog_strips_and_refuses_tokens(qtbot: QtBot) -> None:
    values = SettingsValues("http://127.0.0.1:1234", None, 2000, 0.0, True)
    d = SettingsDialog(values, has_token=lambda url: False, keyring_note=None)
    qtbot.addWidget(d)
    ok = d.buttons.button(QDialogButtonBox.StandardButton.Ok)
    d.token.setText("  sk-lm-abcdef:ghijklmn  ")
    assert ok.isEnabled() and not d.token_error.isVisibleTo(d)
    assert d.values().token == "sk-lm-abcdef:ghijklmn"
    assert d.values().token_changes == (("http://127.0.0.1:1234", "sk-lm-abcdef:ghijklmn"),)
    d.token.setText("sk-lm-abcdéf:ghijklmn")
    assert not ok.isEnabled()
    assert d.token_error.isVisibleTo(d)
    assert d.token_error.text().startswith("The API token contains a non-ASCII character")
    assert "abcd" not in d.token_error.text()
    d.server.setText("http://127.0.0.1:99999")
    assert d.server_error.text() == "The port must be a number from 1 to 65535."
