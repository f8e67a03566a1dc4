"""The parsers on recorded bodies (both list shapes, every output item), on entries with one bad
field each (the model stays, the field becomes unknown and is logged once) and on arbitrary JSON."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lmgui.api import model_list
from lmgui.api.errors import ProtocolError, dedupe_joined_message, first_readable_line
from lmgui.api.model_list import ParseMemo, parse_models
from lmgui.api.records import (
    MAX_BYTES,
    MAX_TOKENS,
    Instance,
    InvalidToolCallItem,
    MessageItem,
    Model,
    ReasoningItem,
    ToolCallItem,
    UnknownItem,
    parse_chat_result,
    parse_download,
    parse_load_result,
)
from lmgui.core.format import UNREADABLE, field_text, human_bytes, human_count
from tests.conftest import data


@pytest.fixture(autouse=True)
def _log_every_defect_again() -> None:
    """Defects are logged once per process; each test starts with none said yet."""
    model_list._forget_reported()


def test_a_memo_keeps_records_of_unchanged_entries_and_remakes_changed_ones() -> None:
    def body(ctx: int, *keys: str) -> bytes:
        entries = [
            {"type": "llm", "key": k, "size_bytes": 10, "loaded_instances": []} for k in keys
        ]
        entries[0]["loaded_instances"] = [{"id": keys[0], "config": {"context_length": ctx}}]
        return json.dumps({"models": entries}).encode()

    memo = ParseMemo()
    first = parse_models(body(4096, "a/x", "b/y", "c/z"), memo)
    second = parse_models(body(8192, "a/x", "c/z"), memo)
    assert [m.key for m in second] == ["a/x", "c/z"]
    assert second[0] is not first[0] and second[0].instances[0].context_length == 8192
    assert second[1] is first[2]  # unchanged: the same record, so a diff skips it at once
    assert second == parse_models(body(8192, "a/x", "c/z"))  # what a fresh parse makes
    assert set(memo.entries) == {"a/x", "c/z"}  # a model gone is forgotten


def test_v1_list_keeps_every_good_entry_and_skips_malformed_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        models = parse_models(data("models_v1.json"))
    assert [m.key for m in models] == [
        "qwen/qwen3.5-9b",
        "google/gemma-4-26b-a4b",
        "old-entry-without-capabilities",
        "text-embedding-nomic-embed-text-v1.5",
    ]
    assert "skipped malformed model entry #3" in caplog.text
    assert "skipped malformed model entry #4" in caplog.text

    qwen = models[0]
    assert qwen.quantization is not None and qwen.quantization.name == "Q4_K_M"
    assert qwen.quantization.bits_per_weight == 4
    assert qwen.vision and qwen.tool_use and qwen.reasoning_options == ("off", "on")
    assert [i.id for i in qwen.instances] == ["qwen/qwen3.5-9b", "qwen/qwen3.5-9b:2"]
    first, second = qwen.instances
    assert (first.context_length, first.parallel, first.flash_attention) == (4096, 4, True)
    assert first.offload_kv_cache_to_gpu is True and first.eval_batch_size == 512
    assert second.context_length == 8192 and second.parallel is None
    assert second.config["some_future_key"] == [1, 2]  # the open mapping keeps new keys
    assert all(i.model_key == "qwen/qwen3.5-9b" for i in qwen.instances)


def test_instance_ids_come_from_the_server_never_from_the_key() -> None:
    gemma = parse_models(data("models_v1.json"))[1]
    assert [i.id for i in gemma.instances] == ["work-gemma", "google/gemma-4-26b-a4b@q4_k_m:2"]
    assert gemma.instances[0].num_experts == 8
    assert gemma.variants == ("google/gemma-4-26b-a4b@q4_k_m", "google/gemma-4-26b-a4b@q8_0")
    assert gemma.selected_variant == "google/gemma-4-26b-a4b@q4_k_m"
    assert gemma.capabilities is None and not gemma.vision


def test_entries_without_optional_fields() -> None:
    models = parse_models(data("models_v1.json"))
    bare, embedding = models[2], models[3]
    assert bare.quantization is None and bare.format is None and bare.capabilities is None
    assert bare.params_string is None and bare.instances == ()
    assert embedding.type == "embedding" and embedding.architecture is None
    assert not embedding.is_llm


def test_v0_list_shape() -> None:
    vl, llama, emb = parse_models(data("models_v0.json"))
    assert (vl.key, vl.type, vl.vision, vl.format, vl.architecture) == (
        "qwen2-vl-7b-instruct",
        "llm",
        True,
        "mlx",
        "qwen2_vl",
    )
    assert vl.quantization is not None and vl.quantization.name == "4bit"
    assert vl.instances == ()
    assert [(i.id, i.context_length) for i in llama.instances] == [
        ("meta-llama-3.1-8b-instruct", 8192)
    ]
    assert emb.type == "embedding"


@pytest.mark.parametrize(
    "body",
    [b"<html>nope</html>", b"[1, 2]", b'{"error": "Unexpected endpoint"}', b'{"models": 5}', b""],
)
def test_a_body_of_neither_shape_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_models(body)


# ----------------------------------------------------------------------------- one bad field

GOOD: dict[str, Any] = {
    "type": "llm",
    "key": "acme/good-7b",
    "display_name": "Good 7B",
    "publisher": "acme",
    "architecture": "llama",
    "quantization": {"name": "Q4_K_M", "bits_per_weight": 4.5},
    "size_bytes": 4_200_000_000,
    "params_string": "7B",
    "max_context_length": 32768,
    "format": "gguf",
    "capabilities": {"vision": False, "trained_for_tool_use": True},
    "loaded_instances": [
        {
            "id": "acme/good-7b",
            "config": {"context_length": 8192, "parallel": 4, "flash_attention": True},
        }
    ],
}
NEIGHBOUR: dict[str, Any] = {"type": "llm", "key": "acme/other", "display_name": "Other"}
PLACEHOLDER = "@@raw@@"


def body_with(where: str, name: str, raw: str | None, *, neighbour_size: int = 1) -> bytes:
    """A v1 list: GOOD with ``name`` (of the model, or of its instance's config) set to the raw
    JSON text ``raw`` (so 1e400 and 5000-digit integers arrive as sent) or left out (None),
    then a good neighbour."""
    entry = json.loads(json.dumps(GOOD))
    target = entry if where == "model" else entry["loaded_instances"][0]["config"]
    if raw is None:
        del target[name]
    else:
        target[name] = PLACEHOLDER
    neighbour = {**NEIGHBOUR, "size_bytes": neighbour_size}
    text = json.dumps({"models": [entry, neighbour]})
    return text.replace(json.dumps(PLACEHOLDER), raw or "").encode()


BAD_FIELDS = [
    pytest.param("model", "size_bytes", '"4200000000"', id="size as a string"),
    pytest.param("model", "size_bytes", "-4000000", id="negative size"),
    pytest.param("model", "size_bytes", str(MAX_BYTES + 1), id="size past 1 PB"),
    pytest.param("model", "size_bytes", "1e400", id="size 1e400"),
    pytest.param("model", "size_bytes", "true", id="bool for the size"),
    pytest.param("model", "max_context_length", "1e308", id="context 1e308"),
    pytest.param("model", "max_context_length", "9" * 5000, id="context of 5000 digits"),
    pytest.param("model", "max_context_length", "-1", id="negative context"),
    pytest.param("model", "max_context_length", "true", id="bool for the context"),
    pytest.param("model", "max_context_length", str(MAX_TOKENS + 1), id="context past 1e9"),
    pytest.param("instance", "context_length", '"8192"', id="instance context as a string"),
    pytest.param("instance", "context_length", "-8192", id="negative instance context"),
    pytest.param("instance", "context_length", "1" + "0" * 5000, id="instance context 5000 digits"),
    pytest.param("instance", "parallel", "true", id="bool for parallel"),
    pytest.param("instance", "flash_attention", "1", id="number for a flag"),
]

RENDER: dict[str, Callable[[Any], str]] = {
    "size_bytes": human_bytes,
    "max_context_length": human_count,
    "context_length": human_count,
    "parallel": str,
    "flash_attention": str,
}


@pytest.mark.parametrize(("where", "name", "raw"), BAD_FIELDS)
def test_one_bad_field_never_hides_a_model_or_its_instance(
    where: str, name: str, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lmgui.api.model_list"):
        models = parse_models(body_with(where, name, raw))
    # The model, its loaded instance and the neighbour are all there.
    assert [m.key for m in models] == ["acme/good-7b", "acme/other"]
    m = models[0]
    assert [i.id for i in m.instances] == ["acme/good-7b"]
    inst = m.instances[0]

    # Every other field is as if the bad one had not been sent at all.
    (expected, _) = parse_models(body_with(where, name, None))
    if where == "model":
        assert m.malformed == (name,) and inst.malformed == ()
        assert getattr(m, name) is None
        assert msgspec.structs.replace(m, malformed=()) == expected
        shown = field_text(m, name, RENDER[name])
    else:
        assert inst.malformed == (name,) and m.malformed == ()
        assert getattr(inst, name) is None
        assert msgspec.structs.replace(m, instances=()) == msgspec.structs.replace(
            expected, instances=()
        )
        others = {k: v for k, v in inst.config.items() if k != name}
        assert others == expected.instances[0].config
        shown = field_text(inst, name, RENDER[name])
    # "?" (unreadable), never the value and never "-" (the server did not say).
    assert shown == UNREADABLE

    # Named once in the log, even when the list changes around it on the next polls.
    said = [
        r for r in caplog.records if name in r.getMessage() and "acme/good-7b" in r.getMessage()
    ]
    assert len(said) == 1, caplog.text
    assert len(said[0].getMessage()) < 300  # a 5000-digit value is described, not dumped
    with caplog.at_level(logging.WARNING, logger="lmgui.api.model_list"):
        parse_models(body_with(where, name, raw, neighbour_size=2))
        parse_models(body_with(where, name, raw, neighbour_size=3))
    assert len([r for r in caplog.records if name in r.getMessage()]) == 1


def test_bad_fields_on_the_fast_path_and_the_slow_one_give_the_same_records() -> None:
    # A negative size keeps the typed fast path; a string size sends the list entry by entry.
    neg = parse_models(body_with("model", "size_bytes", "-5"))
    text = parse_models(body_with("model", "size_bytes", '"5"'))
    assert neg == text
    # The good neighbour of a bad entry is the same record whichever path read it.
    assert (
        text[1]
        == parse_models(json.dumps({"models": [{**NEIGHBOUR, "size_bytes": 1}]}).encode())[0]
    )


def test_negative_values_never_reach_formatted_output() -> None:
    from lmgui.core.vram import estimate_instance

    (m, _) = parse_models(body_with("model", "size_bytes", "-4000000"))
    assert m.size_bytes is None and field_text(m, "size_bytes", human_bytes) == "?"
    est = estimate_instance(m, context_length=m.instances[0].context_length)
    assert est.weights_gpu_bytes == 0 and est.weights_ram_bytes == 0 and est.vram_bytes > 0
    # Records built by hand (not parsed) and sums are guarded by the formatters themselves.
    assert human_bytes(-4_000_000) == "?" and human_bytes(float("nan")) == "?"
    assert human_bytes(10**400) == "?" and human_count(-1) == "?"
    hand_made = Model(key="k", type="llm", display_name="k", size_bytes=-4_000_000)
    assert estimate_instance(hand_made).vram_bytes > 0
    assert estimate_instance(hand_made).weights_ram_bytes == 0
    assert Instance(id="i", model_key="k", config={"context_length": -5}).context_length is None


def test_field_text_tells_unreadable_from_not_said() -> None:
    m = Model(key="k", type="llm", display_name="k", size_bytes=None, max_context_length=8192)
    assert field_text(m, "size_bytes", human_bytes) == "-"
    assert field_text(m, "max_context_length", human_count) == "8k"
    bad = msgspec.structs.replace(m, malformed=("max_context_length",))
    assert field_text(bad, "max_context_length", human_count) == "?"
    assert field_text(m, "quantization.bits_per_weight", str) == "None"  # dotted, through None
    i = Instance(id="i", model_key="k", config={"parallel": 2}, malformed=("context_length",))
    assert field_text(i, "context_length", human_count) == "?"
    assert field_text(i, "parallel", str) == "2"


def test_v0_entry_with_a_bad_field_keeps_its_loaded_instance() -> None:
    body = json.dumps(
        {
            "object": "list",
            "data": [
                {
                    "id": "v0/model",
                    "type": "llm",
                    "arch": 7,
                    "state": "loaded",
                    "loaded_context_length": "8192",
                    "max_context_length": -3,
                }
            ],
        }
    ).encode()
    (m,) = parse_models(body)
    assert m.key == "v0/model" and m.architecture is None and m.max_context_length is None
    assert m.malformed == ("architecture", "max_context_length")
    (inst,) = m.instances
    assert inst.id == "v0/model" and inst.context_length is None
    assert inst.malformed == ("context_length",)


def test_unreadable_numbers_leave_a_config_that_still_encodes_as_json() -> None:
    body = (
        b'{"models": [{"key": "k", "loaded_instances": [{"id": "i", "config": '
        b'{"context_length": 1e400, "future": {"deep": [1, 1e999, "x"]}, "parallel": 2}}]}, '
        b'{"key": "k2", "loaded_instances": [{"id": "j", "config": "not an object"}]}]}'
    )
    a, b = parse_models(body)
    (i,) = a.instances
    assert i.malformed == ("context_length",) and i.parallel == 2
    assert i.config == {"context_length": None, "future": {"deep": [1, None, "x"]}, "parallel": 2}
    (j,) = b.instances
    assert j.id == "j" and j.malformed == ("config",) and j.config == {}
    # What the CLI's --json does with records: strict JSON, no Infinity.
    json.dumps(msgspec.to_builtins([a, b]), allow_nan=False)


def test_only_an_entry_without_a_usable_key_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(
        {"models": [{"key": 5, "size_bytes": "x"}, [1], {"key": 5, "id": "fallback"}]}
    ).encode()
    with caplog.at_level(logging.WARNING, logger="lmgui.api.model_list"):
        models = parse_models(body)
    assert [m.key for m in models] == ["fallback"]
    assert models[0].malformed == ("key",)
    assert "skipped malformed model entry #0: it has no usable key" in caplog.text
    assert "skipped malformed model entry #1: it is not a JSON object" in caplog.text


def test_a_list_full_of_defects_logs_a_bounded_number_of_lines(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_list, "_REPORTED_MAX", 50)
    entries = [{"key": f"m{i}", "size_bytes": -1} for i in range(60)]
    body = json.dumps({"models": entries}).encode()
    with caplog.at_level(logging.WARNING, logger="lmgui.api.model_list"):
        assert len(parse_models(body)) == 60
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == model_list._LOG_PER_PARSE + 1
    assert lines[-1].startswith("40 more unreadable fields")
    assert len(model_list._REPORTED) == 50  # the "already said" set stays bounded


def test_chat_result_with_every_output_item_type() -> None:
    r = parse_chat_result(data("chat_all_items.json"))
    kinds = [type(i) for i in r.output]
    assert kinds == [
        ReasoningItem,
        ReasoningItem,
        ToolCallItem,
        InvalidToolCallItem,
        MessageItem,
        MessageItem,
        UnknownItem,
    ]
    assert r.text == "It is -3 C in Oslo."
    assert r.reasoning == "The user wants the weather. Call the tool."
    tool = r.output[2]
    assert isinstance(tool, ToolCallItem)
    assert tool.tool == "get_weather" and tool.arguments == {"city": "Oslo"}
    assert tool.provider_info == {"type": "plugin", "plugin_id": "mcp/weather"}
    bad = r.output[3]
    assert isinstance(bad, InvalidToolCallItem) and bad.metadata is not None
    assert bad.metadata["tool_name"] == "open_browser"
    unknown = r.output[6]
    assert isinstance(unknown, UnknownItem) and unknown.item_type == "audio"
    assert r.stats.input_tokens == 329 and r.stats.total_output_tokens == 268
    assert r.stats.reasoning_output_tokens == 5 and r.stats.tokens_per_second == 43.73
    assert r.stats.time_to_first_token_seconds == 0.781
    assert r.stats.model_load_time_seconds == 2.656
    assert r.response_id == "resp_02b2017dbc06c12bfc353a2ed6c2b802f8cc682884bb5716"
    # Encodes back to the wire shape, "type" included (the CLI's --json relies on it).
    assert json.loads(msgspec.json.encode(r.output[0]))["type"] == "reasoning"


def test_chat_result_that_spent_its_budget_on_reasoning() -> None:
    r = parse_chat_result(data("chat_reasoning_only.json"))
    assert r.text == "" and r.reasoning.startswith("Thinking")
    assert r.response_id is None and r.stats.model_load_time_seconds is None


def test_load_results_current_and_draft_spelling() -> None:
    r = parse_load_result(data("load.json"))
    assert r.instance_id == "openai/gpt-oss-20b" and r.load_time_seconds == 9.099
    assert r.load_config["num_experts"] == 4 and r.not_applied == ()
    assert parse_load_result(data("load_draft.json")).instance_id == "openai/gpt-oss-20b"
    with pytest.raises(ProtocolError):
        parse_load_result(b'{"status": "loaded"}')


def test_download_records() -> None:
    started = parse_download(data("download_started.json"))
    assert (started.job_id, started.status, started.finished) == (
        "job_493c7c9ded",
        "downloading",
        False,
    )
    done = parse_download(data("download_done.json"))
    assert done.finished and done.downloaded_bytes == done.total_size_bytes
    already = parse_download(data("download_already.json"))
    assert already.job_id is None and already.finished


def test_html_error_page_becomes_its_first_readable_line() -> None:
    text = data("error_500.html").decode()
    assert first_readable_line(text) == "Internal Server Error"
    assert (
        first_readable_line("<html><head><title>Only a title</title></head></html>")
        == "Only a title"
    )
    assert first_readable_line("<html><body><h1>Bad &amp; gone</h1></body></html>") == "Bad & gone"
    assert first_readable_line("plain\nsecond") == "plain"


def test_invalid_union_repetition_is_shown_once() -> None:
    one = "Invalid input: expected text, or an image"
    assert dedupe_joined_message(", ".join([one] * 3)) == one
    assert dedupe_joined_message(one) == one
    assert dedupe_joined_message("a, b") == "a, b"


# Any JSON in: records out, or the client's own ProtocolError; never anything else.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
model_keys = st.sampled_from(
    [
        "key",
        "id",
        "type",
        "quantization",
        "loaded_instances",
        "capabilities",
        "size_bytes",
        "display_name",
        "state",
        "loaded_context_length",
        "variants",
        "max_context_length",
    ]
)
entryish = st.dictionaries(model_keys, json_values, max_size=8)
envelopes = st.one_of(
    json_values,
    st.builds(lambda es: {"models": es}, st.lists(entryish, max_size=4)),
    st.builds(lambda es: {"object": "list", "data": es}, st.lists(entryish, max_size=4)),
)


@settings(max_examples=300, deadline=None)
@given(envelopes)
def test_any_json_gives_models_or_a_protocol_error(value: Any) -> None:
    body = json.dumps(value).encode()
    try:
        models = parse_models(body)
    except ProtocolError:
        return  # the one error allowed; anything else fails the test
    for m in models:
        assert isinstance(m.key, str) and m.key
        assert all(isinstance(i.id, str) and i.id for i in m.instances)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_gives_a_chat_result_or_a_protocol_error(value: Any) -> None:
    with contextlib.suppress(ProtocolError):
        parse_chat_result(json.dumps(value).encode())


@given(st.binary(max_size=64))
def test_any_bytes_give_models_or_a_protocol_error(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_models(body)


# Numbers as a broken or hostile server might send them, as raw JSON text.
wild_numbers = (
    st.sampled_from(
        [
            *("1e308", "1e400", "-1e400", "-1", "9" * 5000, "true", '"12"', "0.5", "4096.0"),
            *("null", "[]", "{}", str(MAX_BYTES), str(MAX_BYTES + 1), str(2**64)),
        ]
    )
    | st.integers().map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
)
COUNTS = ["context_length", "parallel", "eval_batch_size", "num_experts"]
FLAGS = ["flash_attention", "offload_kv_cache_to_gpu"]


@settings(max_examples=200, deadline=None)
@given(
    entryish,
    st.lists(wild_numbers, min_size=3, max_size=3),
    st.lists(st.lists(wild_numbers, min_size=6, max_size=6), max_size=3),
    st.booleans(),
)
def test_an_entry_with_a_key_is_never_skipped_whatever_its_numbers(
    extra: dict[str, Any], top: list[str], configs: list[list[str]], v0: bool
) -> None:
    slots: list[str] = []

    def slot(raw: str) -> str:
        slots.append(raw)
        return f"@@{len(slots) - 1}@@"

    entry = {
        **extra,
        "key": "the/model",
        "size_bytes": slot(top[0]),
        "max_context_length": slot(top[1]),
        "quantization": {"name": "Q4", "bits_per_weight": slot(top[2])},
        "loaded_instances": [
            {"id": f"i{n}", "config": {k: slot(v) for k, v in zip(COUNTS + FLAGS, c, strict=True)}}
            for n, c in enumerate(configs)
        ],
    }
    envelope = {"object": "list", "data": [entry]} if v0 else {"models": [entry]}
    try:
        text = json.dumps(envelope, allow_nan=False)
    except ValueError:  # an infinite float among the extras: not JSON, another test's case
        assume(False)
    for n, raw in enumerate(slots):
        text = text.replace(f'"@@{n}@@"', raw)
    (m,) = parse_models(text.encode())  # kept, whatever else is wrong with it

    assert m.key == "the/model"
    assert [i.id for i in m.instances] == [f"i{n}" for n in range(len(configs))]
    for name, raw, limit in [
        ("size_bytes", top[0], MAX_BYTES),
        ("max_context_length", top[1], MAX_TOKENS),
    ]:
        value = getattr(m, name)
        assert value is None or 0 <= value <= limit
        # None is "not said" (null) or "unreadable" (named); a value is never named.
        assert (value is None and raw != "null") == (name in m.malformed)
    for inst, raws in zip(m.instances, configs, strict=True):
        for name, raw in zip(COUNTS + FLAGS, raws, strict=True):
            value = getattr(inst, name)
            assert value is None or isinstance(value, bool) or 0 <= value <= MAX_TOKENS
            assert (value is None and raw != "null") == (name in inst.malformed)
    json.dumps(msgspec.to_builtins(m), allow_nan=False)  # what the CLI's --json does


def test_a_hardware_survey_gives_the_servers_vram_and_gpus_whatever_its_shape() -> None:
    from lmgui.api.records import ServerGpu, parse_hardware

    def engine(gpus: Any, memory: Any = None) -> dict[str, Any]:
        return {
            "hardwareSurvey": {"gpuSurveyResult": {"gpuInfo": gpus}},
            **({"memoryInfo": memory} if memory is not None else {}),
        }

    cuda = {"name": "RTX 4090", "dedicatedMemoryCapacityBytes": 24 * 10**9}
    apple = {"name": "Apple M3 Max", "dedicatedMemoryCapacityBytes": 0,
             "totalMemoryCapacityBytes": 96 * 10**9}  # fmt: skip
    one = parse_hardware({"engines": [engine([cuda], {"vramCapacity": 23 * 10**9})]})
    assert one is not None and one.vram_bytes == 23 * 10**9  # LM Studio's own figure first
    assert one.gpus == (ServerGpu("RTX 4090", 24 * 10**9),)
    two = parse_hardware({"engines": [engine([cuda, apple])]})
    assert two is not None and two.vram_bytes == 120 * 10**9  # dedicated, else the total
    no_gpu = {"engines": [engine([])], "status": "ok"}
    garbage = {"engines": [engine([{"name": 5, "dedicatedMemoryCapacityBytes": "24"}]), None]}
    nothing: Any
    for nothing in (no_gpu, garbage, {"status": "NoCompatibleBackends", "engines": []}, [], None):
        assert parse_hardware(nothing) is None
    huge = parse_hardware({"engines": [engine([{**cuda, "dedicatedMemoryCapacityBytes": 1e300}])]})
    assert huge is None  # out of range is unknown, never a budget


def test_a_server_estimate_without_a_figure_is_none_and_odd_fields_are_unknown() -> None:
    from lmgui.api.records import parse_estimate

    e = parse_estimate({"memory": {"totalVramBytes": 5 * 10**9, "confidence": 3},
                        "passesGuardrails": "yes"})  # fmt: skip
    assert e is not None and e.vram_bytes == 5 * 10**9
    assert (e.passes_guardrails, e.confidence, e.total_bytes) == (None, None, None)
    assert parse_estimate({"memory": {"totalVramBytes": -1}}) is None
    assert parse_estimate({"passesGuardrails": True}) is None


def test_v0_capabilities_as_a_list_of_names_are_read() -> None:
    body = json.dumps(
        {
            "object": "list",
            "data": [
                {"id": "v0/tools", "type": "llm", "state": "not-loaded",
                 "capabilities": ["tool_use"]},
                {"id": "v0/plain", "type": "llm", "state": "not-loaded", "capabilities": []},
                {"id": "v0/odd", "type": "llm", "state": "not-loaded", "capabilities": [3]},
            ],
        }
    ).encode()  # fmt: skip
    tools, plain, odd = parse_models(body)
    assert tools.capabilities is not None and tools.capabilities.trained_for_tool_use
    assert plain.capabilities is not None and not plain.capabilities.trained_for_tool_use
    assert odd.capabilities is None and odd.malformed == ("capabilities",)
