"""The composer: the message being written, the images attached to it, the context meter and
Send (Stop while an answer streams).

Image files (chosen, dropped or pasted as files) are read in a thread, their size checked before
they are read (``core.images``); a pasted picture is already in memory and is only encoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lmgui.core.format import human_bytes
from lmgui.core.images import image_problem, image_type, read_image
from lmgui.ui.context_meter import ContextMeter

__all__ = ["Composer", "MessageEdit", "Spawn"]

Spawn = Callable[[Coroutine[Any, Any, Any], str], object]
"""Runs a coroutine in the background; the string names it in a failure ("Reading the image")."""


class MessageEdit(QPlainTextEdit):
    """The input: Ctrl+Enter sends; pasted or dropped images become attachments."""

    send_requested = Signal()
    image_added = Signal(str, bytes)
    """(mime, data): a picture pasted from the clipboard"""
    image_files_dropped = Signal(list)
    """[(path, mime)]: image files dropped or pasted, not read yet"""

    def keyPressEvent(self, event: Any) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and (
            event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            self.send_requested.emit()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return source.hasImage() or source.hasUrls() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        if source.hasImage():
            image = QImage(source.imageData())
            data = QByteArray()
            buffer = QBuffer(data)
            buffer.open(QIODevice.OpenModeFlag.WriteOnly)
            image.save(buffer, b"PNG")
            self.image_added.emit("image/png", bytes(data.data()))
            return
        if source.hasUrls():
            # By name only: whether each is a readable file, and its size, is found out off the
            # GUI thread, when it is read.
            files = [
                (path, mime)
                for url in source.urls()
                if url.isLocalFile()
                and (mime := image_type(path := Path(url.toLocalFile()))).startswith("image/")
            ]
            if files:
                self.image_files_dropped.emit(files)
            return
        super().insertFromMimeData(source)


class Composer(QWidget):
    send_requested = Signal()
    """Ctrl+Enter in the input."""
    send_clicked = Signal()
    """The Send button, which reads Stop while an answer streams."""
    problem = Signal(str)
    """A sentence for the status bar (an image that cannot be sent)."""

    def __init__(self, spawn: Spawn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._spawn = spawn
        self._images: list[tuple[str, bytes]] = []
        self.input = MessageEdit()
        self.input.setPlaceholderText("Message (Ctrl+Enter to send)")
        self.input.setAccessibleName("Message")
        self.input.setMaximumHeight(110)
        self.attach_button = QPushButton("&Image…")
        self.attach_button.setToolTip("Attach an image (vision models), or paste or drop one")
        self.attachments = QLabel()
        self.attachments.setTextFormat(Qt.TextFormat.PlainText)
        self.clear_images = QToolButton()
        self.clear_images.setText("✕")
        self.clear_images.setToolTip("Remove the attached images")
        self.context_meter = ContextMeter()
        self.send_button = QPushButton("&Send")
        row = QHBoxLayout()
        row.addWidget(self.attach_button)
        row.addWidget(self.attachments, 1)
        row.addWidget(self.clear_images)
        row.addWidget(self.context_meter, 1)
        row.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.input)
        layout.addLayout(row)

        self.input.send_requested.connect(self.send_requested)
        self.input.image_added.connect(self.add_image)
        self.input.image_files_dropped.connect(self._on_input_image_files_dropped)
        self.attach_button.clicked.connect(self._on_attach_clicked)
        self.clear_images.clicked.connect(self.clear_attachments)
        self.send_button.clicked.connect(self.send_clicked)
        self._update_images()
        self.set_busy(False)

    # ------------------------------------------------------------------ the message

    def text(self) -> str:
        return self.input.toPlainText().strip()

    def images(self) -> list[tuple[str, bytes]]:
        """(mime, data) of each attached image, in the order they were attached."""
        return list(self._images)

    def clear(self) -> None:
        """After sending: no text, no images."""
        self.input.clear()
        self.clear_attachments()

    def focus(self) -> None:
        self.input.setFocus()

    def set_thread_open(self, has: bool) -> None:
        self.input.setEnabled(has)
        self.send_button.setEnabled(has)

    def set_busy(self, busy: bool) -> None:
        self.send_button.setText("&Stop" if busy else "&Send")
        self.send_button.setToolTip("Stop the answer (Esc)" if busy else "Send (Ctrl+Enter)")

    def set_vision(self, vision: bool) -> None:
        """Whether the picked model takes images."""
        self.attach_button.setEnabled(vision)
        if not vision:
            self.attach_button.setToolTip("This model does not take images")
        else:
            self.attach_button.setToolTip("Attach an image, or paste or drop one")

    # ------------------------------------------------------------------ images

    def add_image(self, mime: str, data: bytes) -> bool:
        """Attach an image already in memory; False (and a sentence) when it cannot be sent."""
        problem = image_problem(mime, len(data))
        if problem:
            self.problem.emit(problem)
            return False
        self._images.append((mime, data))
        self._update_images()
        return True

    async def add_image_files(self, files: list[tuple[Path, str]]) -> None:
        """Attach image files, each read in a thread after its size was checked."""
        for path, mime in files:
            try:
                data = await asyncio.to_thread(read_image, path, mime)
            except ValueError as exc:
                self.problem.emit(str(exc))
                continue
            self.add_image(mime, data)

    def _on_input_image_files_dropped(self, files: list[tuple[Path, str]]) -> None:
        self._spawn(self.add_image_files(files), "Reading the image")

    def _on_attach_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Attach images", "", "Images (*.png *.jpg *.jpeg *.webp *.gif)"
        )
        files = [(Path(p), image_type(Path(p)) or "image/png") for p in paths]
        if files:
            self._spawn(self.add_image_files(files), "Reading the image")

    def clear_attachments(self) -> None:
        self._images.clear()
        self._update_images()

    def _update_images(self) -> None:
        n = len(self._images)
        size = human_bytes(sum(len(d) for _, d in self._images))
        self.attachments.setText(f"{n} image{'s' if n > 1 else ''} attached ({size})" if n else "")
        self.clear_images.setVisible(bool(n))
