"""The LM Studio 0.4 REST client: one object per server, its endpoints as typed calls, no Qt.

The parts it composes each have one job: ``urls`` (the server's address), ``transport`` (the HTTP
connection, the token and the error boundary: every failure leaves as a type in ``errors.py``),
``loading`` (REST or ``lms``, and options not applied), ``chat`` (a chat turn's body and answer)
and ``streaming`` (a chat answer read as SSE events). The names other modules import from here
are re-exported from those, so callers need only this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, overload
from urllib.parse import quote

import httpx

from lmgui.api.chat import CHAT_PATH, chat_body, image_item, parse_chat_answer, text_item
from lmgui.api.errors import ApiError, AuthError, ProtocolError
from lmgui.api.limits import Deadlines, Limits
from lmgui.api.lms import LmsRunner
from lmgui.api.loading import EXTENSION_LOAD_KEYS, GpuSetting, LoadPolicy, sdk_config
from lmgui.api.model_list import ParseMemo, parse_models
from lmgui.api.records import (
    ChatResult,
    DownloadJob,
    LoadResult,
    Model,
    ServerEstimate,
    ServerHardware,
    parse_download,
)
from lmgui.api.sdk import InstanceTruth, SdkChannel, merge_truth
from lmgui.api.streaming import ChatStream
from lmgui.api.transport import Exchange, Transport
from lmgui.api.urls import (
    DEFAULT_BASE_URL,
    check_base_url,
    display_url,
    is_local_url,
    lms_address,
    normalize_base_url,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BASE_URL",
    "EXTENSION_LOAD_KEYS",
    "ChatStream",
    "Exchange",
    "GpuSetting",
    "LMStudioClient",
    "check_base_url",
    "display_url",
    "image_item",
    "is_local_url",
    "lms_address",
    "normalize_base_url",
    "text_item",
]


def _instances(truth: Mapping[str, InstanceTruth]) -> dict[str, str]:
    """Each instance's identifier and the server's reference of it (new for every load, so an
    identifier unloaded and loaded again, or a restarted server's, is not the same instance)."""
    return {t.identifier: t.reference for t in truth.values()}


def _say_no_truth(exc: ApiError) -> None:
    log.warning("no instance truth from the SDK channel this time: %s", exc)


def _set(**options: Any) -> dict[str, Any]:
    """The options the caller set: a None is left out, so the server's default applies."""
    return {k: v for k, v in options.items() if v is not None}


class LMStudioClient:
    """Async client for one LM Studio server. Use as ``async with LMStudioClient(url) as c:``."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        limits: Limits | None = None,
        deadlines: Deadlines | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        lms: LmsRunner | Literal["auto"] | None = "auto",
        on_exchange: Callable[[Exchange], None] | None = None,
        sdk: bool = True,
    ) -> None:
        """``sdk``: use LM Studio's SDK websocket channel where the server offers it (loads with
        every option applied, the instance truth merged into each poll); see ``sdk.py``."""
        self._transport = Transport(
            base_url,
            token,
            timeout=timeout,
            limits=limits or Limits(),
            transport=transport,
            on_exchange=on_exchange,
        )
        self.base_url = self._transport.base_url
        self.display_url = self._transport.display_url
        """The address as messages show it (a password in it replaced)."""
        self.limits = self._transport.limits
        self.deadlines = deadlines or Deadlines()
        self.sdk = (
            SdkChannel(
                self._transport,
                self._transport.token,
                connect_seconds=min(10.0, self.deadlines.models),
                call_seconds=min(10.0, self.deadlines.models / 2),
                load_seconds=self.deadlines.load,
            )
            if sdk
            else None
        )
        self._loads = LoadPolicy(self._transport, self.deadlines, lms, self.list_models, self.sdk)
        self._last_models_body: bytes | None = None
        self._last_parsed: list[Model] = []
        self._poll_memo = ParseMemo()
        self._last_truth: dict[str, InstanceTruth] | None = None
        self._listed: dict[str, str] | None = None
        """The instances (id: model key) of the last list, where the channel agreed with it."""
        self._listed_at = 0.0
        self._monotonic = time.monotonic

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.sdk is not None:
            await self.sdk.aclose()
        await self._transport.aclose()

    def __repr__(self) -> str:
        token = "set" if self.has_token else None
        return f"LMStudioClient(base_url={self.display_url!r}, token={token})"

    @property
    def has_token(self) -> bool:
        return self._transport.has_token

    @property
    def rejected_load_keys(self) -> set[str]:
        """Extension load keys this server's REST API rejected (remembered for this server)."""
        return self._loads.rejected_keys

    def redact(self, text: str) -> str:
        """``text`` with every form of the token (and a URL password) replaced by ``***``."""
        return self._transport.redact(text)

    # ------------------------------------------------------------------ models

    async def list_models(self, *, with_truth: bool = False) -> list[Model]:
        """Every model the server knows, loaded or not, with its loaded instances.

        ``with_truth``: with what the SDK channel says of each instance merged in, where the
        server has that channel (asked for at the same time as the list)."""
        if not with_truth:
            return self._parse_models(await self._get_models())
        body, truth = await self._models_and_truth()
        models = self._parse_models(body)
        return merge_truth(models, truth) if truth else models

    async def _get_models(self) -> bytes:
        return await self._transport.send(
            "GET",
            "/api/v1/models",
            what="the model list",
            deadline=self.deadlines.models,
            limit=self.limits.models_body,
        )

    async def poll_models(self, *, reuse_list_for: float = 0.0) -> list[Model] | None:
        """Like ``list_models`` with the SDK channel's instance truth merged in, but None when
        neither the body (byte for byte) nor that truth changed since the last poll.

        Most polls change nothing; comparing bytes costs far less than parsing them again. The
        truth is asked for at the same time as the list: one round trip more at most.

        ``reuse_list_for`` (seconds; 0: never): while the SDK channel's instances are the ones
        the last list showed, that list is reused for this long and only the truth is asked
        (a fraction of the CPU: the tray's all-day polls). An instance that finished loading,
        was unloaded or loaded again elsewhere asks the list again; one still loading elsewhere
        (the list shows it, the channel not yet) is missed until it finishes or the list is
        asked again, so the window, which shows loads in progress, asks every time."""
        if (
            reuse_list_for > 0
            and self._listed is not None
            and self.sdk is not None
            and self.sdk.connected
            and self._monotonic() - self._listed_at < reuse_list_for
        ):
            truth = await self._truth()
            if truth is not None and _instances(truth) == self._listed:
                if truth == self._last_truth:
                    return None
                self._last_truth = truth
                return merge_truth(self._last_parsed, truth)
            self._listed = None  # asked in full from here on until the list and truth agree
            listed_at = self._monotonic()
            body = await self._get_models()
        else:
            listed_at = self._monotonic()
            body, truth = await self._models_and_truth()
        if body == self._last_models_body and truth == self._last_truth:
            models = None
        elif body == self._last_models_body:
            models = self._last_parsed
        else:
            models = self._parse_models(body, self._poll_memo)
        parsed = self._last_parsed if models is None else models
        self._listed_at = listed_at
        # Reusable only while the list and the channel agree on the instances (the list also
        # shows instances still loading, the channel only loaded ones). By identifier only: the
        # channel's model key may name the variant where the list's does not.
        agree = truth is not None and truth.keys() == {i.id for m in parsed for i in m.instances}
        self._listed = _instances(truth) if agree and truth is not None else None
        if models is None:
            return None
        self._last_models_body, self._last_parsed, self._last_truth = body, models, truth
        return merge_truth(models, truth) if truth else models

    async def _models_and_truth(self) -> tuple[bytes, dict[str, InstanceTruth] | None]:
        """The list and the SDK channel's truth: at the same time once the channel is open;
        before that the list first, so the channel's handshake is only tried with a token REST
        accepted (a refused handshake is left to REST to say, once)."""
        if self.sdk is not None and not self.sdk.connected:
            body = await self._get_models()
            return body, await self._truth()
        # The channel's failure is said only when the list came: a server that went away fails
        # both, and REST's sentence is the one that matters.
        body, truth = await asyncio.gather(self._get_models(), self._truth(say=False))
        if isinstance(truth, ApiError):
            _say_no_truth(truth)
            return body, None
        return body, truth

    @overload
    async def _truth(self) -> dict[str, InstanceTruth] | None: ...
    @overload
    async def _truth(
        self, *, say: Literal[False]
    ) -> dict[str, InstanceTruth] | ApiError | None: ...
    async def _truth(self, *, say: bool = True) -> dict[str, InstanceTruth] | ApiError | None:
        """The SDK channel's truth; None without a channel. A failure of the channel (other than
        a refused token) is logged and None, or with ``say=False`` returned for the caller to
        say or not."""
        if self.sdk is None:
            return None
        try:
            return await self.sdk.truth()
        except AuthError:
            raise
        except ApiError as exc:
            # The channel is extra: a poll it fails is still a poll, with REST's figures.
            if not say:
                return exc
            _say_no_truth(exc)
            return None

    def _parse_models(self, body: bytes, memo: ParseMemo | None = None) -> list[Model]:
        t = self._transport
        try:
            return parse_models(body, memo)
        except ProtocolError as exc:
            # Only now look for a 200 that carries an error: the list is large and polled often,
            # so the usual case is decoded once.
            t.check_ok_body(body, ("models", "data"))
            raise t.err(ProtocolError, f"{t.where}: {exc}") from None

    async def load(
        self,
        model_key: str,
        *,
        context_length: int | None = None,
        eval_batch_size: int | None = None,
        flash_attention: bool | None = None,
        num_experts: int | None = None,
        offload_kv_cache_to_gpu: bool | None = None,
        gpu: GpuSetting | None = None,
        ttl: int | None = None,
        identifier: str | None = None,
        parallel: int | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> LoadResult:
        """Load a model; blocks until the server has loaded it (seconds to minutes).

        ``on_progress(0..1)`` hears the load's progress where the server reports it (the SDK
        channel).

        GPU offload, TTL, identifier and parallel are not part of the documented REST body; see
        ``loading.py`` for where they go and ``LoadResult.not_applied`` for when they cannot.
        """
        options = _set(
            context_length=context_length,
            eval_batch_size=eval_batch_size,
            flash_attention=flash_attention,
            num_experts=num_experts,
            offload_kv_cache_to_gpu=offload_kv_cache_to_gpu,
            gpu=gpu,
            ttl=ttl,
            identifier=identifier,
            parallel=parallel,
        )
        return await self._loads.load(model_key, options, on_progress)

    async def estimate_load(
        self,
        model_key: str,
        *,
        embedding: bool = False,
        context_length: int | None = None,
        eval_batch_size: int | None = None,
        flash_attention: bool | None = None,
        num_experts: int | None = None,
        offload_kv_cache_to_gpu: bool | None = None,
        gpu: GpuSetting | None = None,
        parallel: int | None = None,
    ) -> ServerEstimate | None:
        """LM Studio's own estimate of a load with these options (memory, guardrail verdict);
        None where the server has no SDK channel or gives no figure."""
        if self.sdk is None:
            return None
        options = _set(
            context_length=context_length,
            eval_batch_size=eval_batch_size,
            flash_attention=flash_attention,
            num_experts=num_experts,
            offload_kv_cache_to_gpu=offload_kv_cache_to_gpu,
            gpu=gpu,
        )
        return await self.sdk.estimate(
            model_key,
            embedding=embedding,
            config=sdk_config(options),
            parallel=None if embedding else parallel,
        )

    async def server_hardware(self) -> ServerHardware | None:
        """The server's GPUs and VRAM as LM Studio's runtime surveyed them (asked once per
        connection); None where the server has no SDK channel or reports none."""
        return None if self.sdk is None else await self.sdk.hardware()

    async def unload(self, instance_id: str) -> None:
        """Unload one instance by the id the server gave it."""
        await self._transport.send(
            "POST",
            "/api/v1/models/unload",
            what="the answer to an unload",
            deadline=self.deadlines.unload,
            json={"instance_id": instance_id},
            expected=("instance_id",),
        )

    # ------------------------------------------------------------------ chat

    chat_body = staticmethod(chat_body)
    """The JSON body of ``POST /api/v1/chat``; see ``chat.chat_body``."""

    async def chat(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        **options: Any,
    ) -> ChatResult:
        """One chat turn, not streamed. ``options`` are ``chat_body``'s keyword arguments."""
        raw = await self._transport.send(
            "POST",
            CHAT_PATH,
            what="the chat answer",
            deadline=self.deadlines.chat,
            json=self.chat_body(model, input, **options),
            read_timeout=self.deadlines.chat,
            expected=("output",),
        )
        return parse_chat_answer(self._transport, raw)

    def chat_stream(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        **options: Any,
    ) -> ChatStream:
        """One chat turn, streamed as typed events; see ``ChatStream``."""
        body = self.chat_body(model, input, stream=True, **options)
        return ChatStream(self._transport, body, self.deadlines)

    # ------------------------------------------------------------------ downloads

    async def download(self, model: str, quantization: str | None = None) -> DownloadJob:
        raw = await self._transport.send(
            "POST",
            "/api/v1/models/download",
            what="the answer to a download",
            deadline=self.deadlines.download,
            json={"model": model, **_set(quantization=quantization)},
            expected=("status",),
        )
        return parse_download(raw)

    async def download_status(self, job_id: str) -> DownloadJob:
        raw = await self._transport.send(
            "GET",
            f"/api/v1/models/download/status/{quote(job_id, safe='')}",
            what="the download status",
            deadline=self.deadlines.download,
            expected=("status",),
        )
        return parse_download(raw)
