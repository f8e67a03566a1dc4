"""Model catalogs for the simulator: the built-in demo set, files, and synthetic large sets.

Entries use the v1 wire shape of ``GET /api/v1/models`` without ``loaded_instances`` (the
simulator adds those). A catalog file is a JSON list of such entries, or ``{"models": [...]}``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

__all__ = ["DEMO_CATALOG", "REMOTE_CATALOG", "load_catalog", "synthetic_catalog"]

GB = 1_000_000_000


def _llm(
    key: str,
    name: str,
    arch: str,
    quant: str,
    bits: float,
    size_gb: float,
    params: str,
    max_ctx: int,
    *,
    fmt: str = "gguf",
    vision: bool = False,
    tools: bool = False,
    reasoning: list[str] | None = None,
    reasoning_default: str | None = None,
    variants: list[str] | None = None,
    experts: int | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "llm",
        "publisher": key.split("/")[0],
        "key": key,
        "display_name": name,
        "architecture": arch,
        "quantization": {"name": quant, "bits_per_weight": bits},
        "size_bytes": int(size_gb * GB),
        "params_string": params,
        "max_context_length": max_ctx,
        "format": fmt,
        "capabilities": {"vision": vision, "trained_for_tool_use": tools},
        "description": None,
    }
    if reasoning:
        entry["capabilities"]["reasoning"] = {
            "allowed_options": reasoning,
            "default": reasoning_default or reasoning[-1],
        }
    if variants:
        entry["variants"] = variants
        entry["selected_variant"] = variants[0]
    if experts:
        entry["_sim_experts"] = experts  # simulator-only hint, stripped before serving
    return entry


def _embedding(
    key: str, name: str, quant: str, bits: float, size_gb: float, ctx: int, dims: int = 768
) -> dict[str, Any]:
    return {
        "type": "embedding",
        "publisher": key.split("/")[0] if "/" in key else "lmstudio-community",
        "key": key,
        "display_name": name,
        "quantization": {"name": quant, "bits_per_weight": bits},
        "size_bytes": int(size_gb * GB),
        "params_string": None,
        "max_context_length": ctx,
        "format": "gguf",
        "_sim_dimensions": dims,  # the embedding vectors' length; stripped before serving
    }


DEMO_CATALOG: list[dict[str, Any]] = [
    _llm("google/gemma-3-270m", "Gemma 3 270M", "gemma3", "Q4_0", 4, 0.24, "270M", 32768),
    _llm(
        "meta/llama-3.2-1b-instruct",
        "Llama 3.2 1B Instruct",
        "llama",
        "Q8_0",
        8,
        1.32,
        "1B",
        131072,
        tools=True,
    ),
    _llm(
        "ibm/granite-4-micro",
        "Granite 4 Micro",
        "granitehybrid",
        "Q4_K_M",
        4,
        2.1,
        "3B",
        131072,
        tools=True,
    ),
    _llm(
        "mlx-community/llama-3.2-3b-instruct-4bit",
        "Llama 3.2 3B Instruct (MLX)",
        "llama",
        "4bit",
        4,
        1.8,
        "3B",
        131072,
        fmt="mlx",
        tools=True,
    ),
    _llm(
        "qwen/qwen3-4b",
        "Qwen3 4B",
        "qwen3",
        "Q4_K_M",
        4,
        2.5,
        "4B",
        40960,
        tools=True,
        reasoning=["off", "on"],
        reasoning_default="on",
    ),
    _llm(
        "qwen/qwen2.5-vl-7b-instruct",
        "Qwen2.5 VL 7B Instruct",
        "qwen2vl",
        "Q4_K_M",
        4,
        4.7,
        "7B",
        128000,
        vision=True,
    ),
    _llm(
        "qwen/qwen3.5-9b",
        "Qwen3.5 9B",
        "qwen35",
        "Q4_K_M",
        4,
        6.55,
        "9B",
        262144,
        vision=True,
        tools=True,
        reasoning=["off", "on"],
        reasoning_default="on",
    ),
    _llm(
        "liquid/lfm2-1.2b",
        "LFM2 1.2B",
        "lfm2",
        "Q8_0",
        8,
        1.25,
        "1.2B",
        128000,
        variants=["liquid/lfm2-1.2b@q8_0", "liquid/lfm2-1.2b@q4_k_m"],
    ),
    _llm(
        "openai/gpt-oss-20b",
        "gpt-oss 20B",
        "gpt-oss",
        "MXFP4",
        4.25,
        12.1,
        "21B-A3.6B",
        131072,
        tools=True,
        reasoning=["low", "medium", "high"],
        reasoning_default="medium",
        experts=4,
    ),
    _llm(
        "google/gemma-4-26b-a4b",
        "Gemma 4 26B A4B",
        "gemma4",
        "Q4_K_M",
        4,
        17.99,
        "26B-A4B",
        262144,
        vision=True,
        tools=True,
        reasoning=["off", "on"],
        reasoning_default="on",
        variants=["google/gemma-4-26b-a4b@q4_k_m", "google/gemma-4-26b-a4b@q8_0"],
        experts=8,
    ),
    _llm(
        "mistralai/mistral-small-3.2",
        "Mistral Small 3.2",
        "mistral3",
        "Q4_K_M",
        4,
        14.3,
        "24B",
        131072,
        vision=True,
        tools=True,
    ),
    _llm(
        "deepseek/deepseek-r1-distill-llama-70b",
        "DeepSeek R1 Distill Llama 70B",
        "llama",
        "Q4_K_M",
        4,
        42.5,
        "70B",
        131072,
        reasoning=["on"],
        reasoning_default="on",
    ),
    _llm(
        "meta/llama-3.3-70b-instruct",
        "Llama 3.3 70B Instruct",
        "llama",
        "Q3_K_L",
        3,
        37.1,
        "70B",
        131072,
        tools=True,
    ),
    _embedding(
        "text-embedding-nomic-embed-text-v1.5", "Nomic Embed Text v1.5", "F16", 16, 0.27, 2048
    ),
    _embedding("qwen/qwen3-embedding-0.6b", "Qwen3 Embedding 0.6B", "Q8_0", 8, 0.64, 32768, 1024),
]

REMOTE_CATALOG: list[dict[str, Any]] = [
    _llm(
        "qwen/qwen3-8b",
        "Qwen3 8B",
        "qwen3",
        "Q4_K_M",
        4,
        5.03,
        "8B",
        40960,
        tools=True,
        reasoning=["off", "on"],
        reasoning_default="on",
    ),
    _llm(
        "microsoft/phi-4-mini-reasoning",
        "Phi 4 Mini Reasoning",
        "phi3",
        "Q4_K_M",
        4,
        2.49,
        "3.8B",
        131072,
        reasoning=["on"],
    ),
]


def load_catalog(path: str | Path) -> list[dict[str, Any]]:
    """A catalog from a JSON file: a list of v1 model entries or ``{"models": [...]}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    entries = data.get("models") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("key"), str) for e in entries
    ):
        raise ValueError(f"{path}: expected a list of model entries, each with a 'key'")
    for e in entries:
        e.pop("loaded_instances", None)
        e.setdefault("type", "llm")
    return entries


def synthetic_catalog(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` plausible, distinct models (for benchmarks with large catalogs)."""
    rng = random.Random(seed)
    sizes = [
        (0.5, "0.5B"),
        (1.5, "1.5B"),
        (3, "3B"),
        (7, "7B"),
        (8, "8B"),
        (14, "14B"),
        (32, "32B"),
        (70, "70B"),
    ]
    quants = [("Q4_K_M", 4), ("Q5_K_M", 5), ("Q6_K", 6), ("Q8_0", 8)]
    out = []
    for i in range(count):
        billions, params = rng.choice(sizes)
        quant, bits = rng.choice(quants)
        pub = rng.choice(["qwen", "meta", "google", "mistralai", "ibm", "microsoft"])
        key = f"{pub}/synthetic-{i:05d}-{params.lower()}"
        out.append(
            _llm(
                key,
                f"Synthetic {i} {params}",
                "llama",
                quant,
                bits,
                billions * bits / 8 * 1.05,
                params,
                rng.choice([8192, 32768, 131072]),
                vision=rng.random() < 0.2,
                tools=rng.random() < 0.5,
            )
        )
    return out
