"""The seam through which database drivers join the controlled loop; the engine knows none.

A driver talks to its database from a thread of its own (aiosqlite) or over a socket (asyncpg,
psycopg); neither goes through the default executor, so the loop cannot see on its own when a
request takes effect or when its answer may land. An adapter for the driver (in
``racetape.drivers``) registers here and makes the driver's requests visible to the loop
through the loop's generic means (a served thread's queue, a watched socket).

A database lock wait happens in C (SQLite's busy handler sleeps in the library), where no
Python frame shows it: an adapter may register a *lock probe*, which the loop asks about a job's
body that has run a while without finishing (see :func:`lock_wait`).

Contract: :meth:`Driver.install` is idempotent and cheap; it changes nothing unless the driver's
module is already imported, and what it installs acts only while the running loop is a
``ControlledLoop`` (or, for a hook that runs on a worker thread, while one runs in the process:
:func:`controlled_running`): code on any other loop runs exactly as without racetape.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


class Driver(Protocol):
    name: str

    def install(self) -> None:
        """Hook into the driver, if it is imported and not hooked yet."""


@dataclass(frozen=True)
class LockWait:
    """A body blocked on a database lock that another actor's open transaction holds."""

    what: str  # e.g. "SQLite lock on tasks.db"
    over: Callable[[], bool]  # true once that holder has let go: the body may go on
    timeout: float  # real seconds after which the body gives up on its own (busy timeout)


LockProbe = Callable[[threading.Thread], "LockWait | None"]
"""Whether ``thread``, running a job's body that has not finished, waits on a lock another
actor holds; must never say so of a body that could go on by itself (no false alarm)."""


_DRIVERS: list[Driver] = []
_PROBES: list[LockProbe] = []
_running = 0
_running_lock = threading.Lock()


def register(driver: Driver) -> None:
    """Make ``driver`` known to every controlled loop made from now on (once per name)."""
    if all(d.name != driver.name for d in _DRIVERS):
        _DRIVERS.append(driver)


def install_drivers() -> None:
    """Called by a controlled loop when it is made and each time it starts running: a driver
    imported after the loop was made is hooked before the loop runs its code."""
    for driver in _DRIVERS:
        driver.install()


def register_lock_probe(probe: LockProbe) -> None:
    """Ask ``probe`` too about bodies that run long (once per probe)."""
    if probe not in _PROBES:
        _PROBES.append(probe)


def lock_wait(thread: threading.Thread) -> LockWait | None:
    """The first lock wait a registered probe sees ``thread`` in, if any."""
    for probe in _PROBES:
        wait = probe(thread)
        if wait is not None:
            return wait
    return None


@contextlib.contextmanager
def running() -> Iterator[None]:
    """Held by a controlled loop while it runs (see :func:`controlled_running`)."""
    global _running
    with _running_lock:
        _running += 1
    try:
        yield
    finally:
        with _running_lock:
            _running -= 1


def controlled_running() -> bool:
    """Whether a controlled loop runs in this process: a hook called on a worker thread (where
    no loop runs) acts only then."""
    return _running > 0
