"""aiosqlite under the controlled loop: each request on a connection's thread is a decision.

aiosqlite runs every request of a connection on the connection's own thread, which takes
``(future, function)`` pairs from the connection's ``_tx`` queue (a ``queue.SimpleQueue``
made in ``Connection.__init__``) and hands each result back with ``call_soon_threadsafe``.
Installed, a connection made while a ``ControlledLoop`` runs gets the loop's served queue
(:meth:`racetape._engine.loop.ControlledLoop.served_queue`) as its ``_tx``: each request
(``execute``, a cursor's ``fetch*``, ``commit``, ``close``...) runs on the connection's thread
when the strategy says, while nothing else runs, and its result's hand-back is a decision.
Anywhere else a connection gets a real ``SimpleQueue``, as without racetape.
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import sys
import threading
from typing import Any

from racetape._engine.loop import ControlledLoop, ServedQueue

NAME = "aiosqlite"


def _tx_queue() -> Any:
    """What ``aiosqlite.core`` calls ``SimpleQueue`` once installed."""
    loop = asyncio._get_running_loop()
    if isinstance(loop, ControlledLoop):
        core = sys.modules["aiosqlite.core"]
        return loop.served_queue(NAME, skip=(os.path.dirname(core.__file__ or ""),))
    return queue.SimpleQueue()


class AiosqliteDriver:
    name = NAME

    def install(self) -> None:
        core: Any = sys.modules.get("aiosqlite.core")
        if core is None or getattr(core, "_racetape_installed", False):
            return
        connection = core.Connection
        init = connection.__init__

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            tx = getattr(self, "_tx", None)
            if isinstance(tx, ServedQueue):
                # 0.22 runs its requests on self._thread; up to 0.21 the connection is the
                # thread. Either way, named before it starts: never a thread "started by hand".
                thread = getattr(self, "_thread", self)
                if isinstance(thread, threading.Thread):
                    tx.serve(thread)
                    # A run's report may keep a failed run's frames, and with them a connection
                    # its code never closed: its idle thread must not hold up the interpreter's
                    # exit (it ends, as without racetape, once the connection is collected).
                    thread.daemon = True

        connection.__init__ = __init__
        core.SimpleQueue = _tx_queue
        core._racetape_installed = True


DRIVER = AiosqliteDriver()
