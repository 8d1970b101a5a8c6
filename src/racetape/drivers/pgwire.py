"""What racetape reads of the Postgres wire protocol: when a server owes an answer, whether the
bytes in a socket hold it, and, from the server itself, whether a backend waits on a lock.

Shared by the asyncpg and psycopg adapters: both talk to the same server over a socket, and
the controlled loop watches that socket (``ControlledLoop.watch``) through a :class:`PgPeer`.
Only message framing is parsed (a type byte and a length), never a message's content.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from racetape._engine.drivers import own_thread

WAITS_ON_CLIENT = frozenset({b"G", b"W"})
"""CopyInResponse, CopyBothResponse: the server waits for the client's data."""

# The backend message that ends the answer to each frontend message (Describe: RowDescription
# or NoData; Execute: CommandComplete, EmptyQueryResponse or PortalSuspended).
_ENDS = {b"P": b"1", b"B": b"2", b"C": b"3", b"D": b"Tn", b"E": b"CIs", b"S": b"Z", b"Q": b"Z"}


CANCEL_REQUEST_CODE = 80877102
"""A CancelRequest's code, where a startup message has its protocol version."""

CANCEL_TIMEOUT = 5.0
"""Seconds a cancel may take to reach the server and be closed by it."""


def send_cancel(addr: str | tuple[str, int], pid: int, secret: int) -> None:
    """Ask the server at ``addr`` (a Unix socket's path, or host and port) to cancel what backend
    ``pid`` runs, and return once the server closed that connection: it has then signalled the
    backend. Blocking, as a decision's action is: the cancel reaches the server at that step."""
    if isinstance(addr, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CANCEL_TIMEOUT)
        sock.connect(addr)
    else:
        sock = socket.create_connection(addr, timeout=CANCEL_TIMEOUT)
    with sock:
        sock.sendall(struct.pack("!iiii", 16, CANCEL_REQUEST_CODE, pid, secret))
        while sock.recv(64):  # the server sends nothing back: it closes
            pass


def frames(data: bytes | memoryview) -> tuple[list[bytes], bool]:
    """The types of the whole messages at the start of ``data``, and whether ``data`` ends on a
    message boundary (a type byte, a length that counts itself, the body)."""
    types: list[bytes] = []
    i, end = 0, len(data)
    while i + 5 <= end:
        length = int.from_bytes(data[i + 1 : i + 5], "big")
        if length < 4 or i + 1 + length > end:
            return types, False
        types.append(bytes(data[i : i + 1]))
        i += 1 + length
    return types, i == end


class Owed:
    """What a server owes a client, kept from the frontend messages the client sent and the
    backend messages it read. Invariant: ``ends`` holds, in order, the message type (one of
    several) that ends the answer to each request not answered yet."""

    def __init__(self) -> None:
        self.ends: deque[bytes] = deque()
        self.awaiting_client = False  # a COPY FROM STDIN: the server waits for data
        self.terminating = False  # Terminate sent: the server owes the end of the stream

    def sent(self, data: bytes | memoryview) -> bool:
        """Count the frontend messages in ``data``; False if it is not whole messages."""
        types, whole = frames(data)
        for kind in types:
            if kind in _ENDS:
                self.ends.append(_ENDS[kind])
            elif kind in (b"c", b"f"):  # CopyDone, CopyFail
                self.awaiting_client = False
            elif kind == b"X":  # Terminate: nothing more comes but the end of the stream
                self.ends.clear()
                self.terminating = True
        return whole

    def read(self, types: list[bytes]) -> None:
        _consume(self.ends, types, self)

    @property
    def pending(self) -> bool:
        return (bool(self.ends) and not self.awaiting_client) or self.terminating

    def answered_by(self, data: bytes) -> bool:
        """Whether reading ``data`` would settle every answer owed (or leave the server
        waiting on the client)."""
        types, whole = frames(data)
        if not whole or (self.terminating and not self.ends):
            return False  # (the end of the stream is seen by the loop, not in the bytes)
        ends = deque(self.ends)
        probe = Owed()
        _consume(ends, types, probe)
        return not ends or probe.awaiting_client


def _consume(ends: deque[bytes], types: list[bytes], owed: Owed) -> None:
    for kind in types:
        if kind == b"E":  # ErrorResponse: the server skips to the next Sync, or to nothing
            while ends and ends[0] != b"Z":
                ends.popleft()
            if ends and not any(e == b"Z" for e in ends):
                ends.clear()
        elif kind in WAITS_ON_CLIENT:
            owed.awaiting_client = True
        elif kind == b"Z":
            while ends:
                if ends.popleft() == b"Z":
                    break
        elif ends and kind in ends[0] and ends[0] != b"Z":
            ends.popleft()


@dataclass(frozen=True)
class Server:
    """Where a connection's server is and who it logged in as: the monitor logs in the same."""

    host: str
    port: int
    user: str | None
    password: str | None
    database: str | None


class Monitor:
    """A connection of racetape's own to a server, on a thread of its own, that asks the server
    about the run's backends (``pg_blocking_pids``). One per server, made on first use."""

    _monitors: ClassVar[dict[Server, Monitor]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def of(cls, server: Server) -> Monitor:
        with cls._lock:
            if server not in cls._monitors:
                cls._monitors[server] = cls(server)
            return cls._monitors[server]

    def __init__(self, server: Server) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._conn: Any = None
        self._asking = threading.Lock()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="racetape-pg-monitor", daemon=True
        )
        self._thread.start()
        own_thread(self._thread.ident or 0)

    def blocking_pids(self, pid: int) -> list[int]:
        """The backends holding what backend ``pid`` waits for (empty: it waits on none).
        One question at a time (loops in several threads share a monitor); one the server
        does not answer within 10 s raises ``TimeoutError``."""
        with self._asking:
            future = asyncio.run_coroutine_threadsafe(self._ask(pid), self._loop)
            try:
                return future.result(10.0)
            except TimeoutError:
                future.cancel()
                raise

    async def _ask(self, pid: int) -> list[int]:
        try:
            import asyncpg  # the monitor's own driver, whatever the code under test uses
        except ImportError:  # a psycopg user's machine: ask through psycopg, on this thread
            return self._ask_psycopg(pid)  # (the monitor's own thread: nothing else waits)
        if self._conn is None or self._conn.is_closed():
            s = self.server
            self._conn = await asyncpg.connect(
                host=s.host, port=s.port, user=s.user, password=s.password, database=s.database
            )
        found = await self._conn.fetchval("SELECT pg_blocking_pids($1)", pid)
        return list(found or [])

    def _ask_psycopg(self, pid: int) -> list[int]:
        import psycopg

        if self._conn is None or self._conn.closed:
            s = self.server
            self._conn = psycopg.connect(
                host=s.host,
                port=s.port,
                user=s.user,
                password=s.password,
                dbname=s.database,
                autocommit=True,
            )
        row = self._conn.execute("SELECT pg_blocking_pids(%s)", (pid,)).fetchone()
        return list(row[0] or []) if row else []


class PgPeer:
    """A Postgres connection as the controlled loop watches it (``racetape._engine.drivers.Peer``).

    ``owed`` and ``read`` say what the server still owes; a driver whose frontend bytes are
    seen (asyncpg) keeps an :class:`Owed`, one whose are not (libpq under psycopg) asks its
    own library whether a command is in progress.
    """

    def __init__(
        self,
        name: str,
        pid: int,
        server: Server,
        *,
        owed: Callable[[], bool],
        answered: Callable[[bytes], bool],
        reading: Callable[[list[bytes]], None],
        closed: Callable[[], bool],
        whole_reads: bool,
    ) -> None:
        self.name = name
        self.whole_reads = whole_reads
        self._pid = pid
        self._server = server
        self._owed, self._answered, self._reading, self._closed = owed, answered, reading, closed
        self._holders: set[int] = set()
        self.unasked: str | None = None  # why the server could not be asked about locks

    @property
    def ident(self) -> int:
        return self._pid

    def owed(self) -> bool:
        return self._owed()

    def answered(self, pending: bytes) -> bool:
        return self._answered(pending)

    def reading(self, pending: bytes) -> None:
        types, _ = frames(pending)
        self._reading(types)

    def blocked(self) -> str | None:
        try:
            self._holders = set(Monitor.of(self._server).blocking_pids(self._pid))
        except Exception as exc:
            # The server cannot be asked (a login the monitor cannot repeat, a server gone):
            # the request counts as running, so the loop waits for it up to settle_timeout,
            # and the reason is in the error that ends the run there.
            self.unasked = f"{type(exc).__name__}: {exc}"
            self._holders = set()
            return None
        if not self._holders:
            return None
        return f"a lock held by backend {', '.join(map(str, sorted(self._holders)))}"

    def holders(self) -> set[int]:
        return self._holders

    def closed(self) -> bool:
        return self._closed()
