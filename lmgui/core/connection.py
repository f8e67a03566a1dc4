"""One LM Studio server as lmgui talks to it: its address, its token, the client, the poller,
the instance ledger and the GPU reading. Switching servers replaces one ``ServerConnection`` with
another; the fleet will hold several.

QtCore only. The token is read from the keyring off the GUI thread (a Secret Service keyring can
block or prompt): the first poll, and ``ready()``, wait for it, so no request goes out without
the token the user stored. The GPU memory (NVML, only for a server on this machine) is read once
per poll, and the window and the tray show that one reading. The server's own hardware survey
(its GPUs and VRAM, over LM Studio's SDK channel) is asked once per client, beside the polls.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from lmgui.api.client import LMStudioClient, check_base_url, is_local_url
from lmgui.api.errors import ApiError
from lmgui.api.limits import Deadlines
from lmgui.api.records import Model, ServerHardware
from lmgui.core.gpu import GpuMemory, GpuProcess, GpuReader, NvmlReader
from lmgui.core.ledger import InstanceLedger
from lmgui.core.paths import server_slug
from lmgui.core.poller import Poller
from lmgui.core.secrets import TokenStore

__all__ = ["ServerConnection"]

log = logging.getLogger(__name__)


class ServerConnection(QObject):
    problem = Signal(str)
    """A failure of lmgui's own about this server (a file it cannot write), as one sentence."""

    def __init__(
        self,
        url: str,
        *,
        state_dir: Path,
        tokens: TokenStore,
        session_token: str | None = None,
        deadlines: Deadlines | None = None,
        interval_ms: int = 2000,
        parent: QObject | None = None,
    ) -> None:
        """``session_token``: from the command line or the environment, used for this session
        and never stored; without one, the keyring's is read (off the GUI thread)."""
        super().__init__(parent)
        self.url = check_base_url(url)
        self.tokens = tokens
        self.deadlines = deadlines or Deadlines()
        self.client = LMStudioClient(self.url, session_token, deadlines=self.deadlines)
        self._token_read: asyncio.Task[None] | None = None
        self._token_known = session_token is not None
        self.ledger = InstanceLedger(
            state_dir / f"instances-{server_slug(self.url)}.json", report=self.problem.emit
        )
        self.nvml: GpuReader | None = NvmlReader() if is_local_url(self.url) else None
        self.gpus: list[GpuMemory] | None = None
        self.gpus_changed = False
        """The last poll's reading differs from the one before."""
        self.gpu_processes: list[GpuProcess] | None = None
        """The programs holding GPU memory at the last poll (making way tells LM Studio's
        from the others)."""
        self.hardware: ServerHardware | None = None
        """The server's GPUs and VRAM as LM Studio surveyed them (its SDK channel), once known."""
        self.reuse_list_for = 0.0
        """Seconds a regular poll may reuse the model list while the SDK channel shows the same
        instances (0: every poll asks for it); a poll asked for always asks."""
        self._hardware_task: asyncio.Task[None] | None = None
        self._hardware_client: LMStudioClient | None = None
        self.poller = Poller(
            self._fetch,
            interval_ms=interval_ms,
            slow_after_ms=int(min(5.0, self.deadlines.models / 4) * 1000),
            has_token=lambda: self.client.has_token,
            parent=self,
        )
        self.poller.poll_finished.connect(self._on_poller_poll_finished)

    def __repr__(self) -> str:
        return f"ServerConnection({self.client.display_url!r})"

    # ------------------------------------------------------------------ the token

    async def ready(self) -> LMStudioClient:
        """The client, once the stored token (if any) is in it."""
        if not self._token_known:
            if self._token_read is None:
                self._token_read = asyncio.ensure_future(self._read_token())
            await asyncio.shield(self._token_read)
        return self.client

    async def _read_token(self) -> None:
        token = await asyncio.to_thread(self.tokens.get, self.url)
        if token and not self._token_known:
            unused, self.client = self.client, self._new_client(token)
            await unused.aclose()  # nothing was sent with it: every request awaited ready()
        self._token_known = True

    def _new_client(self, token: str | None) -> LMStudioClient:
        return LMStudioClient(self.url, token, deadlines=self.deadlines)

    async def set_token(self, token: str | None) -> str | None:
        """Store a new token (None or "": remove it) off the GUI thread and use it from now on.

        Returns a sentence when the keyring cannot keep it (then it is kept for this session)."""
        problem = None
        if not token:
            await asyncio.to_thread(self.tokens.delete, self.url)
        elif not await asyncio.to_thread(self.tokens.set, self.url, token):
            problem = self.tokens.problem  # the client below still uses it, for this session
        old, self.client = self.client, self._new_client(token or None)
        self._token_known = True
        self.poller.poke()  # the same server: the list stays, the state follows the new token
        await old.aclose()
        return problem

    # ------------------------------------------------------------------ polling

    async def _fetch(self, asked: bool) -> list[Model] | None:
        client = await self.ready()
        models = await client.poll_models(reuse_list_for=0.0 if asked else self.reuse_list_for)
        if client.sdk is not None and client.sdk.connected and self._hardware_client is not client:
            # Once per client, beside the polls (never delaying one), when the channel is open.
            self._hardware_client = client
            self._hardware_task = asyncio.ensure_future(self._ask_hardware(client))
        return models

    async def _ask_hardware(self, client: LMStudioClient) -> None:
        try:
            hardware = await client.server_hardware()
        except ApiError as exc:  # the budget stays the user's; not worth a dialog
            log.warning("no hardware survey from the server: %s", exc)
            return
        if client is self.client:
            self.hardware = hardware

    def _on_poller_poll_finished(self) -> None:
        if self.nvml is not None:
            gpus = self.nvml.read()
            self.gpus_changed, self.gpus = gpus != self.gpus, gpus
            self.gpu_processes = self.nvml.processes() if self.gpus else None

    # ------------------------------------------------------------------ lifetime

    async def aclose(self) -> None:
        """Stop polling, wait for the poll in flight, close the client."""
        await self.poller.aclose()
        for task in (self._token_read, self._hardware_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.client.aclose()
