"""One worker's database, whichever adapter it is on: its stores, whether it answers, whether
its server is still the one it was, and its removal (each asked of its :class:`Adapter`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.adapters.base import (
    ASK_AGAIN_EVERY,
    CLEANUP_TIMEOUT,
    STORE_FAULTS,
    Adapter,
    Location,
    ServerWatch,
)
from harness.adapters.registry import adapter_named
from reftask.faults import Fault
from reftask.stores.base import SqlTaskStore


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
    # What asks the server whether it restarted (check_same_server); made when first asked.
    _watch: ServerWatch | None = None

    @classmethod
    def fresh(
        cls, adapter: str, *, pg_dsn: str | None = None, pg_prefix: str = "racetape_"
    ) -> Database:
        """A new database; a Postgres schema's name starts with ``pg_prefix`` (a parent
        gives its workers one of its own: :func:`drop_schemas` then finds what a worker it
        killed left)."""
        where = adapter_named(adapter).provide(pg_dsn=pg_dsn, pg_prefix=pg_prefix)
        return cls(
            adapter, sqlite_path=where.sqlite_path, pg_dsn=where.pg_dsn, pg_schema=where.pg_schema
        )

    @property
    def kind(self) -> Adapter:
        """The adapter this database is on."""
        return adapter_named(self.adapter)

    @property
    def location(self) -> Location:
        """Where this database is."""
        return Location(self.sqlite_path, self.pg_dsn, self.pg_schema)

    async def store(self, faults: Iterable[Fault] = ()) -> SqlTaskStore:
        """The store for these faults (only the store's own faults matter), opened once."""
        key = frozenset(faults) & STORE_FAULTS
        if key not in self._stores:
            self._stores[key] = await self.kind.open_store(self.location, key)
        return self._stores[key]

    async def check_answers(self) -> None:
        """Raise (a :data:`CONNECTION_LOST` error) unless the database answers a fresh
        connection's ``SELECT 1`` within :data:`PROBE_TIMEOUT`. A run that hung is judged
        only once this passes: a server that froze makes every run hang, a finding about the
        environment; a lock wait inside a server that still answers is one about the code."""
        await self.kind.check_answers(self.location)

    async def went_away(self, exc: Exception) -> bool:
        """Whether ``exc``, raised while using this database, comes from the database going
        away rather than from the code under test (:meth:`Adapter.went_away`)."""
        return await self.kind.went_away(self.location, exc)

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
        return self._server().knows

    async def check_same_server(self) -> None:
        """Raise :class:`ServerRestarted` if the Postgres server restarted since the first
        call (since the stores were last opened), or a :data:`CONNECTION_LOST` error if it does
        not answer; the first call learns which server it is. A server stopped while a run's
        write is in flight, and started again before the run is judged, can lose that write
        with no error reaching the run (a detached task's failure is the code's to swallow):
        without this, the run would look stranded, a false alarm. One round trip, on a
        connection of racetape's own; SQLite does not restart under a run."""
        await self._server().check()

    def _server(self) -> ServerWatch:
        if self._watch is None:
            self._watch = self.kind.server_watch(self.location)
        return self._watch

    async def close_stores(self) -> None:
        """Close every open store (and its connections); the database itself stays. A store
        whose server went away is closed as far as it can be, within the cleanup bound."""
        if self._watch is not None:
            self._watch.forget()
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
        await self.kind.remove(self.location)
