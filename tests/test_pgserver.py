"""Finding Postgres: the DSN first, then a container, then a server started from local binaries;
each failure is one line that says how to fix it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from harness import pgserver
from harness.pgserver import PostgresUnavailable, provide_postgres

UNREACHABLE = "postgresql://postgres:secret@127.0.0.1:1/postgres"


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message
    return message


def test_an_unreachable_dsn_is_one_line_naming_it_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(pgserver.DSN_ENV, UNREACHABLE)
    with pytest.raises(PostgresUnavailable) as info, provide_postgres():
        pass
    message = _one_line(info.value)
    assert "cannot reach Postgres at postgresql://postgres:***@127.0.0.1:1/postgres" in message
    assert "secret" not in message


def test_no_postgres_anywhere_is_one_line_saying_how_to_provide_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(pgserver.DSN_ENV, raising=False)
    monkeypatch.setattr(pgserver, "_from_testcontainers", lambda stack: None)
    monkeypatch.setattr(pgserver, "_postgres_bin_dir", lambda: None)
    with pytest.raises(PostgresUnavailable) as info, provide_postgres():
        pass
    message = _one_line(info.value)
    assert pgserver.DSN_ENV in message
    assert "initdb" in message


@pytest.mark.skipif(pgserver._postgres_bin_dir() is None, reason="no PostgreSQL server binaries")
def test_without_a_dsn_a_throwaway_server_is_started_and_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(pgserver.DSN_ENV, raising=False)
    monkeypatch.setattr(pgserver, "_from_testcontainers", lambda stack: None)

    async def answer(dsn: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            value: int = await conn.fetchval("SELECT 41 + 1")
            return value
        finally:
            await conn.close()

    with provide_postgres() as server:
        assert server.origin == "local-binaries"
        assert asyncio.run(answer(server.dsn)) == 42
    with pytest.raises((OSError, asyncpg.PostgresError)):
        asyncio.run(answer(server.dsn))
