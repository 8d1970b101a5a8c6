"""Postgres: a schema of racetape's own on the server a DSN names, opened through asyncpg."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

import asyncpg

from harness.adapters.base import (
    CLEANUP_TIMEOUT,
    PROBE_TIMEOUT,
    Adapter,
    Location,
    NoRestarts,
    ServerRestarted,
    ServerWatch,
    connection_lost,
)
from harness.pgserver import check_reachable
from harness.scenario import MAX_OPEN_APPENDS
from reftask.dsn import parse_dsn
from reftask.faults import Fault
from reftask.stores.base import SqlTaskStore
from reftask.stores.postgres import PostgresStore

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_SESSION = {"synchronous_commit": "off"}
"""Session settings of racetape's own Postgres connections. A commit is visible, and releases
its locks, exactly when it would with the default; only the wait for the WAL to reach the disk
goes (4-5 ms a commit on a shared disk, most of a run's time). A run's schema is dropped at the
end, so nothing of it needs to survive a server crash. The contract tests keep the default."""


def pg_dsn_from_env() -> str:
    """The Postgres DSN to use when no flag gives one, validated: see :func:`resolve_pg_dsn`."""
    return resolve_pg_dsn(None)


def resolve_pg_dsn(flag: str | None) -> str:
    """``flag`` (``--pg-dsn``), else ``RACETAPE_PG_DSN``, else the local default, parsed and
    validated (:func:`reftask.dsn.parse_dsn`: a :class:`~reftask.dsn.DsnError` names the
    source and the part that is wrong), as the percent-encoded URL asyncpg is given."""
    if flag is not None:
        return parse_dsn(flag, "--pg-dsn").url()
    if env := os.environ.get("RACETAPE_PG_DSN"):
        return parse_dsn(env, "RACETAPE_PG_DSN").url()
    return DEFAULT_PG_DSN


class PostgresAdapter(Adapter):
    """A schema on a Postgres server: it can stop answering, and restart, under a run."""

    name = "postgres"
    help = "asyncpg; RACETAPE_PG_DSN or --pg-dsn (default 127.0.0.1:5432, user postgres)"
    needs_dsn = True

    def provide(self, *, pg_dsn: str | None, pg_prefix: str) -> Location:
        return Location(
            pg_dsn=pg_dsn or pg_dsn_from_env(), pg_schema=f"{pg_prefix}{uuid.uuid4().hex[:12]}"
        )

    async def open_store(self, where: Location, faults: frozenset[Fault]) -> SqlTaskStore:
        assert where.pg_dsn is not None
        assert where.pg_schema is not None
        # A lost server is reported once, by the runner; asyncpg's pool would also log
        # a traceback for every reconnection it tries in the background.
        logging.getLogger("asyncpg.pool").setLevel(logging.CRITICAL)
        return await PostgresStore.open(
            where.pg_dsn,
            schema=where.pg_schema,
            faults=faults,
            max_connections=MAX_OPEN_APPENDS + 8,  # see harness.scenario.open_appends
            server_settings=PG_SESSION,
        )

    async def check_answers(self, where: Location) -> None:
        """Raise (a :data:`CONNECTION_LOST` error) unless the server answers a fresh
        connection's ``SELECT 1`` within :data:`PROBE_TIMEOUT`."""
        if where.pg_dsn is None:
            return

        async def probe(dsn: str) -> None:
            conn = await asyncpg.connect(dsn, timeout=PROBE_TIMEOUT)
            try:
                await conn.fetchval("SELECT 1", timeout=PROBE_TIMEOUT)
            finally:
                conn.terminate()

        try:
            await asyncio.wait_for(probe(where.pg_dsn), PROBE_TIMEOUT * 2)
        except TimeoutError:
            raise TimeoutError(f"no answer to SELECT 1 within {PROBE_TIMEOUT:g}s") from None

    def server_watch(self, where: Location) -> ServerWatch:
        return NoRestarts() if where.pg_dsn is None else PostmasterWatch(where.pg_dsn)

    def check_reachable(self, pg_dsn: str) -> None:
        check_reachable(pg_dsn)

    async def remove(self, where: Location) -> None:
        """Drop the schema, unless the server has gone away: then there is nothing left to
        reach."""
        if where.pg_dsn is None or where.pg_schema is None:
            return
        try:
            await asyncio.wait_for(_drop_schema(where.pg_dsn, where.pg_schema), CLEANUP_TIMEOUT)
        except Exception as exc:
            if not await self.went_away(where, exc):
                raise


class PostmasterWatch:
    """The server's start time (``pg_postmaster_start_time()``), asked on a connection of
    racetape's own: one round trip a check."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._started: object = None
        self._conn: asyncpg.Connection | None = None

    @property
    def knows(self) -> bool:
        return self._started is not None

    async def check(self) -> None:
        try:
            if self._conn is None:
                self._conn = await asyncpg.connect(self._dsn, timeout=PROBE_TIMEOUT)
            started = await self._conn.fetchval(
                "SELECT pg_postmaster_start_time()", timeout=PROBE_TIMEOUT
            )
        except TimeoutError:
            self.forget()
            raise TimeoutError(f"no answer within {PROBE_TIMEOUT:g}s") from None
        except BaseException:
            self.forget()
            raise
        if self._started is None:
            self._started = started
        elif started != self._started:
            self.forget()
            raise ServerRestarted(f"the server restarted (at {started:%H:%M:%S} UTC)")

    def forget(self) -> None:
        conn, self._conn, self._started = self._conn, None, None
        if conn is not None:
            conn.terminate()


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=CLEANUP_TIMEOUT)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def schema_prefix() -> str:
    """A prefix of schema names no other command shares (see :meth:`PostgresAdapter.provide`)."""
    return f"racetape_{uuid.uuid4().hex[:8]}_"


async def drop_schemas(dsn: str, prefix: str) -> None:
    """Drop every schema whose name starts with ``prefix`` (those of worker processes that
    were killed before they could drop their own), within :data:`CLEANUP_TIMEOUT`; a server
    that went away keeps them (there is nothing left to reach)."""

    async def drop() -> None:
        conn = await asyncpg.connect(dsn, timeout=CLEANUP_TIMEOUT)
        try:
            names = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix
            )
            for (name,) in names:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    try:
        await asyncio.wait_for(drop(), CLEANUP_TIMEOUT)
    except Exception as exc:
        if not connection_lost(exc):
            raise


POSTGRES = PostgresAdapter()
