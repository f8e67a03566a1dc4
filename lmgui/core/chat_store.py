"""Chat history in SQLite: threads, and their turns as a tree (a branch is a path to a leaf).

Nothing is lost: a turn is written when it starts (status "streaming"), its answer is saved as it
grows, and it is closed as "complete", "stopped" or "error". A turn still "streaming" when lmgui
starts again was cut off (lmgui killed, the stream broken) and is marked "interrupted".

WAL journal, ``PRAGMA user_version`` as the schema version, migrations from the first version on.
``ChatStore``'s methods are synchronous and quick; the app uses ``AsyncChatStore``, which opens the
file and runs every call on one worker thread, so the GUI thread never waits on the disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from lmgui.core.chat_export import branch_json, branch_markdown
from lmgui.core.paths import private_file
from lmgui.core.worker import OnWorker

__all__ = [
    "SCHEMA_VERSION",
    "AsyncChatStore",
    "ChatStore",
    "ExportFormat",
    "ThreadRecord",
    "TurnRecord",
]

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE threads (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        server TEXT NOT NULL,
        model TEXT NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}',
        current_turn INTEGER,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY,
        thread_id INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES turns(id) ON DELETE CASCADE,
        input TEXT NOT NULL,
        output TEXT NOT NULL DEFAULT '[]',
        stats TEXT NOT NULL DEFAULT '{}',
        response_id TEXT,
        model TEXT NOT NULL,
        instance_id TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        error TEXT,
        created REAL NOT NULL,
        completed REAL
    );
    CREATE INDEX turns_thread ON turns(thread_id);
    CREATE INDEX turns_parent ON turns(parent_id);
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        turn_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
        mime TEXT NOT NULL,
        data BLOB NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class TurnRecord:
    id: int
    thread_id: int
    parent_id: int | None
    input: list[dict[str, Any]]
    """Items as sent: {"type": "text", "content"} and {"type": "image", "image_id", "mime"}."""
    output: list[dict[str, Any]]
    stats: dict[str, Any]
    response_id: str | None
    model: str
    instance_id: str | None
    settings: dict[str, Any]
    status: str
    error: str | None
    created: float
    completed: float | None

    @property
    def text(self) -> str:
        return "".join(i.get("content", "") for i in self.output if i.get("type") == "message")

    @property
    def reasoning(self) -> str:
        return "".join(i.get("content", "") for i in self.output if i.get("type") == "reasoning")

    @property
    def user_text(self) -> str:
        return "\n".join(i.get("content", "") for i in self.input if i.get("type") == "text")


@dataclass(frozen=True)
class ThreadRecord:
    id: int
    title: str
    server: str
    """The normalized URL of the server the thread talks to: its response ids live there."""
    model: str
    settings: dict[str, Any] = field(default_factory=dict)
    current_turn: int | None = None
    created: float = 0.0
    updated: float = 0.0


def _turn(row: sqlite3.Row) -> TurnRecord:
    return TurnRecord(
        id=row["id"],
        thread_id=row["thread_id"],
        parent_id=row["parent_id"],
        input=json.loads(row["input"]),
        output=json.loads(row["output"]),
        stats=json.loads(row["stats"]),
        response_id=row["response_id"],
        model=row["model"],
        instance_id=row["instance_id"],
        settings=json.loads(row["settings"]),
        status=row["status"],
        error=row["error"],
        created=row["created"],
        completed=row["completed"],
    )


def _thread(row: sqlite3.Row) -> ThreadRecord:
    return ThreadRecord(
        id=row["id"],
        title=row["title"],
        server=row["server"],
        model=row["model"],
        settings=json.loads(row["settings"]),
        current_turn=row["current_turn"],
        created=row["created"],
        updated=row["updated"],
    )


class ChatStore:
    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        if isinstance(path, Path):
            # Created 0600 before SQLite opens it: its -wal and -shm files take the same mode.
            private_file(path)
        self._clock = clock
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.migrate()
        self.recovered = self._recover()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ schema

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION, one migration at a time, each in a transaction."""
        current = self.version
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"The chat history was written by a newer lmgui (schema {current}); "
                f"this one reads up to {SCHEMA_VERSION}."
            )
        for number in range(current + 1, SCHEMA_VERSION + 1):
            self.db.executescript(
                "BEGIN;" + MIGRATIONS[number - 1] + f"PRAGMA user_version={number};COMMIT;"
            )

    def _recover(self) -> list[int]:
        """Turns left "streaming" by a previous run were cut off: mark them interrupted."""
        ids = [r["id"] for r in self.db.execute("SELECT id FROM turns WHERE status='streaming'")]
        if ids:
            self.db.execute(
                "UPDATE turns SET status='interrupted', completed=? WHERE status='streaming'",
                (self._clock(),),
            )
        return ids

    # ------------------------------------------------------------------ threads

    def create_thread(
        self, title: str, server: str, model: str, settings: dict[str, Any] | None = None
    ) -> ThreadRecord:
        now = self._clock()
        cur = self.db.execute(
            "INSERT INTO threads(title, server, model, settings, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (title, server, model, json.dumps(settings or {}), now, now),
        )
        return self.thread(int(cur.lastrowid or 0))

    def thread(self, thread_id: int) -> ThreadRecord:
        row = self.db.execute("SELECT * FROM threads WHERE id=?", (thread_id,)).fetchone()
        if row is None:
            raise KeyError(thread_id)
        return _thread(row)

    def threads(self, search: str = "") -> list[ThreadRecord]:
        """Newest first; ``search`` matches titles and the text of any turn."""
        if not search:
            rows = self.db.execute("SELECT * FROM threads ORDER BY updated DESC").fetchall()
        else:
            like = f"%{search}%"
            rows = self.db.execute(
                "SELECT * FROM threads WHERE title LIKE ? OR id IN "
                "(SELECT thread_id FROM turns WHERE input LIKE ? OR output LIKE ?) "
                "ORDER BY updated DESC",
                (like, like, like),
            ).fetchall()
        return [_thread(r) for r in rows]

    def rename_thread(self, thread_id: int, title: str) -> None:
        self.db.execute("UPDATE threads SET title=? WHERE id=?", (title, thread_id))

    def update_thread(
        self,
        thread_id: int,
        *,
        settings: dict[str, Any] | None = None,
        model: str | None = None,
        current_turn: int | None = None,
    ) -> None:
        sets: list[str] = ["updated=?"]
        args: list[Any] = [self._clock()]
        if settings is not None:
            sets.append("settings=?")
            args.append(json.dumps(settings))
        if model is not None:
            sets.append("model=?")
            args.append(model)
        if current_turn is not None:
            sets.append("current_turn=?")
            args.append(current_turn)
        self.db.execute(f"UPDATE threads SET {', '.join(sets)} WHERE id=?", (*args, thread_id))

    def set_thread_server(self, thread_id: int, server: str, *, model: str | None = None) -> None:
        """Move a thread that has no turns yet to ``server`` (and ``model``, there). A thread
        with turns stays: its response ids live on its server. Raises ValueError then."""
        sets = "server=?, updated=?" + (", model=?" if model is not None else "")
        args: list[Any] = [server, self._clock()] + ([model] if model is not None else [])
        cur = self.db.execute(
            f"UPDATE threads SET {sets} WHERE id=? "
            "AND NOT EXISTS (SELECT 1 FROM turns WHERE thread_id=?)",
            (*args, thread_id, thread_id),
        )
        if cur.rowcount == 0:
            self.thread(thread_id)  # KeyError for a thread that is not there
            raise ValueError(
                "This thread already has answers on its server, so it stays on that server."
            )

    def delete_thread(self, thread_id: int) -> None:
        self.db.execute("DELETE FROM threads WHERE id=?", (thread_id,))

    # ------------------------------------------------------------------ turns

    def add_turn(
        self,
        thread_id: int,
        parent_id: int | None,
        input_items: list[dict[str, Any]],
        *,
        model: str,
        settings: dict[str, Any],
        images: Sequence[tuple[str, bytes]] = (),
    ) -> TurnRecord:
        """A new turn, status "streaming"; images are stored and referenced from the input."""
        now = self._clock()
        self.db.execute("BEGIN")
        try:
            cur = self.db.execute(
                "INSERT INTO turns(thread_id, parent_id, input, model, settings, status, created) "
                "VALUES (?, ?, '[]', ?, ?, 'streaming', ?)",
                (thread_id, parent_id, model, json.dumps(settings), now),
            )
            turn_id = int(cur.lastrowid or 0)
            items = list(input_items)
            for mime, data in images:
                img = self.db.execute(
                    "INSERT INTO images(turn_id, mime, data) VALUES (?, ?, ?)",
                    (turn_id, mime, data),
                )
                items.append({"type": "image", "image_id": img.lastrowid, "mime": mime})
            self.db.execute("UPDATE turns SET input=? WHERE id=?", (json.dumps(items), turn_id))
            self.db.execute(
                "UPDATE threads SET current_turn=?, updated=? WHERE id=?",
                (turn_id, now, thread_id),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return self.turn(turn_id)

    def save_progress(
        self, turn_id: int, output: list[dict[str, Any]], instance_id: str | None
    ) -> None:
        """The answer so far (called at a bounded rate while streaming)."""
        self.db.execute(
            "UPDATE turns SET output=?, instance_id=COALESCE(?, instance_id) WHERE id=?",
            (json.dumps(output), instance_id, turn_id),
        )

    def finish_turn(
        self,
        turn_id: int,
        *,
        status: str,
        output: list[dict[str, Any]],
        stats: dict[str, Any] | None = None,
        response_id: str | None = None,
        instance_id: str | None = None,
        error: str | None = None,
    ) -> TurnRecord:
        self.db.execute(
            "UPDATE turns SET status=?, output=?, stats=?, response_id=?, "
            "instance_id=COALESCE(?, instance_id), error=?, completed=? WHERE id=?",
            (
                status,
                json.dumps(output),
                json.dumps(stats or {}),
                response_id,
                instance_id,
                error,
                self._clock(),
                turn_id,
            ),
        )
        return self.turn(turn_id)

    def turn(self, turn_id: int) -> TurnRecord:
        row = self.db.execute("SELECT * FROM turns WHERE id=?", (turn_id,)).fetchone()
        if row is None:
            raise KeyError(turn_id)
        return _turn(row)

    def turns(self, thread_id: int) -> list[TurnRecord]:
        rows = self.db.execute(
            "SELECT * FROM turns WHERE thread_id=? ORDER BY id", (thread_id,)
        ).fetchall()
        return [_turn(r) for r in rows]

    def branch(self, turn_id: int | None) -> list[TurnRecord]:
        """The turns from the root of the thread down to ``turn_id``, oldest first."""
        if turn_id is None:
            return []
        rows = self.db.execute(
            "WITH RECURSIVE up(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM turns WHERE id=?"
            " UNION ALL SELECT t.id, t.parent_id, up.depth + 1"
            " FROM turns t JOIN up ON t.id = up.parent_id)"
            " SELECT turns.* FROM turns JOIN up ON turns.id = up.id ORDER BY up.depth DESC",
            (turn_id,),
        ).fetchall()
        return [_turn(r) for r in rows]

    def image(self, image_id: int) -> tuple[str, bytes]:
        row = self.db.execute("SELECT mime, data FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise KeyError(image_id)
        return str(row["mime"]), bytes(row["data"])


ExportFormat = Literal["md", "json"]


class AsyncChatStore:
    """The store on one worker thread: the GUI awaits it and never waits on the disk.

    The SQLite file is opened (and migrated) on that thread too, by the first call; ``open()``
    makes that call explicitly, so that a file lmgui cannot read (one from a newer lmgui) is
    refused at start, as the first thing awaited. Each method mirrors ``ChatStore``'s; those
    that change a thread return it as it is afterwards, read in the same trip to the worker.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._worker = OnWorker(
            lambda: ChatStore(path), thread="lmgui-chat-db", closed="The chat history is closed."
        )

    async def _run(self, job: Callable[[ChatStore], T]) -> T:
        return await self._worker.run(job)

    async def open(self) -> None:
        """Open the file and bring it to the current schema (every other call does so too);
        raises RuntimeError with a sentence for a file from a newer lmgui."""
        await self._run(lambda db: None)

    async def aclose(self) -> None:
        """Close the file (if it was ever opened) after the calls already queued."""
        await self._worker.aclose()

    # ------------------------------------------------------------------ reading

    async def recovered(self) -> list[int]:
        """Turns a previous run left "streaming", marked interrupted when the file was opened."""
        return await self._run(lambda db: list(db.recovered))

    async def threads(self, search: str = "") -> list[ThreadRecord]:
        return await self._run(lambda db: db.threads(search))

    async def thread(self, thread_id: int) -> ThreadRecord:
        return await self._run(lambda db: db.thread(thread_id))

    async def turn(self, turn_id: int) -> TurnRecord:
        return await self._run(lambda db: db.turn(turn_id))

    async def turns(self, thread_id: int) -> list[TurnRecord]:
        return await self._run(lambda db: db.turns(thread_id))

    async def branch(self, turn_id: int | None) -> list[TurnRecord]:
        return await self._run(lambda db: db.branch(turn_id))

    async def image(self, image_id: int) -> tuple[str, bytes]:
        """(mime, data) of a stored image."""
        return await self._run(lambda db: db.image(image_id))

    async def export_branch(
        self, thread_id: int, *, fmt: ExportFormat, reasoning: bool = False
    ) -> str:
        """The thread's current branch as Markdown or JSON, read and written out on the worker
        (a long branch is a lot of text to build)."""

        def export(db: ChatStore) -> str:
            thread = db.thread(thread_id)
            turns = db.branch(thread.current_turn)
            render = branch_markdown if fmt == "md" else branch_json
            return render(thread, turns, reasoning=reasoning)

        return await self._run(export)

    # ------------------------------------------------------------------ threads

    async def create_thread(
        self, title: str, server: str, model: str, settings: dict[str, Any] | None = None
    ) -> ThreadRecord:
        return await self._run(lambda db: db.create_thread(title, server, model, settings))

    async def rename_thread(self, thread_id: int, title: str) -> ThreadRecord:
        def rename(db: ChatStore) -> ThreadRecord:
            db.rename_thread(thread_id, title)
            return db.thread(thread_id)

        return await self._run(rename)

    async def update_thread(
        self,
        thread_id: int,
        *,
        settings: dict[str, Any] | None = None,
        model: str | None = None,
        current_turn: int | None = None,
    ) -> ThreadRecord:
        def update(db: ChatStore) -> ThreadRecord:
            db.update_thread(thread_id, settings=settings, model=model, current_turn=current_turn)
            return db.thread(thread_id)

        return await self._run(update)

    async def set_thread_server(
        self, thread_id: int, server: str, *, model: str | None = None
    ) -> ThreadRecord:
        def move(db: ChatStore) -> ThreadRecord:
            db.set_thread_server(thread_id, server, model=model)
            return db.thread(thread_id)

        return await self._run(move)

    async def delete_thread(self, thread_id: int) -> None:
        await self._run(lambda db: db.delete_thread(thread_id))

    # ------------------------------------------------------------------ turns

    async def add_turn(
        self,
        thread_id: int,
        parent_id: int | None,
        input_items: list[dict[str, Any]],
        *,
        model: str,
        settings: dict[str, Any],
        images: Sequence[tuple[str, bytes]] = (),
    ) -> TurnRecord:
        return await self._run(
            lambda db: db.add_turn(
                thread_id, parent_id, input_items, model=model, settings=settings, images=images
            )
        )

    async def save_progress(
        self, turn_id: int, output: list[dict[str, Any]], instance_id: str | None
    ) -> None:
        await self._run(lambda db: db.save_progress(turn_id, output, instance_id))

    async def finish_turn(
        self,
        turn_id: int,
        *,
        status: str,
        output: list[dict[str, Any]],
        stats: dict[str, Any] | None = None,
        response_id: str | None = None,
        instance_id: str | None = None,
        error: str | None = None,
    ) -> TurnRecord:
        return await self._run(
            lambda db: db.finish_turn(
                turn_id,
                status=status,
                output=output,
                stats=stats,
                response_id=response_id,
                instance_id=instance_id,
                error=error,
            )
        )
