"""Estimated memory of a loaded instance (LM Studio's REST API reports none).

The formula and its assumptions are written out in docs/vram.md; keep the two in step.

    weights_gpu = size_bytes x gpu_fraction           (the file is the weights)
    kv          = context_length x kv_bytes_per_token
    kv_bytes_per_token = 40 kB x sqrt(parameters in billions)
    overhead    = 5 % of weights_gpu                  (compute buffers)
    VRAM        = weights_gpu + overhead + (kv if KV cache on GPU and gpu_fraction > 0)
    RAM         = the rest of the weights + (kv when it is not in VRAM)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lmgui.api.records import Instance, Model

__all__ = [
    "VramEstimate",
    "estimate_instance",
    "estimate_loaded",
    "kv_bytes_per_token",
    "params_billions",
]

KV_BYTES_PER_TOKEN_AT_1B = 40_000.0
OVERHEAD_FRACTION = 0.05
DEFAULT_CONTEXT = 4096

_PARAMS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT])", re.IGNORECASE)
_SCALE = {"K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}


def params_billions(model: Model) -> float | None:
    """Parameters in billions, from ``params_string`` ("9B", "270M", "26B-A4B" -> 26), or from
    the file size and bits per weight when the string is missing."""
    if model.params_string:
        m = _PARAMS.match(model.params_string)
        if m:
            return float(m.group(1)) * _SCALE[m.group(2).upper()]
    size = _known_size(model)
    if not size:
        return None
    q = model.quantization
    if q and q.bits_per_weight and q.bits_per_weight > 0:
        return size * 8 / q.bits_per_weight / 1e9
    return size * 8 / 4.5 / 1e9  # assume a 4-bit-class quantization


def _known_size(model: Model) -> int:
    """The file size, or 0 when unknown: not sent, unreadable (the parser leaves None and names
    it in ``malformed``) or negative in a record built elsewhere; never a negative estimate."""
    size = model.size_bytes
    return size if size is not None and size > 0 else 0


def kv_bytes_per_token(model: Model) -> float:
    """KV-cache bytes per token of context at f16; grows with sqrt(parameters).

    Calibrated on grouped-query-attention models: Llama 3.2 1B ~ 32 kB, Llama 3.1 8B ~ 128 kB,
    Llama 3.3 70B ~ 320 kB per token.
    """
    billions = params_billions(model) or 1.0
    return KV_BYTES_PER_TOKEN_AT_1B * math.sqrt(max(billions, 0.01))


@dataclass(frozen=True)
class VramEstimate:
    weights_gpu_bytes: int
    weights_ram_bytes: int
    kv_bytes: int
    kv_on_gpu: bool
    overhead_bytes: int

    @property
    def vram_bytes(self) -> int:
        kv = self.kv_bytes if self.kv_on_gpu else 0
        return self.weights_gpu_bytes + self.overhead_bytes + kv

    @property
    def ram_bytes(self) -> int:
        return self.weights_ram_bytes + (0 if self.kv_on_gpu else self.kv_bytes)


def estimate_instance(
    model: Model,
    *,
    context_length: int | None = None,
    gpu_fraction: float = 1.0,
    kv_on_gpu: bool | None = None,
) -> VramEstimate:
    """The estimated memory of one instance of ``model`` loaded with these settings."""
    gpu_fraction = min(max(gpu_fraction, 0.0), 1.0)
    size = _known_size(model)
    weights_gpu = int(size * gpu_fraction)
    context = context_length if context_length and context_length > 0 else DEFAULT_CONTEXT
    kv = int(context * kv_bytes_per_token(model))
    kv_gpu = (True if kv_on_gpu is None else kv_on_gpu) and gpu_fraction > 0
    return VramEstimate(
        weights_gpu_bytes=weights_gpu,
        weights_ram_bytes=size - weights_gpu,
        kv_bytes=kv,
        kv_on_gpu=kv_gpu,
        overhead_bytes=int(weights_gpu * OVERHEAD_FRACTION),
    )


def estimate_loaded(
    model: Model, instance: Instance, gpu_fraction: float | None = None
) -> int | None:
    """Estimated VRAM of a loaded instance as the server lists it (``gpu_fraction`` as lmgui
    loaded it, when known), or None when the model's size or the instance's context was sent
    unreadable: a number from a value lmgui could not read would be a confident wrong one.

    The one estimate the table, the tray and ``lmgui ps`` all show."""
    if "size_bytes" in model.malformed or "context_length" in instance.malformed:
        return None
    return estimate_instance(
        model,
        context_length=instance.context_length,
        gpu_fraction=1.0 if gpu_fraction is None else gpu_fraction,
        kv_on_gpu=instance.offload_kv_cache_to_gpu,
    ).vram_bytes
