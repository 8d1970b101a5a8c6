"""Store adapters by name: the one place in the harness that knows SQLite and Postgres exist."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from harness.scenario import MAX_OPEN_APPENDS
from reftask.dsn import parse_dsn
from reftask.faults import Fault
from reftask.stores.base import SqlTaskStore
from reftask.stores.postgres import PostgresStore
from reftask.stores.sqlite import SqliteStore

ADAPTERS = ("sqlite", "postgres")
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
STORE_FAULTS = frozenset({Fault.NO_TERMINAL_GUARD, Fault.UNLOCKED_APPEND})
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


@dataclass
class Database:
    """Where one worker's runs keep their tasks: a SQLite file or a Postgres schema.

    All runs of a worker share it (task ids are fresh per run); ``cleanup`` removes it.
    """

    adapter: str
    sqlite_path: Path | None = None
    pg_dsn: str | None = None
    pg_schema: str | None = None
    _stores: dict[frozenset[Fault], SqlTaskStore] = field(default_factory=dict)

    @classmethod
    def fresh(cls, adapter: str, *, pg_dsn: str | None = None) -> Database:
        if adapter == "sqlite":
            folder = Path(tempfile.mkdtemp(prefix="racetape-sqlite-"))
            return cls(adapter, sqlite_path=folder / "tasks.db")
        if adapter == "postgres":
            return cls(
                adapter,
                pg_dsn=pg_dsn or pg_dsn_from_env(),
                pg_schema=f"racetape_{uuid.uuid4().hex[:12]}",
            )
        raise ValueError(f"unknown adapter {adapter!r}; adapters: {', '.join(ADAPTERS)}")

    async def store(self, faults: Iterable[Fault] = ()) -> SqlTaskStore:
        """The store for these faults (only the store's own faults matter), opened once."""
        key = frozenset(faults) & STORE_FAULTS
        if key not in self._stores:
            store: SqlTaskStore
            if self.adapter == "sqlite":
                assert self.sqlite_path is not None
                store = await SqliteStore.open(self.sqlite_path, faults=key)
            else:
                assert self.pg_dsn is not None
                assert self.pg_schema is not None
                store = await PostgresStore.open(
                    self.pg_dsn,
                    schema=self.pg_schema,
                    faults=key,
                    max_connections=MAX_OPEN_APPENDS + 8,  # see harness.scenario.open_appends
                    server_settings=PG_SESSION,
                )
            self._stores[key] = store
        return self._stores[key]

    async def close_stores(self) -> None:
        """Close every open store (and its connections); the database itself stays."""
        stores = list(self._stores.values())
        self._stores.clear()
        for store in stores:
            await store.close()

    async def cleanup(self) -> None:
        """Close the stores and remove the database: the SQLite file, or the Postgres schema."""
        await self.close_stores()
        if self.pg_dsn is not None and self.pg_schema is not None:
            conn = await asyncpg.connect(self.pg_dsn)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {self.pg_schema} CASCADE")
            finally:
                await conn.close()
        self._remove_sqlite_files()

    def _remove_sqlite_files(self) -> None:
        if self.sqlite_path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
            self.sqlite_path.parent.rmdir()
