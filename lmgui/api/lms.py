"""LM Studio's own ``lms`` command, for load options the REST API does not take.

``lms load KEY --gpu X --ttl S --identifier NAME --context-length N --parallel N -y`` sets GPU
offload, idle TTL, a custom identifier and parallel slots, which ``POST /api/v1/models/load``
rejects. It only works for a server on this machine, so the client uses it only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import dataclass

from lmgui.api.errors import ApiError, ServerError

__all__ = ["LmsLoadOptions", "LmsRunner"]


@dataclass(frozen=True)
class LmsLoadOptions:
    gpu: str | None = None
    ttl: int | None = None
    identifier: str | None = None
    context_length: int | None = None
    parallel: int | None = None

    def argv(self, model_key: str) -> list[str]:
        args = ["load", model_key]
        if self.gpu is not None:
            args += ["--gpu", self.gpu]
        if self.ttl is not None:
            args += ["--ttl", str(self.ttl)]
        if self.identifier is not None:
            args += ["--identifier", self.identifier]
        if self.context_length is not None:
            args += ["--context-length", str(self.context_length)]
        if self.parallel is not None:
            args += ["--parallel", str(self.parallel)]
        return [*args, "-y"]


class LmsRunner:
    """Runs ``lms`` as an asyncio subprocess with a timeout, output captured."""

    def __init__(self, executable: str, *, timeout: float = 900.0) -> None:
        self.executable = executable
        self.timeout = timeout

    @classmethod
    def find(cls) -> LmsRunner | None:
        path = shutil.which("lms")
        return cls(path) if path else None

    async def load(self, model_key: str, options: LmsLoadOptions) -> str:
        """Run ``lms load``; return its output, or raise an ApiError with lms's own message."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.executable,
                *options.argv(model_key),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise ApiError(f"Could not run LM Studio's lms command ({exc.strerror}).") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ServerError(
                f"lms load {model_key} did not finish within {self.timeout:.0f} seconds."
            ) from None
        text = out.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            last = text.splitlines()[-1] if text else f"exit code {proc.returncode}"
            raise ServerError(f"lms load {model_key} failed: {last}", server_message=text)
        return text
