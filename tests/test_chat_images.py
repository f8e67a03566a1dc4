"""Images for a message: one limit, one sentence; a file's size is checked before it is read."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lmgui.core.images import IMAGE_LIMIT_BYTES, image_problem, image_type, read_image


def test_the_limit_is_said_in_one_sentence_in_the_unit_lmgui_shows_sizes_in() -> None:
    assert IMAGE_LIMIT_BYTES == 8_000_000
    assert image_problem("image/png", IMAGE_LIMIT_BYTES) is None
    assert image_problem("image/png", 21_000_000) == (
        "That image is too large to send (21.0 MB); images up to 8 MB can be sent."
    )
    assert image_problem("application/pdf", 10) == "application/pdf is not an image type."
    assert image_type(Path("a.JPG")) == "image/jpeg" and image_type(Path("a.txt")) == "text/plain"


def test_a_file_too_large_is_refused_before_a_byte_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "huge.png"
    with big.open("wb") as f:
        f.truncate(4 * 10**9)  # sparse: 4 GB on paper, nothing on disk

    def no_reading(self: Path, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"{self} was opened")

    monkeypatch.setattr(Path, "open", no_reading)
    with pytest.raises(ValueError, match=r"too large to send \(4\.0 GB\)"):
        read_image(big, "image/png")


def test_a_small_image_is_read_and_others_are_refused_with_a_sentence(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert read_image(png, "image/png") == png.read_bytes()
    with pytest.raises(ValueError, match="Could not read") as gone:
        read_image(tmp_path / "gone.png", "image/png")
    assert str(gone.value) == "Could not read gone.png: No such file or directory."
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ValueError, match="is not a file") as folder:
        read_image(tmp_path / "folder.png", "image/png")
    assert str(folder.value) == "folder.png is not a file."
    with pytest.raises(ValueError, match="not an image type"):
        read_image(png, "text/plain")


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is not a file"):
        read_image(fifo, "image/png")  # opening it would block until a writer came
