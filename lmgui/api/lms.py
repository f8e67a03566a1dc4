"""LM Studio's own ``lms`` command, for load options the REST API does not take.

``lms load KEY --gpu X --ttl S --identifier NAME --context-length N --parallel N -y`` sets GPU
offload, idle TTL, a custom identifier and parallel slots, which ``POST /api/v1/models/load``
rejects. It is given the server's host and port (``--host``, ``--port``), so it loads into the
server lmgui shows and not into whichever LM Studio ``lms`` was set up for; the client uses it
only for a server on this machine that those two options can address.

Where ``lms`` is: ``$LMGUI_LMS`` (a path, or ``off``), else ``lms`` on PATH, else where LM Studio
installs it (``~/.lmstudio/bin``, or ``~/.cache/lm-studio/bin`` for older versions): a desktop
session often lacks the PATH entry a terminal has.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from lmgui.api.errors import ApiError, ServerError

__all__ = ["LmsLoadOptions", "LmsRunner"]


@dataclass(frozen=True)
class LmsLoadOptions:
    gpu: str | None = None
    ttl: int | None = None
    identifier: str | None = None
    context_length: int | None = None
    parallel: int | None = None
    host: str | None = None
    port: int | None = None

    def argv(self, model_key: str) -> list[str]:
        args = ["load", model_key]
        if self.host is not None:
            args += ["--host", self.host]
        if self.port is not None:
            args += ["--port", str(self.port)]
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

    def __init__(
        self,
        executable: str,
        *,
        timeout: float = 900.0,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.executable = executable
        self.timeout = timeout
        self.host = host
        self.port = port

    def at(self, host: str, port: int) -> LmsRunner:
        """The same ``lms``, told which server to talk to."""
        return LmsRunner(self.executable, timeout=self.timeout, host=host, port=port)

    @staticmethod
    def turned_off() -> bool:
        """``LMGUI_LMS=off``: never run lms (the test suite sets it)."""
        return os.environ.get("LMGUI_LMS", "").strip().lower() == "off"

    @classmethod
    def find(cls) -> LmsRunner | None:
        if cls.turned_off():
            return None
        chosen = os.environ.get("LMGUI_LMS", "").strip()
        if chosen:
            return cls(chosen)
        path = shutil.which("lms")
        if path:
            return cls(path)
        name = "lms.exe" if sys.platform == "win32" else "lms"
        for folder in (Path.home() / ".lmstudio" / "bin", Path.home() / ".cache/lm-studio/bin"):
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return cls(str(candidate))
        return None

    async def load(self, model_key: str, options: LmsLoadOptions) -> str:
        """Run ``lms load``; return its output, or raise an ApiError with lms's own message."""
        options = replace(options, host=self.host, port=self.port)
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
