"""Images a message carries (vision models): the one size limit, and reading an image file.

The limit is checked here and nowhere else, in the decimal megabytes every size in lmgui is shown
in, so the pane (attach, paste, drop) and the session (send) say the same sentence. A file's size
is looked at before a byte of it is read: a 4 GB video chosen by mistake is refused at once.
Qt-free; ``read_image`` blocks, so the GUI runs it in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import mimetypes
import os
import stat
from pathlib import Path

from lmgui.core.format import human_bytes

__all__ = ["IMAGE_LIMIT_BYTES", "image_problem", "image_type", "read_image"]

IMAGE_LIMIT_BYTES = 8_000_000
"""The largest image lmgui sends (each one): 8 MB."""


def _limit_text() -> str:
    return f"{IMAGE_LIMIT_BYTES / 1e6:g} MB"


def image_problem(mime: str, size: int) -> str | None:
    """Why an image of type ``mime`` and ``size`` bytes cannot be sent, in one sentence; None
    when it can."""
    if not mime.startswith("image/"):
        return f"{mime or 'That file'} is not an image type."
    if size > IMAGE_LIMIT_BYTES:
        return (
            f"That image is too large to send ({human_bytes(size)}); images up to "
            f"{_limit_text()} can be sent."
        )
    return None


def image_type(path: Path) -> str:
    """The image type a file's name says ("" when it names none)."""
    return mimetypes.guess_type(path.name)[0] or ""


def read_image(path: Path, mime: str) -> bytes:
    """The bytes of an image file, its size checked before it is read.

    Raises ValueError with the sentence to show: too large, not an image, or unreadable. Blocks
    on the disk: call it through ``asyncio.to_thread``.
    """
    problem = image_problem(mime, 0)
    if problem:
        raise ValueError(problem)
    try:
        info = os.stat(path)
        # Only a regular file: opening a FIFO or a device would wait, or never end.
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a file.")
        problem = image_problem(mime, info.st_size)
        if problem:
            raise ValueError(problem)
        with path.open("rb") as f:
            # One byte more than the limit: the file may have grown since it was measured.
            data = f.read(IMAGE_LIMIT_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"Could not read {path.name}: {exc.strerror or exc}.") from exc
    problem = image_problem(mime, len(data))
    if problem:
        raise ValueError(problem)
    return data
