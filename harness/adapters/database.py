"""Store adapters by name: the one place in the harness that knows SQLite and Postgres exist."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from harness.scenario import MAX_OPEN_APPENDS
from reftask.dsn import parse_dsn
from reftask.faults import Fault
from reftask.stores.base import SqlTaskStore, StoreUnavailableError
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


class ServerRestarted(ConnectionError):
    """The server that answers is not the one that answered before (it restarted): whatever
    a run sent it in between may have been lost without an error reaching the run."""


CONNECTION_LOST = (
    OSError,  # refused, reset, unreachable: the socket under the driver; ServerRestarted
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.InterfaceError,  # "connection was closed in the middle of operation", ...
    asyncpg.exceptions.AdminShutdownError,  # 57P01: the server is shutting down
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up or shutting down
    StoreUnavailableError,
)
"""What a driver raises when the database went away, rather than answering wrongly."""

PROBE_TIMEOUT = 3.0
"""How long a database a hung run makes suspect gets to answer (:meth:`Database.check_answers`)."""
RECONNECT_WITHIN = 30.0
"""How long a database that stopped answering mid-run is waited for by default (the runner's
``--reconnect-within``): a restart of the server (a minor upgrade, a failover, a container
restarted by its orchestrator) takes seconds; 0 waits not at all."""
ASK_AGAIN_EVERY = 0.2
"""How often a database that went away is asked whether it answers again."""
CLEANUP_TIMEOUT = 10.0
"""How long removing a run's database may take: a server that went away does not hold the
command up (its schema goes with it, or is left for whoever runs the server)."""


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unreachable (an environment fault, not a finding
    about the code under test); an exception group counts if any member does."""
    if isinstance(exc, BaseExceptionGroup):
        return any(connection_lost(e) for e in exc.exceptions)
    return isinstance(exc, CONNECTION_LOST)


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
    # The server's start time, and racetape's own connection that asks it (check_same_server).
    _started: object = None
    _watch: asyncpg.Connection | None = None

    @classmethod
    def fresh(
        cls, adapter: str, *, pg_dsn: str | None = None, pg_prefix: str = "racetape_"
    ) -> Database:
        """A new database; a Postgres schema's name starts with ``pg_prefix`` (a parent
        gives its workers one of its own: :func:`drop_schemas` then finds what a worker it
        killed left)."""
        if adapter == "sqlite":
            folder = Path(tempfile.mkdtemp(prefix="racetape-sqlite-"))
            return cls(adapter, sqlite_path=folder / "tasks.db")
        if adapter == "postgres":
            return cls(
                adapter,
                pg_dsn=pg_dsn or pg_dsn_from_env(),
                pg_schema=f"{pg_prefix}{uuid.uuid4().hex[:12]}",
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
                # A lost server is reported once, by the runner; asyncpg's pool would also log
                # a traceback for every reconnection it tries in the background.
                logging.getLogger("asyncpg.pool").setLevel(logging.CRITICAL)
                store = await PostgresStore.open(
                    self.pg_dsn,
                    schema=self.pg_schema,
                    faults=key,
                    max_connections=MAX_OPEN_APPENDS + 8,  # see harness.scenario.open_appends
                    server_settings=PG_SESSION,
                )
            self._stores[key] = store
        return self._stores[key]

    async def check_answers(self) -> None:
        """Raise (a :data:`CONNECTION_LOST` error) unless the database answers a fresh
        connection's ``SELECT 1`` within :data:`PROBE_TIMEOUT`. A run that hung is judged
        only once this passes: a server that froze makes every run hang, a finding about the
        environment; a lock wait inside a server that still answers is one about the code."""
        if self.pg_dsn is None:
            return

        async def probe(dsn: str) -> None:
            conn = await asyncpg.connect(dsn, timeout=PROBE_TIMEOUT)
            try:
                await conn.fetchval("SELECT 1", timeout=PROBE_TIMEOUT)
            finally:
                conn.terminate()

        try:
            await asyncio.wait_for(probe(self.pg_dsn), PROBE_TIMEOUT * 2)
        except TimeoutError:
            raise TimeoutError(f"no answer to SELECT 1 within {PROBE_TIMEOUT:g}s") from None

    async def went_away(self, exc: Exception) -> bool:
        """Whether ``exc``, raised while using this database, comes from the database going
        away rather than from the code under test. A driver error that says so counts at once;
        any other error counts only if the database then fails :meth:`check_answers`: a server
        stopped in the middle of a request can leave the driver's connection in a state it
        reports in its own words (asyncpg's ``InternalClientError: cannot switch to state
        ...``), while the same error from a server that still answers stays what it is."""
        if connection_lost(exc):
            return True
        try:
            await self.check_answers()
        except Exception as probe:
            return connection_lost(probe)
        return False

    async def answers_again(
        self, within: float, should_stop: Callable[[], bool] = lambda: False
    ) -> float | None:
        """After the database went away: ask it every :data:`ASK_AGAIN_EVERY` seconds
        whether it answers (:meth:`check_answers`) until it does, for at most ``within``
        seconds; the seconds it took, or None if it did not answer in time (or at once with
        ``within`` 0, or once ``should_stop`` says so). The stores, whose connections died
        with the server, are closed when it answers: :meth:`store` opens them again."""
        started = time.monotonic()
        while not should_stop():
            left = within - (time.monotonic() - started)
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self.check_answers(), left)
            except Exception:  # not yet: refused, starting up, no answer in time, ...
                await asyncio.sleep(min(ASK_AGAIN_EVERY, max(0.0, left)))
                continue
            await self.close_stores()
            return time.monotonic() - started
        return None

    @property
    def knows_server(self) -> bool:
        """Whether :meth:`check_same_server` knows which server to expect."""
        return self.pg_dsn is None or self._started is not None

    async def check_same_server(self) -> None:
        """Raise :class:`ServerRestarted` if the Postgres server restarted since the first
        call (since the stores were last opened), or a :data:`CONNECTION_LOST` error if it does
        not answer; the first call learns which server it is. A server stopped while a run's
        write is in flight, and started again before the run is judged, can lose that write
        with no error reaching the run (a detached task's failure is the code's to swallow):
        without this, the run would look stranded, a false alarm. One round trip, on a
        connection of racetape's own; SQLite does not restart under a run."""
        if self.pg_dsn is None:
            return
        try:
            if self._watch is None:
                self._watch = await asyncpg.connect(self.pg_dsn, timeout=PROBE_TIMEOUT)
            started = await self._watch.fetchval(
                "SELECT pg_postmaster_start_time()", timeout=PROBE_TIMEOUT
            )
        except TimeoutError:
            self._forget_server()
            raise TimeoutError(f"no answer within {PROBE_TIMEOUT:g}s") from None
        except BaseException:
            self._forget_server()
            raise
        if self._started is None:
            self._started = started
        elif started != self._started:
            self._forget_server()
            raise ServerRestarted(f"the server restarted (at {started:%H:%M:%S} UTC)")

    def _forget_server(self) -> None:
        watch, self._watch, self._started = self._watch, None, None
        if watch is not None:
            watch.terminate()

    async def close_stores(self) -> None:
        """Close every open store (and its connections); the database itself stays. A store
        whose server went away is closed as far as it can be, within the cleanup bound."""
        self._forget_server()
        stores = list(self._stores.values())
        self._stores.clear()
        for store in stores:
            try:
                await asyncio.wait_for(store.close(), CLEANUP_TIMEOUT)
            except Exception as exc:
                if not await self.went_away(exc):
                    raise

    async def cleanup(self) -> None:
        """Close the stores and remove the database: the SQLite file, or the Postgres schema
        (unless the server has gone away: then there is nothing left to reach)."""
        await self.close_stores()
        if self.pg_dsn is not None and self.pg_schema is not None:
            try:
                await asyncio.wait_for(
                    self._drop_schema(self.pg_dsn, self.pg_schema), CLEANUP_TIMEOUT
                )
            except Exception as exc:
                if not await self.went_away(exc):
                    raise
        self._remove_sqlite_files()

    @staticmethod
    async def _drop_schema(dsn: str, schema: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=CLEANUP_TIMEOUT)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()

    def _remove_sqlite_files(self) -> None:
        if self.sqlite_path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
            # Gone already (something else cleaned the temporary folder): nothing left to
            # remove, and no reason to lose the results of the runs that used it.
            with contextlib.suppress(FileNotFoundError):
                self.sqlite_path.parent.rmdir()


def schema_prefix() -> str:
    """A prefix of schema names no other command shares (see :meth:`Database.fresh`)."""
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
