"""Where a load goes: REST with the documented keys, REST with LM Studio's extension keys, or
LM Studio's ``lms`` command, and what to tell the user about options that were not applied.

GPU offload, TTL, identifier and parallel are not part of the documented REST body. They are tried
over REST first; a server that rejects them is remembered (per server, since each client talks to
one), and the load then goes through ``lms`` when the server is on this machine and ``lms`` can
address it, else through REST without them, naming them in ``LoadResult.not_applied`` with the
reason, so callers can say the true reason and enforce a TTL themselves.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import msgspec

from lmgui.api.errors import BadRequestError, ProtocolError
from lmgui.api.limits import Deadlines
from lmgui.api.lms import LmsLoadOptions, LmsRunner
from lmgui.api.records import LoadResult, Model, parse_load_result
from lmgui.api.sdk import SdkChannel
from lmgui.api.transport import Transport
from lmgui.api.urls import lms_address

__all__ = ["EXTENSION_LOAD_KEYS", "GpuSetting", "LoadPolicy", "sdk_config"]

EXTENSION_LOAD_KEYS = ("gpu", "ttl", "identifier", "parallel")
"""Load options the real REST API rejects; set through ``lms`` or reported as not applied."""

_LMS_OPTION_KEYS = frozenset({"gpu", "ttl", "identifier", "context_length", "parallel"})

_SDK_CONFIG = {
    "context_length": "contextLength",
    "eval_batch_size": "evalBatchSize",
    "flash_attention": "flashAttention",
    "num_experts": "numExperts",
    "offload_kv_cache_to_gpu": "offloadKVCacheToGpu",
}
"""lmgui's load option names and the SDK's load config names for them."""
_SDK_OPTION_KEYS = frozenset({*_SDK_CONFIG, "gpu", "ttl", "identifier", "parallel"})
"""What a load through the SDK channel applies (parallel as a raw KV field: see sdk.py)."""

GpuSetting = Literal["max", "off"] | float


def sdk_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """lmgui's load options as the SDK's load config (``parallel`` goes on its own)."""
    config: dict[str, Any] = {
        name: options[key] for key, name in _SDK_CONFIG.items() if options.get(key) is not None
    }
    if options.get("gpu") is not None:
        config["gpu"] = {"ratio": options["gpu"]}
    return config


class LoadPolicy:
    """Loads models on one server, remembering which extension keys its REST API rejected."""

    def __init__(
        self,
        transport: Transport,
        deadlines: Deadlines,
        lms: LmsRunner | Literal["auto"] | None,
        list_models: Callable[[], Awaitable[list[Model]]],
        sdk: SdkChannel | None = None,
    ) -> None:
        self._transport = transport
        self._deadlines = deadlines
        self._lms_setting = lms
        self._sdk = sdk
        # lms finds its new instance by listing the server before and after the load.
        self._list_models = list_models
        self.rejected_keys: set[str] = set()

    async def load(
        self,
        model_key: str,
        options: Mapping[str, Any],
        on_progress: Callable[[float], None] | None = None,
    ) -> LoadResult:
        """Load ``model_key``; ``options`` are the load options the caller set (none is None).

        With an extension option set and LM Studio's SDK channel available, the server applies
        every option through it (with progress); otherwise REST, then ``lms``."""
        documented = {k: v for k, v in options.items() if k not in EXTENSION_LOAD_KEYS}
        ext = {k: v for k, v in options.items() if k in EXTENSION_LOAD_KEYS}
        if ext and self._sdk is not None and await self._sdk.client() is not None:
            return await self._sdk_load(model_key, options, on_progress)
        if ext and not (ext.keys() & self.rejected_keys):
            try:
                return await self._rest_load(model_key, {**documented, **ext})
            except BadRequestError as exc:
                if "Unrecognized key" not in (exc.server_message or ""):
                    raise
                rejected = set(exc.unrecognized_keys) & ext.keys() or set(ext)
                self.rejected_keys |= rejected
        reason = None
        if ext.keys() & self.rejected_keys:
            runner = self.lms_runner()
            if not isinstance(runner, str):
                return await self._lms_load(runner, model_key, documented, ext)
            reason = f"LM Studio's REST API does not take them, and lms {runner}"
        accepted = {k: v for k, v in ext.items() if k not in self.rejected_keys}
        result = await self._rest_load(model_key, {**documented, **accepted})
        not_applied = tuple(k for k in ext if k in self.rejected_keys)
        return msgspec.structs.replace(
            result, not_applied=not_applied, not_applied_reason=reason if not_applied else None
        )

    async def _rest_load(self, model_key: str, options: Mapping[str, Any]) -> LoadResult:
        t = self._transport
        body = {"model": model_key, **options, "echo_load_config": True}
        raw = await t.send(
            "POST",
            "/api/v1/models/load",
            what="the answer to a load",
            deadline=self._deadlines.load,
            json=body,
            read_timeout=self._deadlines.load,
            expected=("instance_id", "model_instance_id"),
        )
        try:
            return parse_load_result(raw)
        except ProtocolError as exc:
            raise t.err(ProtocolError, f"{t.where}: {exc}") from None

    async def _sdk_load(
        self,
        model_key: str,
        options: Mapping[str, Any],
        on_progress: Callable[[float], None] | None,
    ) -> LoadResult:
        assert self._sdk is not None
        models = {m.key: m for m in await self._list_models()}
        model = models.get(model_key)
        embedding = model is not None and model.type == "embedding"
        config = sdk_config(options)
        identifier, seconds = await self._sdk.load(
            model_key,
            embedding=embedding,
            identifier=options.get("identifier"),
            # The SDK's own default TTL is an hour: None here means what the user chose, none.
            ttl=options.get("ttl"),
            config=config,
            parallel=None if embedding else options.get("parallel"),
            on_progress=on_progress,
        )
        listed = [i for m in await self._list_models() for i in m.instances if i.id == identifier]
        not_applied = tuple(k for k in options if k not in _SDK_OPTION_KEYS)
        reason = "LM Studio's SDK channel does not take them" if not_applied else None
        return LoadResult(
            instance_id=identifier,
            load_time_seconds=round(seconds, 3),
            load_config=dict(listed[0].config) if listed else {},
            type="embedding" if embedding else "llm",
            status="loaded",
            not_applied=not_applied,
            not_applied_reason=reason,
            via="sdk",
        )

    def lms_runner(self) -> LmsRunner | str:
        """The ``lms`` to load through, or why there is none (a phrase after "lms ...")."""
        if self._lms_setting is None or (self._lms_setting == "auto" and LmsRunner.turned_off()):
            return "is turned off in lmgui"
        address = lms_address(self._transport.base_url)
        if isinstance(address, str):
            return address
        runner = LmsRunner.find() if self._lms_setting == "auto" else self._lms_setting
        if runner is None:
            return "was not found on this machine"
        return runner.at(*address)

    async def _lms_load(
        self,
        runner: LmsRunner,
        model_key: str,
        documented: Mapping[str, Any],
        ext: Mapping[str, Any],
    ) -> LoadResult:
        options = {**documented, **ext}
        before = {
            i.id for m in await self._list_models() if m.key == model_key for i in m.instances
        }
        started = time.monotonic()
        await runner.load(
            model_key,
            LmsLoadOptions(
                gpu=_gpu_value(options["gpu"]) if "gpu" in options else None,
                ttl=options.get("ttl"),
                identifier=options.get("identifier"),
                context_length=options.get("context_length"),
                parallel=options.get("parallel"),
            ),
        )
        elapsed = time.monotonic() - started
        after = [i for m in await self._list_models() if m.key == model_key for i in m.instances]
        identifier = options.get("identifier")
        new = [i for i in after if (i.id == identifier if identifier else i.id not in before)]
        if not new:
            raise self._transport.err(
                ProtocolError,
                f"lms reported loading {model_key}, but no new instance of it appeared on "
                f"{self._transport.display_url}.",
            )
        not_applied = tuple(k for k in options if k not in _LMS_OPTION_KEYS)
        return LoadResult(
            instance_id=new[-1].id,
            load_time_seconds=round(elapsed, 3),
            load_config=dict(new[-1].config),
            status="loaded",
            not_applied=not_applied,
            not_applied_reason="lms does not take them" if not_applied else None,
            via="lms",
        )


def _gpu_value(gpu: GpuSetting) -> str:
    if isinstance(gpu, str):
        return gpu
    return f"{gpu:g}"
