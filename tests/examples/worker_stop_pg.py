"""A worker written outside racetape, with a lost stop, registering itself in Postgres.

``Worker.run`` registers itself with one query (asyncpg or psycopg), says it is running, then
creates its loop task and awaits it. The loop task's first statement clears the stop event, so
a ``stop()`` that lands after ``running`` is seen but before the loop task's first step is
erased, and the worker never ends. That needs the query's answer and the test's 1 ms polling
timer to land in the same loop turn: only real I/O timing decides it in a plain run.
``Worker(fixed=True)`` clears the event before it says it is running.

Not collected by the suite (see README.md here); ``tests/test_drivers_pg.py`` runs it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import psycopg

DSN = os.environ.get("RACETAPE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

Register = Callable[[str], Awaitable[Any]]


class Worker:
    def __init__(self, register: Register, *, fixed: bool) -> None:
        self.register, self.fixed = register, fixed
        self.running = False
        self.ticks = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        await self.register("worker-1")
        if self.fixed:
            self._stop.clear()
        self.running = True
        loop = asyncio.create_task(self._loop())
        await loop

    async def _loop(self) -> None:
        if not self.fixed:
            self._stop.clear()  # the bug: a stop that landed already is erased
        while not self._stop.is_set():
            self.ticks += 1
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()


@asynccontextmanager
async def asyncpg_register() -> Any:
    con = await asyncpg.connect(DSN)
    try:
        yield lambda name: con.fetchval("SELECT $1::text", name)
    finally:
        await con.close()


@asynccontextmanager
async def psycopg_register() -> Any:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:

        async def register(name: str) -> Any:
            cursor = await conn.execute("SELECT %s::text", (name,))
            return await cursor.fetchone()

        yield register


DRIVERS: dict[str, Callable[[], AbstractAsyncContextManager[Register]]] = {
    "asyncpg": asyncpg_register,
    "psycopg": psycopg_register,
}


async def start_then_stop(driver: str, *, fixed: bool) -> None:
    async with DRIVERS[driver]() as register:
        worker = Worker(register, fixed=fixed)
        task = asyncio.create_task(worker.run())
        while not worker.running:  # noqa: ASYNC110 - the polling the test under study does
            await asyncio.sleep(0.001)
        worker.stop()
        await asyncio.wait_for(task, timeout=5)
