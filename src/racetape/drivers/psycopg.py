"""psycopg 3's async connection under the controlled loop: its answers are read when a
decision says, and the server runs each request at the step that sent it.

libpq writes a request from C, within the step that asks for it, so a psycopg request's send
is not a decision of its own (asyncpg's is); what is the same is the rest: the loop waits for
the whole answer before its next step (libpq says a command is in progress), reads it when a
decision says (psycopg reads only once the loop runs its reader), and sees lock waits from the
server. psycopg's own clock (``psycopg.waiting.monotonic``, which decides when a busy wait
yields to the loop) reads the loop's virtual time, so that yield is the same in every run.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from typing import Any

from racetape._engine.loop import ControlledLoop
from racetape.drivers.pgwire import WAITS_ON_CLIENT, PgPeer, Server, frames


class PsycopgDriver:
    name = "psycopg"

    def __init__(self) -> None:
        self._installed = False

    def install(self) -> None:
        if self._installed or "psycopg.waiting" not in sys.modules:
            return
        psycopg: Any = sys.modules["psycopg"]
        waiting: Any = sys.modules["psycopg.waiting"]
        connection_class = psycopg.AsyncConnection
        original = connection_class.connect.__func__

        @functools.wraps(original)
        async def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
            conn = await original(cls, *args, **kwargs)
            loop = asyncio.get_running_loop()
            if isinstance(loop, ControlledLoop):
                watch(loop, conn)
            return conn

        connection_class.connect = classmethod(connect)
        waiting.monotonic = _clock
        self._installed = True


def _clock() -> float:
    loop = asyncio._get_running_loop()
    return loop.time() if isinstance(loop, ControlledLoop) else time.monotonic()


def _answered(pending: bytes) -> bool:
    """libpq sends one request at a time outside pipeline mode: its answer ends with a
    ReadyForQuery, or the server waits for the client's COPY data."""
    types, whole = frames(pending)
    return whole and bool(types) and (b"Z" in types or types[-1] in WAITS_ON_CLIENT)


def watch(loop: ControlledLoop, conn: Any) -> None:
    """Have ``loop`` watch the socket of psycopg connection ``conn``."""
    from psycopg import pq

    info = conn.info
    if getattr(info, "encrypted", False) or conn.pgconn.ssl_in_use:
        loop.note_uncontrolled("psycopg connections over TLS (their bytes cannot be read)")
        return
    package = os.path.dirname(sys.modules["psycopg"].__file__ or "")  # psycopg's own frames
    name = loop.name_for("postgres", library=package)
    host = info.host or "localhost"
    server = Server(host, int(info.port), info.user, info.password or None, info.dbname)
    pgconn = conn.pgconn
    peer = PgPeer(
        name,
        info.backend_pid,
        server,
        owed=lambda: not conn.closed and pgconn.transaction_status == pq.TransactionStatus.ACTIVE,
        answered=_answered,
        reading=lambda types: None,
        whole_reads=False,
        closed=lambda: conn.closed,
    )
    loop.watch(pgconn.socket, peer)
