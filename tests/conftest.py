"""Fixtures: a real store per adapter, Postgres found or started once per session.

With ``CI=true`` a missing Postgres fails the session; elsewhere the Postgres tests skip with the
reason, so a laptop without PostgreSQL still runs the SQLite half.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from harness.adapters import REGISTRY, adapter_named
from harness.pgserver import (
    LocalServer,
    PostgresServer,
    PostgresUnavailable,
    provide_postgres,
    start_local_server,
)
from reftask.faults import Fault
from reftask.stores.base import SqlTaskStore
from reftask.stores.postgres import PostgresStore
from reftask.stores.sqlite import SqliteStore
from tests import plans

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest inside pytest

ADAPTERS = [
    pytest.param(adapter.name, marks=[pytest.mark.postgres] if adapter.needs_dsn else [])
    for adapter in REGISTRY.values()
]
"""Every adapter of the registry; those on a server carry the ``postgres`` mark (it needs one)."""

StoreFactory = Callable[..., Awaitable[SqlTaskStore]]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with provide_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true needs Postgres: {exc}", pytrace=False)
        pytest.skip(str(exc))


@contextlib.contextmanager
def local_server() -> Iterator[LocalServer]:
    """A Postgres server the test session starts from the local binaries, for a test that stops
    or restarts it; a skip where there are none to start one with."""
    with contextlib.ExitStack() as stack:
        server = start_local_server(stack)
        if server is None:
            pytest.skip("no local PostgreSQL binaries (initdb, pg_ctl) to start a server with")
        yield server


@pytest.fixture
def own_server() -> Iterator[LocalServer]:
    """A server of the test's own (see :func:`local_server`)."""
    with local_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_schema(postgres_server: PostgresServer) -> Iterator[str]:
    """A schema of this test session's own, dropped at the end."""
    schema = f"rt_test_{uuid.uuid4().hex[:12]}"
    yield schema

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_server.dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@dataclass(frozen=True)
class StoreLocation:
    """Where the test's stores live: a SQLite file, or a schema on a Postgres server."""

    adapter: str
    sqlite_path: Path | None = None
    pg_dsn: str | None = None
    pg_schema: str | None = None


@pytest.fixture
def store_location(adapter: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    """Resolved in a synchronous fixture on purpose: finding or starting Postgres runs its own
    event loop, which it cannot do from inside the test's running one. Only Postgres tests ask
    for the server, so SQLite tests run on a machine without it."""
    if not adapter_named(adapter).needs_dsn:
        return StoreLocation(adapter, sqlite_path=tmp_path / "tasks.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    schema: str = request.getfixturevalue("pg_schema")
    return StoreLocation(adapter, pg_dsn=server.dsn, pg_schema=schema)


@pytest.fixture
async def store_factory(store_location: StoreLocation) -> AsyncIterator[StoreFactory]:
    """Opens stores of the test's adapter on one shared database; closes them afterwards.

    Several stores on one database are several connection pools: that is how the tests get
    appends from distinct connections.
    """
    opened: list[SqlTaskStore] = []

    async def open_store(faults: tuple[Fault, ...] = ()) -> SqlTaskStore:
        store: SqlTaskStore
        if store_location.sqlite_path is not None:
            store = await SqliteStore.open(store_location.sqlite_path, faults=faults)
        else:
            assert store_location.pg_dsn is not None
            assert store_location.pg_schema is not None
            store = await PostgresStore.open(
                store_location.pg_dsn, schema=store_location.pg_schema, faults=faults
            )
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> SqlTaskStore:
    return await store_factory()


@pytest.fixture
async def large_store(store_location: StoreLocation) -> AsyncIterator[SqlTaskStore]:
    """A store on a database made large on purpose: it already holds
    :data:`tests.plans.FILLER_TASKS` finished tasks of others (Postgres: in a schema of its own,
    analysed, dropped afterwards)."""
    store: SqlTaskStore
    if store_location.sqlite_path is not None:
        store = await SqliteStore.open(store_location.sqlite_path)
        plans.fill_sqlite(store_location.sqlite_path, plans.FILLER_TASKS)
        yield store
        await store.close()
        return
    assert store_location.pg_dsn is not None
    schema = f"rt_large_{uuid.uuid4().hex[:12]}"
    store = await PostgresStore.open(
        store_location.pg_dsn, schema=schema, max_connections=plans.PG_CONNECTIONS
    )
    try:
        await plans.fill_postgres(store_location.pg_dsn, schema, plans.FILLER_TASKS)
        yield store
    finally:
        await store.close()
        conn = await asyncpg.connect(store_location.pg_dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
