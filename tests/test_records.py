"""The parsers on recorded bodies (both list shapes, every output item) and on arbitrary JSON."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmgui.api.errors import ProtocolError, dedupe_joined_message, first_readable_line
from lmgui.api.records import (
    InvalidToolCallItem,
    MessageItem,
    ReasoningItem,
    ToolCallItem,
    UnknownItem,
    parse_chat_result,
    parse_download,
    parse_load_result,
    parse_models,
)
from tests.conftest import data


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
