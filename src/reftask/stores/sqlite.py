"""SQLite adapter on aiosqlite.

One database file, a small pool of connections (each aiosqlite connection is its own thread).
The append lock is SQLite's write lock, taken with ``BEGIN IMMEDIATE``: it holds across
connections and processes, and it is one lock for the whole file, so every write transaction
declares the same lock name to the control points.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from reftask.faults import Fault
from reftask.models import EventRecord, TaskRecord, TaskStatus, UnknownTaskError
from reftask.stores.base import (
    UNFINISHED,
    UNFINISHED_ROW,
    AppendTransaction,
    SqlTaskStore,
    StoreUnavailableError,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- No UNIQUE (task_id, seq): the append lock is what keeps seq unique, and it is what the
-- unlocked-append fault removes; a constraint would hide the race instead of exposing it.
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task_seq ON events (task_id, seq);
-- No index on status: nothing looks a task up by its status alone (list_unfinished probes ids,
-- or reads every row at a start-up), and each status update would write it too. An older
-- file's index goes.
DROP INDEX IF EXISTS tasks_unfinished;
-- Whether a task has its final, in one probe that reads no event row (list_unfinished).
CREATE INDEX IF NOT EXISTS events_final ON events (task_id, kind) WHERE kind = 'final';
"""


# One statement per this many ids: well under SQLite's limit on bound parameters (32,766).
_AMONG_CHUNK = 500


def _unfinished_among(count: int) -> str:
    """The unfinished tasks among ``count`` ids: one primary-key probe per id."""
    marks = ", ".join("?" * count)
    return f"SELECT id, created_at FROM tasks t WHERE t.id IN ({marks}) AND {UNFINISHED_ROW}"


_BUSY_TIMEOUT_MS = 10_000


class _SqliteAppend:
    def __init__(self, conn: aiosqlite.Connection, task_id: str) -> None:
        self._conn = conn
        self._task_id = task_id

    async def read_status_and_max_seq(self) -> tuple[str | None, int]:
        async with self._conn.execute(
            "SELECT (SELECT status FROM tasks WHERE id = ?1),"
            " (SELECT COALESCE(MAX(seq), 0) FROM events WHERE task_id = ?1)",
            (self._task_id,),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None  # a SELECT of two scalar subqueries always yields one row
        return row[0], int(row[1])

    async def insert(self, seq: int, kind: str, body: dict[str, Any], ts: float) -> None:
        await self._conn.execute(
            "INSERT INTO events (task_id, seq, kind, body, ts) VALUES (?, ?, ?, ?, ?)",
            (self._task_id, seq, kind, json.dumps(body), ts),
        )


class SqliteStore(SqlTaskStore):
    name = "sqlite"

    def __init__(self, path: str | Path, *, faults: Iterable[Fault] = ()) -> None:
        super().__init__(faults)
        self.path = Path(path)
        self._idle: list[aiosqlite.Connection] = []
        self._all: list[aiosqlite.Connection] = []

    @classmethod
    async def open(cls, path: str | Path, *, faults: Iterable[Fault] = ()) -> SqliteStore:
        """Open (creating if needed) the database at ``path``."""
        store = cls(path, faults=faults)
        try:
            async with store._connection() as conn:
                await conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            await store.close()
            raise StoreUnavailableError(
                f"cannot open SQLite database {store.path}: {exc} (check the path is writable)"
            ) from exc
        return store

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: no implicit transactions; the store says BEGIN when it means it.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        self._all.append(conn)
        return conn

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = self._idle.pop() if self._idle else await self._connect()
        try:
            yield conn
        finally:
            # Back to the pool even when the caller was cancelled mid-statement: aiosqlite runs
            # one connection's statements in order, so whatever was queued finishes first.
            self._idle.append(conn)

    # -- primitives ------------------------------------------------------------------------------

    def _lock_name(self, task_id: str) -> str:
        return f"sqlite:{self.path}"

    def _create_lock(self, task_id: str) -> str | None:
        return f"sqlite:{self.path}"

    async def _insert_task(self, task_id: str, now: float) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO tasks (id, status, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (task_id, TaskStatus.PENDING.value, now, now),
            )

    async def _update_status(self, task_id: str, status: TaskStatus, now: float) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "UPDATE tasks SET status = ?, updated_at = ? WHERE id = ?",
                (status.value, now, task_id),
            )
            return cursor.rowcount == 1

    @asynccontextmanager
    async def _append_transaction(
        self, task_id: str, *, locked: bool
    ) -> AsyncIterator[AppendTransaction]:
        async with self._connection() as conn:
            if not locked:
                # unlocked-append: each statement commits on its own, no lock between them.
                yield _SqliteAppend(conn, task_id)
                return
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteAppend(conn, task_id)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    # -- reads -------------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord:
        async with (
            self._connection() as conn,
            conn.execute(
                "SELECT id, status, created_at, updated_at FROM tasks WHERE id = ?", (task_id,)
            ) as cursor,
        ):
            row = await cursor.fetchone()
        if row is None:
            raise UnknownTaskError(task_id)
        return TaskRecord(row[0], TaskStatus(row[1]), row[2], row[3])

    async def list_events(self, task_id: str) -> list[EventRecord]:
        async with self._connection() as conn:
            rows = await conn.execute_fetchall(
                "SELECT seq, kind, body, ts FROM events WHERE task_id = ? ORDER BY seq, id",
                (task_id,),
            )
        return [EventRecord(task_id, r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    async def list_unfinished(self, among: Collection[str] | None = None) -> list[str]:
        """See :meth:`SqlTaskStore.list_unfinished`: with ``among``, primary-key probes of those
        ids only; without, a pass over every task in the file."""
        async with self._connection() as conn:
            if among is None:
                return [r[0] for r in await conn.execute_fetchall(UNFINISHED)]
            ids = sorted(set(among))
            found: list[tuple[float, str]] = []
            for start in range(0, len(ids), _AMONG_CHUNK):
                chunk = ids[start : start + _AMONG_CHUNK]
                rows = await conn.execute_fetchall(_unfinished_among(len(chunk)), chunk)
                found += [(r[1], r[0]) for r in rows]
        return [task_id for _, task_id in sorted(found)]

    async def close(self) -> None:
        conns, self._all, self._idle = self._all, [], []
        for conn in conns:
            await conn.close()
