"""Deterministic answers for the simulator that make threading visible.

The same seed, model, thread and input always give the same text. Every answer names its turn
number and quotes the user's input, and from the second turn on it refers back to an earlier turn
of the same thread, so a wrong ``previous_response_id`` shows at a glance.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Turn", "embed", "generate", "snippet", "tokens_of"]

_SENTENCES = (
    "The server keeps the thread, so each turn sends only the new input.",
    "A branch can start from any earlier answer in the thread.",
    "The context window fills as the thread grows.",
    "Quantization trades a little precision for a lot of memory.",
    "GPU offload decides how many layers live in video memory.",
    "Flash attention lowers the cost of long prompts.",
    "The KV cache grows with the context length.",
    "An idle instance unloads when its TTL runs out.",
    "A JIT load brings a model back on demand.",
    "Several instances of one model can serve requests side by side.",
    "Each instance has its own context length and parallel slots.",
    "Reasoning output is shown apart from the answer.",
    "Tokens per second and time to first token are reported for every answer.",
    "This answer comes from the lmgui simulator, not from a real model.",
)


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str


def snippet(text: str, limit: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tokens_of(text: str) -> list[str]:
    """Split into the deltas the simulator streams: one word (with its space) per token."""
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]] if words else []


def _rng(seed: int, *parts: str) -> random.Random:
    h = zlib.crc32(str(seed).encode())
    for p in parts:
        h = zlib.crc32(p.encode("utf-8", "replace"), h)
    return random.Random(h)


def generate(
    *,
    seed: int,
    model_name: str,
    history: Sequence[Turn],
    user_text: str,
    images: int = 0,
    reasoning: bool = False,
    system_prompt: str | None = None,
    length: int | None = None,
) -> tuple[str, str]:
    """(reasoning text, message text) for one turn; reasoning is "" when off."""
    rng = _rng(seed, model_name, user_text, *(t.user + "\x00" + t.assistant for t in history))
    turn = len(history) + 1
    parts = [f"Turn {turn}. You said: \u201c{snippet(user_text)}\u201d."]
    if images:
        parts.append(f"I see {images} image{'s' if images > 1 else ''}.")
    if history:
        k = rng.randrange(len(history))
        parts.append(f"Earlier, in turn {k + 1}, you said \u201c{snippet(history[k].user)}\u201d.")
    if system_prompt:
        parts.append(f"(System: {snippet(system_prompt, 32)})")
    n_words = length if length is not None else rng.randint(24, 72)
    words: list[str] = []
    while len(words) < n_words:
        words.extend(rng.choice(_SENTENCES).split())
    parts.extend(words[:n_words])
    message = " ".join(parts)
    thought = ""
    if reasoning:
        thought = (
            f"The user is on turn {turn} with {model_name}. "
            f"They wrote {len(user_text.split())} words; "
            f"{'there is earlier context to use' if history else 'this starts the thread'}. "
            "I will answer briefly and refer back where it helps."
        )
    return thought, message


def embed(*, seed: int, model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector for ``text``: the same text and model always give the same vector."""
    rng = _rng(seed, "embed", model, text)
    v = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]
