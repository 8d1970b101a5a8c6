"""SQLite lock waits seen as blocked, through ``sqlite3`` and so through aiosqlite.

A statement that needs a lock another connection holds waits in SQLite's busy handler, in C:
the thread shows no Python frame of a wait, so the loop would take it for a body still busy
and, at ``settle_timeout``, for a hung one. Installed, every ``sqlite3.connect`` made while a
``ControlledLoop`` runs in the process is tracked (its database file, the thread that made it,
its busy timeout), and a lock probe tells the loop when a body that has run a few ms without
finishing is on a thread whose connection shares a file with another thread's connection that
holds an open transaction: the body is parked until that transaction ends (or, when nothing
else can happen, runs on to its own busy timeout, as on a real machine).

Limits: a connection is known by the thread that made it (sqlite3's default
``check_same_thread``), so one shared across threads is not seen as a holder from the thread
that made it; a tracked connection is of a subclass of the class it would have had (``factory``),
so that it can be known weakly, without keeping a dropped connection (and its lock) alive.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from racetape._engine.drivers import LockWait, controlled_running, register_lock_probe

NAME = "sqlite3"
DEFAULT_TIMEOUT = 5.0  # sqlite3.connect's own default


@dataclass(eq=False)
class _Tracked:
    connection: weakref.ref[Any]
    thread: weakref.ref[threading.Thread]
    file: str
    timeout: float

    def in_transaction(self) -> bool:
        """Read from the loop's thread: sqlite3 does not check the thread for this property."""
        connection = self.connection()
        if connection is None:
            return False
        try:
            return bool(connection.in_transaction)
        except Exception:  # closed: sqlite3.ProgrammingError
            return False


_TRACKED: list[_Tracked] = []
_LOCK = threading.Lock()
_SUBCLASSES: dict[type, type] = {}


def _weakable(factory: type) -> type:
    """A subclass of ``factory`` that a weak reference can point to (sqlite3's own cannot)."""
    if factory not in _SUBCLASSES:
        namespace = {"__module__": factory.__module__}
        _SUBCLASSES[factory] = type(factory.__name__, (factory,), namespace)
    return _SUBCLASSES[factory]


def _track(connection: Any, timeout: float) -> None:
    try:
        rows = connection.execute("PRAGMA database_list").fetchall()
    except Exception:  # a factory that cannot run this: the connection is not tracked
        return
    files = [file for _, name, file in rows if name == "main" and file]
    if not files:  # in memory: no other connection shares it
        return
    entry = _Tracked(
        weakref.ref(connection), weakref.ref(threading.current_thread()), files[0], timeout
    )
    with _LOCK:
        _TRACKED[:] = [t for t in _TRACKED if t.connection() is not None]
        _TRACKED.append(entry)


def probe(thread: threading.Thread) -> LockWait | None:
    """The loop's lock probe: whether ``thread`` may wait on another thread's transaction."""
    with _LOCK:
        tracked = [t for t in _TRACKED if t.connection() is not None]
    mine = [t for t in tracked if t.thread() is thread]
    files = {t.file for t in mine}
    holders = [
        t for t in tracked if t.thread() is not thread and t.file in files and t.in_transaction()
    ]
    if not holders:
        return None

    def over() -> bool:
        return not all(h.in_transaction() for h in holders)

    names = ", ".join(sorted({os.path.basename(h.file) for h in holders}))
    timeout = max(t.timeout for t in mine if t.file in {h.file for h in holders})
    return LockWait(f"SQLite lock on {names}", over, timeout)


class Sqlite3Driver:
    name = NAME

    def install(self) -> None:
        sqlite3: Any = sys.modules.get("sqlite3")
        if sqlite3 is None or getattr(sqlite3, "_racetape_installed", False):
            return
        connect = sqlite3.connect

        @functools.wraps(connect)
        def tracked_connect(database: Any, *args: Any, **kwargs: Any) -> Any:
            if not controlled_running():
                return connect(database, *args, **kwargs)
            timeout = kwargs.get("timeout", args[0] if args else DEFAULT_TIMEOUT)
            if len(args) >= 5:  # factory given by position: timeout, detect_types, ...
                args = (*args[:4], _weakable(args[4]), *args[5:])
            else:
                kwargs["factory"] = _weakable(kwargs.get("factory", sqlite3.Connection))
            connection = connect(database, *args, **kwargs)
            _track(connection, float(timeout))
            return connection

        sqlite3.connect = tracked_connect
        dbapi2: Any = sys.modules.get("sqlite3.dbapi2")
        if dbapi2 is not None:
            dbapi2.connect = tracked_connect
        sqlite3._racetape_installed = True
        register_lock_probe(probe)


DRIVER = Sqlite3Driver()
