"""Postgres adapter on asyncpg.

A connection pool; every store lives in one schema (``search_path``), so test sessions and
racetape runs can each have their own and drop it afterwards. The append lock is a row lock on
the task (``SELECT ... FOR UPDATE``): it holds across connections and processes, and the status
update of the same task waits for it, so lock names are per task.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from reftask.dsn import redact_dsn
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
    id text PRIMARY KEY,
    status text NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);
-- No UNIQUE (task_id, seq): the append lock keeps seq unique; see the SQLite adapter.
CREATE TABLE IF NOT EXISTS events (
    id bigserial PRIMARY KEY,
    task_id text NOT NULL REFERENCES tasks(id),
    seq integer NOT NULL,
    kind text NOT NULL,
    body jsonb NOT NULL,
    ts double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task_seq ON events (task_id, seq);
-- No index on status: nothing looks a task up by its status alone (list_unfinished probes ids,
-- or reads every row at a start-up), and an index on it would make every status update a
-- non-HOT update, a dead row version and new index entries per update left for a VACUUM that
-- may never come (autovacuum can be off); HOT updates are pruned in place. An older schema's
-- index goes.
DROP INDEX IF EXISTS tasks_unfinished;
-- Whether a task has its final, in one probe that reads no event row (list_unfinished).
CREATE INDEX IF NOT EXISTS events_final ON events (task_id, kind) WHERE kind = 'final';
"""


# The unfinished tasks among the ids in $1: one primary-key probe per id.
_UNFINISHED_AMONG = (
    f"SELECT id FROM tasks t WHERE t.id = ANY($1::text[]) AND {UNFINISHED_ROW}"
    " ORDER BY created_at, id"
)

# Serialises concurrent schema creation from several processes (CREATE ... IF NOT EXISTS races).
_SCHEMA_LOCK_KEY = 0x7261636574617065  # "racetape"

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The store sets no session state, so a released connection needs no RESET round trip."""


class _PostgresAppend:
    def __init__(self, conn: PoolConnectionProxy[asyncpg.Record], task_id: str) -> None:
        self._conn = conn
        self._task_id = task_id

    async def read_status_and_max_seq(self) -> tuple[str | None, int]:
        row = await self._conn.fetchrow(
            "SELECT t.status, COALESCE(MAX(e.seq), 0) AS max_seq"
            " FROM tasks t LEFT JOIN events e ON e.task_id = t.id"
            " WHERE t.id = $1 GROUP BY t.status",
            self._task_id,
        )
        if row is None:
            return None, 0
        return row["status"], int(row["max_seq"])

    async def insert(self, seq: int, kind: str, body: dict[str, Any], ts: float) -> None:
        await self._conn.execute(
            "INSERT INTO events (task_id, seq, kind, body, ts) VALUES ($1, $2, $3, $4::jsonb, $5)",
            self._task_id,
            seq,
            kind,
            json.dumps(body),
            ts,
        )


class PostgresStore(SqlTaskStore):
    name = "postgres"

    def __init__(self, pool: asyncpg.Pool, *, schema: str, faults: Iterable[Fault] = ()) -> None:
        super().__init__(faults)
        self._pool = pool
        self.schema = schema

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = "public",
        faults: Iterable[Fault] = (),
        max_connections: int = 32,
        server_settings: Mapping[str, str] | None = None,
    ) -> PostgresStore:
        """Connect to ``dsn`` and use (creating if needed) ``schema``.

        ``max_connections`` bounds the pool; a controlled run holds at most one connection per
        actor parked inside a transaction, so it only needs to exceed the actors in flight.
        ``server_settings`` are extra session settings for the pool's connections (the store
        sets ``search_path`` itself).
        """
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema name {schema!r} must match {_SCHEMA_NAME.pattern}")
        try:
            admin = await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise StoreUnavailableError(
                f"cannot reach Postgres at {redact_dsn(dsn)}: {exc}"
                " (start a server or set RACETAPE_PG_DSN)"
            ) from exc
        try:
            async with admin.transaction():
                await admin.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK_KEY)
                await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                await admin.execute(f"SET LOCAL search_path = {schema}")
                await admin.execute(_SCHEMA)
        finally:
            await admin.close()
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_connections,
            max_inactive_connection_lifetime=0,
            server_settings={**(server_settings or {}), "search_path": schema},
            reset=_no_reset,
        )
        return cls(pool, schema=schema, faults=faults)

    # -- primitives ------------------------------------------------------------------------------

    def _lock_name(self, task_id: str) -> str:
        return f"postgres:{self.schema}.tasks/{task_id}"

    def _create_lock(self, task_id: str) -> str | None:
        return None  # a new row conflicts with no other task's lock

    async def _insert_task(self, task_id: str, now: float) -> None:
        await self._pool.execute(
            "INSERT INTO tasks (id, status, created_at, updated_at) VALUES ($1, $2, $3, $3)",
            task_id,
            TaskStatus.PENDING.value,
            now,
        )

    async def _update_status(self, task_id: str, status: TaskStatus, now: float) -> bool:
        result = await self._pool.execute(
            "UPDATE tasks SET status = $2, updated_at = $3 WHERE id = $1",
            task_id,
            status.value,
            now,
        )
        return bool(result == "UPDATE 1")

    @asynccontextmanager
    async def _append_transaction(
        self, task_id: str, *, locked: bool
    ) -> AsyncIterator[AppendTransaction]:
        async with self._pool.acquire() as conn:
            if not locked:
                # unlocked-append: each statement commits on its own, no lock between them.
                yield _PostgresAppend(conn, task_id)
                return
            async with conn.transaction():
                # The lock is its own statement on purpose: a single "SELECT ... FOR UPDATE" that
                # also reads max(seq) would read the events table from the snapshot taken before
                # it waited for the lock, and could hand out a seq another append just used.
                await conn.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task_id)
                yield _PostgresAppend(conn, task_id)

    # -- reads -------------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord:
        row = await self._pool.fetchrow(
            "SELECT id, status, created_at, updated_at FROM tasks WHERE id = $1", task_id
        )
        if row is None:
            raise UnknownTaskError(task_id)
        return TaskRecord(
            row["id"], TaskStatus(row["status"]), row["created_at"], row["updated_at"]
        )

    async def list_events(self, task_id: str) -> list[EventRecord]:
        rows = await self._pool.fetch(
            "SELECT seq, kind, body, ts FROM events WHERE task_id = $1 ORDER BY seq, id", task_id
        )
        return [
            EventRecord(task_id, r["seq"], r["kind"], json.loads(r["body"]), r["ts"]) for r in rows
        ]

    async def list_unfinished(self, among: Collection[str] | None = None) -> list[str]:
        """See :meth:`SqlTaskStore.list_unfinished`: with ``among``, primary-key probes of those
        ids only; without, a pass over every task in the schema."""
        if among is None:
            rows = await self._pool.fetch(UNFINISHED)
        else:
            rows = await self._pool.fetch(_UNFINISHED_AMONG, sorted(set(among)))
        return [r["id"] for r in rows]

    async def close(self) -> None:
        await self._pool.close()

    async def drop_schema(self) -> None:
        """Remove this store's schema and everything in it (test sessions clean up with this)."""
        await self._pool.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
