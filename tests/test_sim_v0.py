"""lmgui-sim's v0 REST endpoints, as clients that still use them (llm-lmstudio, scripts that
poll a load's progress) meet them: model rows with a state going not-loaded -> loading ->
loaded, the per-model detail by URL-encoded key, v0 chat and embeddings; and the ``llm`` CLI with
the llm-lmstudio plugin against the simulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lmgui.sim import Simulator
from tests.conftest import SimFactory, wait_until

SMALL = "google/gemma-3-270m"
EMBEDDER = "text-embedding-nomic-embed-text-v1.5"


def detail_path(key: str) -> str:
    return "/api/v0/models/" + key.replace("/", "%2F")


async def test_v0_rows_have_the_older_shape_with_capabilities(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as h:
        rows = {row["id"]: row for row in (await h.get("/api/v0/models")).json()["data"]}
    assert rows["qwen/qwen3-4b"] == {
        "id": "qwen/qwen3-4b",
        "object": "model",
        "type": "llm",
        "publisher": "qwen",
        "arch": "qwen3",
        "compatibility_type": "gguf",
        "quantization": "Q4_K_M",
        "state": "not-loaded",
        "max_context_length": 40960,
        "capabilities": ["tool_use"],
    }
    assert rows["qwen/qwen2.5-vl-7b-instruct"]["type"] == "vlm"
    assert rows["qwen/qwen2.5-vl-7b-instruct"]["capabilities"] == []
    assert rows[EMBEDDER]["type"] == "embeddings"


async def test_detail_by_url_encoded_key_instance_id_or_plain_slash(sim: Simulator) -> None:
    inst = sim.state.begin_load(SMALL, {"context_length": 2048})
    sim.state.finish_load(inst.id)
    second = sim.state.begin_load(SMALL, {})
    sim.state.finish_load(second.id)
    async with httpx.AsyncClient(base_url=sim.url) as h:
        encoded = (await h.get(detail_path(SMALL))).json()
        plain = (await h.get("/api/v0/models/" + SMALL)).json()  # llm-lmstudio sends it so
        by_instance = (await h.get(detail_path(second.id))).json()
        missing = await h.get(detail_path("nobody/nothing"))
    assert encoded == plain == by_instance
    assert encoded["state"] == "loaded" and encoded["loaded_context_length"] == 2048
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


async def test_a_slow_load_is_seen_loading_then_loaded(make_sim: SimFactory) -> None:
    sim = make_sim(load_seconds_per_gb=2.0)  # about half a second for the small model
    seen: list[str] = []
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as h:

        async def is_loaded() -> bool:
            row = (await h.get(detail_path(SMALL))).json()
            if not seen or seen[-1] != row["state"]:
                seen.append(row["state"])
            return bool(row["state"] == "loaded")

        await is_loaded()
        chat = asyncio.create_task(
            h.post(
                "/api/v0/chat/completions",
                json={"model": SMALL, "messages": [{"role": "user", "content": "hi"}]},
            )
        )
        await wait_until(is_loaded, step=0.01)
        r = await chat
    assert seen == ["not-loaded", "loading", "loaded"]
    assert r.status_code == 200


async def test_v0_chat_and_embeddings_add_stats_model_info_and_runtime(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.post(
            "/api/v0/chat/completions",
            json={
                "model": SMALL,
                "messages": [{"role": "user", "content": "Introduce yourself."}],
                "max_tokens": -1,
                "ttl": 300,
            },
        )
        body = r.json()
        assert body["object"] == "chat.completion"
        assert "Introduce yourself." in body["choices"][0]["message"]["content"]
        assert set(body["stats"]) == {
            "tokens_per_second",
            "time_to_first_token",
            "generation_time",
            "stop_reason",
        }
        assert body["stats"]["stop_reason"] == "eosFound"
        assert body["model_info"] == {
            "arch": "gemma3",
            "quant": "Q4_0",
            "format": "gguf",
            "context_length": 4096,
        }
        assert body["runtime"]["supported_formats"] == ["gguf"]
        assert sim.state.instances[SMALL].ttl == 300

        r = await h.post("/api/v0/embeddings", json={"model": EMBEDDER, "input": "Some text"})
        emb = r.json()
        assert emb["object"] == "list" and emb["data"][0]["object"] == "embedding"
        assert len(emb["data"][0]["embedding"]) == 768

        r = await h.post("/api/v0/completions", json={"model": SMALL, "prompt": "the meaning"})
        assert r.json()["object"] == "text_completion" and "stats" in r.json()


def test_the_llm_cli_with_llm_lmstudio_chats_without_stacking_instances(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    pytest.importorskip("llm_lmstudio", reason="the llm-lmstudio plugin is not installed")
    sim = make_sim()
    env = {
        **os.environ,
        "LLM_USER_PATH": str(tmp_path),
        "LMSTUDIO_API_BASE": sim.url,
        "OPENAI_API_KEY": "unused",
    }

    def llm(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "llm", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"lmstudio/{SMALL}" in llm("models", "list")
    first = llm("-m", f"lmstudio/{SMALL}", "hello there")
    assert "You said: \u201chello there\u201d" in first
    # The plugin asks /api/v0/models/{key} whether the model is loaded: it is, so the second
    # prompt uses the same instance instead of loading a :2.
    second = llm("-m", f"lmstudio/{SMALL}", "and again")
    assert "You said: \u201cand again\u201d" in second
    assert list(sim.state.instances) == [SMALL]
    assert len(sim.received("POST", "/api/v1/models/load")) == 1
    vector = llm("embed", "-m", EMBEDDER, "-c", "hello")
    assert vector.startswith("[") and vector.count(",") == 767
