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


class Peer(Protocol):
    """The far end of a socket, as a driver adapter knows it: a server that runs each request
    it is sent and answers in order (a Postgres backend). A loop that watches a peer's socket
    (:meth:`ControlledLoop.watch`) decides when what the peer sent is read, and waits, in real
    time, for every answer the peer owes before it takes its next step, so that the server's
    work happens at the step that sent the request and nowhere else.
    """

    name: str
    """Stable across runs of one interleaving (``postgres#1``): it names decisions."""

    whole_reads: bool
    """The driver's reader reads all that is pending itself (asyncpg's transport), so a read
    that leaves bytes behind means what :meth:`reading` was told is wrong; False where the
    reader only wakes a task that reads later (psycopg)."""

    def owed(self) -> bool:
        """A request was sent whose whole answer is not yet in the socket, and the server is
        not waiting on the client (a ``COPY ... FROM STDIN`` asks for data)."""

    def answered(self, pending: bytes) -> bool:
        """Whether ``pending`` (the unread bytes in the socket) may be read now: it ends on a
        message boundary and holds every answer owed."""

    def reading(self, pending: bytes) -> None:
        """``pending`` is about to be read by the driver, whole."""

    def blocked(self) -> str | None:
        """While :meth:`owed`: what the server's work waits on that another connection holds
        (``"a lock held by pid 123"``), else None. May ask the server; called rarely."""

    def holders(self) -> set[int]:
        """While :meth:`blocked`: the ids of the peers (:attr:`ident`) it waits on."""

    @property
    def ident(self) -> int:
        """The server's id of this connection (a backend pid)."""

    def closed(self) -> bool:
        """The socket is closed: the loop stops watching it."""


_OWN_THREADS: set[int] = set()


def own_thread(ident: int) -> None:
    """Mark a thread as racetape's own (a driver adapter's monitor): a controlled loop does
    not count it as a thread it cannot control."""
    _OWN_THREADS.add(ident)


def is_own_thread(ident: int | None) -> bool:
    return ident in _OWN_THREADS


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
