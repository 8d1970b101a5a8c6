"""SQLite: a file in a temporary folder of racetape's own, opened through aiosqlite."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from harness.adapters.base import Adapter, Location
from reftask.faults import Fault
from reftask.stores.base import SqlTaskStore
from reftask.stores.sqlite import SqliteStore


class SqliteAdapter(Adapter):
    """A database file on this machine: always there, never restarted under a run."""

    name = "sqlite"
    help = "aiosqlite on a temporary database file (the default)"
    needs_dsn = False

    def provide(self, *, pg_dsn: str | None, pg_prefix: str) -> Location:
        folder = Path(tempfile.mkdtemp(prefix="racetape-sqlite-"))
        return Location(sqlite_path=folder / "tasks.db")

    async def open_store(self, where: Location, faults: frozenset[Fault]) -> SqlTaskStore:
        assert where.sqlite_path is not None
        return await SqliteStore.open(where.sqlite_path, faults=faults)

    async def remove(self, where: Location) -> None:
        if where.sqlite_path is not None:
            _remove_files(where.sqlite_path)


def _remove_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    # Gone already (something else cleaned the temporary folder): nothing left to remove,
    # and no reason to lose the results of the runs that used it.
    with contextlib.suppress(FileNotFoundError):
        path.parent.rmdir()


SQLITE = SqliteAdapter()
