"""What a load asks for, as a value object: built by the load dialog, the tray and the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["LoadRequest"]


@dataclass(frozen=True)
class LoadRequest:
    """What the load dialog (or the tray's quick load) asks for."""

    model_key: str
    context_length: int | None = None
    gpu: Literal["max", "off"] | float | None = None
    ttl_seconds: int | None = None
    identifier: str | None = None
    flash_attention: bool | None = None
    eval_batch_size: int | None = None
    num_experts: int | None = None
    offload_kv_cache_to_gpu: bool | None = None
    parallel: int | None = None
    server: str = field(default="")
    """The server to load on (its normalized URL; "" for the window's current one). Never part
    of the remembered load settings: a model's settings follow it to any server."""

    @property
    def gpu_fraction(self) -> float | None:
        if self.gpu is None:
            return None
        if isinstance(self.gpu, str):
            return 1.0 if self.gpu == "max" else 0.0
        return float(self.gpu)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "server"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadRequest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "server"}
        return cls(**known)

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``LMStudioClient.load`` for this request."""
        return {
            "context_length": self.context_length,
            "eval_batch_size": self.eval_batch_size,
            "flash_attention": self.flash_attention,
            "num_experts": self.num_experts,
            "offload_kv_cache_to_gpu": self.offload_kv_cache_to_gpu,
            "gpu": self.gpu,
            "ttl": self.ttl_seconds,
            "identifier": self.identifier,
            "parallel": self.parallel,
        }
