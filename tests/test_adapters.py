"""The adapter registry and protocol: every adapter provides a database, opens a store on it,
answers, knows its server, and removes the database again; an unknown name is refused."""

from __future__ import annotations

import asyncpg
import pytest

from harness.adapters import (
    ADAPTERS,
    DEFAULT_ADAPTER,
    REGISTRY,
    Database,
    adapter_named,
    needs_dsn,
)
from harness.pgserver import PostgresServer


@pytest.fixture
def dsn(adapter: str, request: pytest.FixtureRequest) -> str | None:
    """The server's DSN for an adapter on one (resolved outside the test's event loop)."""
    if not adapter_named(adapter).needs_dsn:
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.dsn


def test_the_registry_has_each_adapter_under_its_name_the_default_first() -> None:
    assert ADAPTERS == ("sqlite", "postgres")
    assert ADAPTERS[0] == DEFAULT_ADAPTER
    assert all(REGISTRY[name].name == name and REGISTRY[name].help for name in ADAPTERS)
    assert not needs_dsn(["sqlite"])
    assert needs_dsn(["sqlite", "postgres"])


def test_an_unknown_adapter_is_refused_naming_those_there_are() -> None:
    with pytest.raises(ValueError, match=r"^unknown adapter 'mysql'; adapters: sqlite, postgres$"):
        Database.fresh("mysql")


async def test_a_database_is_provided_answers_and_is_removed(adapter: str, dsn: str | None) -> None:
    db = Database.fresh(adapter, pg_dsn=dsn, pg_prefix="rt_adapters_")
    assert (db.sqlite_path is None) == adapter_named(adapter).needs_dsn
    store = await db.store()
    assert await db.store() is store  # opened once
    await db.check_answers()
    await db.check_same_server()  # learns which server it is
    assert db.knows_server
    await db.check_same_server()
    assert not await db.went_away(ValueError("a finding about the code"))
    assert await db.went_away(ConnectionResetError())
    await db.cleanup()
    if db.sqlite_path is not None:
        assert not db.sqlite_path.parent.exists()
    else:
        assert dsn is not None
        conn = await asyncpg.connect(dsn)
        try:
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", db.pg_schema
            )
        finally:
            await conn.close()
        assert left == 0
