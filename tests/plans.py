"""What a store sends to its database, and whether the database reads whole tables to answer.

The proof that a call's cost does not grow with the rest of the database is the plan of every
statement it sends, taken on a database made large on purpose: on SQLite, ``EXPLAIN QUERY PLAN``
must show only ``SEARCH ... USING ... INDEX`` on ``tasks`` and ``events``, never a ``SCAN``; on
Postgres, after ``ANALYZE`` and with ``enable_seqscan`` left on, ``EXPLAIN`` must show no
``Seq Scan`` of either table. A plan is the database's own account of which rows it reads, so
the check holds on any machine and at any load, where a timing would not.

The statements are captured as they are sent: SQLite's trace callback on every connection of the
store (the expanded text, with its parameters inlined), asyncpg's query logger on every
connection of the pool (the text and its arguments).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

from harness.scenario import MAX_OPEN_APPENDS
from reftask.stores.postgres import PostgresStore
from reftask.stores.sqlite import SqliteStore

TABLES = ("tasks", "events")
FILLER_TASKS = 20_000
"""How many other tasks a database made large on purpose holds: enough that a whole-table read
costs the planner far more than a probe per id, so only a statement with no index path scans."""
PG_CONNECTIONS = MAX_OPEN_APPENDS + 8
"""The pool size of a store whose statements are captured (:func:`postgres_statements`): as
many as racetape's own stores have, so that a controlled run never waits for a connection."""
PLANNED = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)

# A finished task's tape: task_started, two progress, final.
_KINDS = ("task_started", "progress", "progress", "final")


def fill_sqlite(path: Path, tasks: int) -> None:
    """Add ``tasks`` finished tasks (four events each) to the SQLite database at ``path``."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " INSERT INTO tasks SELECT 'filler-' || i, 'SUCCEEDED', i, i FROM n",
                (tasks,),
            )
            conn.executemany(
                "INSERT INTO events (task_id, seq, kind, body, ts)"
                " SELECT id, ?, ?, '{}', created_at FROM tasks WHERE id LIKE 'filler-%'",
                [(seq, kind) for seq, kind in enumerate(_KINDS, start=1)],
            )
    finally:
        conn.close()


async def fill_postgres(dsn: str, schema: str, tasks: int) -> None:
    """Add ``tasks`` finished tasks (four events each) to ``schema``, then ANALYZE both tables."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "INSERT INTO tasks SELECT 'filler-' || i, 'SUCCEEDED', i, i"
            " FROM generate_series(1, $1::int) AS i",
            tasks,
        )
        await conn.execute(
            "INSERT INTO events (task_id, seq, kind, body, ts)"
            " SELECT t.id, k.seq, k.kind, '{}'::jsonb, t.created_at FROM tasks t,"
            " unnest($1::text[]) WITH ORDINALITY AS k(kind, seq) WHERE t.id LIKE 'filler-%'",
            list(_KINDS),
        )
        await conn.execute("ANALYZE tasks")
        await conn.execute("ANALYZE events")
    finally:
        await conn.close()


@asynccontextmanager
async def sqlite_statements(store: SqliteStore) -> AsyncIterator[list[str]]:
    """Every statement ``store`` sends inside the block, on connections old and new."""
    sent: list[str] = []

    async def trace(conn: aiosqlite.Connection) -> None:
        await conn.set_trace_callback(sent.append)

    for conn in store._all:
        await trace(conn)
    connect = store._connect

    async def connect_traced() -> aiosqlite.Connection:
        conn = await connect()
        await trace(conn)
        return conn

    store._connect = connect_traced  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        store._connect = connect  # type: ignore[method-assign]
        for conn in store._all:
            await conn.set_trace_callback(None)  # type: ignore[arg-type]


def sqlite_scans(path: Path, statements: list[str]) -> list[str]:
    """The statements whose plan reads a whole table of ``tasks`` or ``events``, with the plan."""
    conn = sqlite3.connect(path)
    found = []
    try:
        for sql in sorted({s for s in statements if PLANNED.match(s)}):
            details = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            if any(_sqlite_scan(detail) for detail in details):
                found.append(f"{sql.strip()} -> {details}")
    finally:
        conn.close()
    return found


def _sqlite_scan(detail: str) -> bool:
    """``SCAN t`` or ``SCAN tasks``; a search is fine, and so is ``SCAN CONSTANT ROW`` (no
    table: a SELECT of scalar subqueries)."""
    match = re.match(r"SCAN (\w+)", detail)
    return match is not None and match.group(1) != "CONSTANT"


@asynccontextmanager
async def postgres_statements(
    store: PostgresStore, connections: int
) -> AsyncIterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every statement ``store`` sends inside the block, with its arguments.

    The store must have been opened with ``max_connections=connections``: every connection the
    pool can have is opened here and given the logger, so none the block uses goes unseen.
    """
    sent: list[tuple[str, tuple[Any, ...]]] = []

    def log(record: Any) -> None:
        sent.append((record.query, tuple(record.args or ())))

    pool = store._pool
    held = [await pool.acquire() for _ in range(connections)]
    for conn in held:
        conn.add_query_logger(log)
    for conn in held:
        await pool.release(conn)
    try:
        yield sent
        await asyncio.sleep(0)  # the logger is called soon after each query, not during it
    finally:
        held = [await pool.acquire() for _ in range(connections)]
        for conn in held:
            conn.remove_query_logger(log)
        for conn in held:
            await pool.release(conn)


async def postgres_scans(
    dsn: str, schema: str, statements: list[tuple[str, tuple[Any, ...]]]
) -> list[str]:
    """The statements whose plan has a ``Seq Scan`` of ``tasks`` or ``events``, with the plan."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    found = []
    try:
        assert await conn.fetchval("SHOW enable_seqscan") == "on"
        seen: set[str] = set()
        for sql, args in statements:
            if sql in seen or not PLANNED.match(sql):
                continue
            seen.add(sql)
            plan = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            scans = [n for n in _nodes(plan[0]["Plan"]) if n["Node Type"] == "Seq Scan"]
            if any(n.get("Relation Name") in TABLES for n in scans):
                found.append(f"{sql.strip()} -> {json.dumps(plan)}")
    finally:
        await conn.close()
    return found


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


async def full_scans(
    store: SqliteStore | PostgresStore, call: Callable[[], Awaitable[object]], *, pg_dsn: str = ""
) -> list[str]:
    """Await ``call()`` and return every statement it sent that reads a whole table."""
    if isinstance(store, SqliteStore):
        async with sqlite_statements(store) as sqlite_sent:
            await call()
        return sqlite_scans(store.path, sqlite_sent)
    async with postgres_statements(store, PG_CONNECTIONS) as pg_sent:
        await call()
    return await postgres_scans(pg_dsn, store.schema, pg_sent)
