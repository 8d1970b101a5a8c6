"""What every store adapter answers (:class:`Adapter`), and the pieces they share: what counts
as a database that went away, the bounds on waiting for one, the faults a store carries."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import asyncpg

from reftask.faults import Fault
from reftask.stores.base import SqlTaskStore, StoreUnavailableError

STORE_FAULTS = frozenset({Fault.NO_TERMINAL_GUARD, Fault.UNLOCKED_APPEND})
"""The faults that live in a store (the others live in the manager): a store is opened once
per set of these."""


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
"""How long a database a hung run makes suspect gets to answer (:meth:`Adapter.check_answers`)."""
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


@dataclass(frozen=True)
class Location:
    """Where one database is: a SQLite file, or a schema on the Postgres server at a DSN."""

    sqlite_path: Path | None = None
    pg_dsn: str | None = None
    pg_schema: str | None = None


class ServerWatch(Protocol):
    """Tells whether the server under a database is still the one it was (see
    :meth:`harness.adapters.Database.check_same_server`)."""

    @property
    def knows(self) -> bool:
        """Whether :meth:`check` knows which server to expect."""
        ...

    async def check(self) -> None:
        """Raise :class:`ServerRestarted` if the server changed since the first call (since
        :meth:`forget`), or a :data:`CONNECTION_LOST` error if it does not answer; the first
        call learns which server it is."""
        ...

    def forget(self) -> None:
        """Forget the server (and close the connection that asked it)."""
        ...


class NoRestarts:
    """The :class:`ServerWatch` of a database with no server to restart under a run."""

    knows = True

    async def check(self) -> None:
        return None

    def forget(self) -> None:
        return None


class Adapter(abc.ABC):
    """One database racetape's runs can keep their tasks in.

    The runner, the commands and the fixtures ask an adapter, by name from the registry
    (:data:`harness.adapters.REGISTRY`), how its database is provided and located, how a store
    on it is opened, whether it answers, and how it is removed; none of them names one.
    """

    name: ClassVar[str]
    """The name ``--adapter`` takes and a result records."""
    help: ClassVar[str]
    """One line for ``racetape list``."""
    needs_dsn: ClassVar[bool]
    """Whether the database is on a server a DSN names (``--pg-dsn``), rather than in a
    temporary folder of racetape's own."""

    @abc.abstractmethod
    def provide(self, *, pg_dsn: str | None, pg_prefix: str) -> Location:
        """A new database: a temporary folder's file, or a schema whose name starts with
        ``pg_prefix`` on the server at ``pg_dsn`` (None: the default DSN)."""

    @abc.abstractmethod
    async def open_store(self, where: Location, faults: frozenset[Fault]) -> SqlTaskStore:
        """A store on the database at ``where``, with ``faults`` (store faults only), opened
        with the settings of racetape's own runs."""

    async def check_answers(self, where: Location) -> None:
        """Raise (a :data:`CONNECTION_LOST` error) unless the database answers within
        :data:`PROBE_TIMEOUT`. A file on this machine always does (the default)."""
        return None

    def server_watch(self, where: Location) -> ServerWatch:
        """What tells whether the server under ``where`` restarted; by default there is no
        server that can (:class:`NoRestarts`)."""
        return NoRestarts()

    def check_reachable(self, pg_dsn: str) -> None:
        """Raise :class:`harness.pgserver.PostgresUnavailable` (one line) unless a database of
        this adapter can be provided here; by default one always can."""
        return None

    @abc.abstractmethod
    async def remove(self, where: Location) -> None:
        """Remove the database at ``where`` (its stores are closed); one whose server went
        away is left to it."""

    async def went_away(self, where: Location, exc: Exception) -> bool:
        """Whether ``exc``, raised while using the database at ``where``, comes from the
        database going away rather than from the code under test. A driver error that says so
        counts at once; any other error counts only if the database then fails
        :meth:`check_answers`: a server stopped in the middle of a request can leave the
        driver's connection in a state it reports in its own words (asyncpg's
        ``InternalClientError: cannot switch to state ...``), while the same error from a
        server that still answers stays what it is."""
        if connection_lost(exc):
            return True
        try:
            await self.check_answers(where)
        except Exception as probe:
            return connection_lost(probe)
        return False
