"""asyncpg under the controlled loop: every request's answer is read when a decision says.

A connection made while a ``ControlledLoop`` runs (``asyncpg.connect``, a ``Pool``'s) has its
socket watched by the loop. What the connection writes (asyncpg writes whole messages through
its transport) tells what the server owes; the loop waits for the whole answer before its next
step, so the server runs each request at the step that sent it; reading the answer is then a
decision like a worker thread's hand-back. A backend that waits on a lock another connection
holds is seen from the server (``pg_blocking_pids``) and the run moves on.

A cancel (the task awaiting a query is cancelled, or its timeout fires: asyncpg then sends a
CancelRequest over a new connection of its own) is a decision too: when it reaches the server
is decided like a send, against the other connections' requests, so both of its outcomes are
reachable and replay: it lands while the query still waits (the query fails, its work undone)
or after the query's work was done (the caller still sees its timeout or cancellation). A
query that does not wait in the server is done by the step after its send, so a cancel can only
find it done, or not yet sent; what a real cancel may interrupt is a query that waits.

Not controlled, and said so in the run's coverage: TLS connections (the bytes are encrypted),
and cancels of them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import weakref
from typing import Any

from racetape._engine.drivers import controlled_running
from racetape._engine.loop import ControlledLoop
from racetape.drivers.pgwire import Owed, PgPeer, Server, send_cancel


class AsyncpgDriver:
    name = "asyncpg"

    def __init__(self) -> None:
        self._installed = False

    def install(self) -> None:
        if self._installed or "asyncpg.connect_utils" not in sys.modules:
            return
        connect_utils: Any = sys.modules["asyncpg.connect_utils"]
        original = connect_utils._connect_addr

        @functools.wraps(original)
        async def _connect_addr(*args: Any, **kwargs: Any) -> Any:
            con = await original(*args, **kwargs)
            loop = asyncio.get_running_loop()
            if isinstance(loop, ControlledLoop):
                watch(loop, con)
            return con

        connect_utils._connect_addr = _connect_addr
        connect_utils._cancel = _controlled_cancel(connect_utils)
        self._installed = True


_WATCHED: weakref.WeakKeyDictionary[ControlledLoop, dict[tuple[str, int], str]] = (
    weakref.WeakKeyDictionary()
)
"""Per loop, each open connection it watches, by server address and backend pid, and its name:
a cancel of one of them is decided; the name names the cancel and the peer it interrupts."""


def _controlled_cancel(connect_utils: Any) -> Any:
    """asyncpg's ``connect_utils._cancel``, whose CancelRequest reaches the server when a
    decision says (see the module's docstring); as it was off a controlled loop, and over TLS."""
    original = connect_utils._cancel

    @functools.wraps(original)
    async def _cancel(
        *, loop: Any, addr: Any, params: Any, backend_pid: int, backend_secret: Any
    ) -> None:
        watched = _WATCHED.get(loop, {}) if isinstance(loop, ControlledLoop) else {}
        name = watched.get((str(addr), backend_pid))
        if name is None or not controlled_running():
            if isinstance(loop, ControlledLoop):
                loop.note_uncontrolled("asyncpg cancels of connections it does not watch")
            await original(
                loop=loop,
                addr=addr,
                params=params,
                backend_pid=backend_pid,
                backend_secret=backend_secret,
            )
            return
        landed: asyncio.Future[None] = loop.create_future()

        def land() -> None:
            try:
                send_cancel(addr, backend_pid, backend_secret)
            except Exception as exc:  # what asyncpg's own cancel raises, asyncpg handles
                if not landed.done():
                    landed.set_exception(exc)
                return
            if not landed.done():
                landed.set_result(None)
            loop.interrupted(name)

        loop.defer(f"{name} cancel", land)
        await landed

    return _cancel


def watch(loop: ControlledLoop, con: Any) -> None:
    """Have ``loop`` watch the socket of asyncpg connection ``con``."""
    transport = con._transport
    if transport.get_extra_info("sslcontext") is not None:
        loop.note_uncontrolled("asyncpg connections over TLS (their bytes cannot be read)")
        return
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    owed = Owed()
    # Named by the first frame outside asyncpg's own package (a pool's connect is asyncpg's).
    package = os.path.dirname(sys.modules["asyncpg"].__file__ or "")
    name = loop.name_for("postgres", library=package)
    sends = f"{name} send"
    write, close, abort = transport.write, transport.close, transport.abort

    def send(data: bytes) -> None:
        if not owed.sent(data):
            loop.note_uncontrolled("asyncpg writes that are not whole messages")
        write(data)

    def deferred_write(data: Any) -> None:
        # A copy: asyncpg may reuse its buffer once write returns, as a transport copies too.
        loop.defer(sends, functools.partial(send, bytes(data)))

    def deferred_writelines(lines: Any) -> None:
        deferred_write(b"".join(bytes(line) for line in lines))

    def flushed_close() -> None:
        loop.flush_deferred(sends)
        _WATCHED.get(loop, {}).pop(key, None)  # its pid may be another connection's next
        close()

    def flushed_abort() -> None:
        # What asyncpg handed the transport before terminate() was sent already on a real
        # machine, as far as the kernel is concerned: it reaches the server, then the reset.
        loop.flush_deferred(sends)
        _WATCHED.get(loop, {}).pop(key, None)
        abort()

    transport.write, transport.writelines = deferred_write, deferred_writelines
    transport.close, transport.abort = flushed_close, flushed_abort
    params, addr = con._params, con._addr
    if isinstance(addr, str):  # a Unix socket: <dir>/.s.PGSQL.<port>
        host, port = os.path.dirname(addr), int(addr.rsplit(".", 1)[-1])
    else:
        host, port = addr
    password = params.password if isinstance(params.password, str) else None
    server = Server(str(host), int(port), params.user, password, params.database)
    peer = PgPeer(
        name,
        con.get_server_pid(),
        server,
        owed=lambda: owed.pending,
        answered=owed.answered_by,
        reading=owed.read,
        whole_reads=True,
        closed=lambda: sock.fileno() < 0,
    )
    loop.watch(sock.fileno(), peer)
    key = (str(con._addr), peer.ident)
    _WATCHED.setdefault(loop, {})[key] = name
