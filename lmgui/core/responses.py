"""The last response id per server and model, for ``lmgui chat --continue``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from lmgui.api.client import normalize_base_url
from lmgui.core.paths import private_dir

__all__ = ["LastResponses"]


class LastResponses:
    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def _key(server_url: str, model: str) -> str:
        return f"{normalize_base_url(server_url)} {model}"

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
        )

    def get(self, server_url: str, model: str) -> str | None:
        return self._read().get(self._key(server_url, model))

    def set(self, server_url: str, model: str, response_id: str) -> None:
        data = self._read()
        data[self._key(server_url, model)] = response_id
        private_dir(self.path.parent)
        # Write then rename, so a crash never leaves a half-written file.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".responses-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)
