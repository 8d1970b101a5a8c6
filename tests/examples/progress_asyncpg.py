"""A job runner written outside racetape: progress written fire-and-forget through an asyncpg
pool, so a cancelled job's progress can commit after its ``final``.

``Runner.run`` writes ``started``, then hands its progress write to a task it does not await
(the write is "not worth waiting for"), then works. Cancelled, it writes ``final``. The detached
write and the final one go out on two pool connections; nothing orders them, so the tape can
end in ``progress``. ``Runner(fixed=True)`` awaits its detached writes before ``final``.

Not collected by the suite (see README.md here); ``tests/test_drivers_pg.py`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid

import asyncpg

DSN = os.environ.get("RACETAPE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


class Runner:
    def __init__(self, pool: asyncpg.Pool, table: str, *, fixed: bool) -> None:
        self.pool, self.table, self.fixed = pool, table, fixed
        self.detached: set[asyncio.Task[None]] = set()

    async def append(self, job: str, kind: str) -> None:
        await self.pool.execute(f"INSERT INTO {self.table} (job, kind) VALUES ($1, $2)", job, kind)

    def append_later(self, job: str, kind: str) -> None:
        task = asyncio.get_running_loop().create_task(self.append(job, kind))
        self.detached.add(task)
        task.add_done_callback(self.detached.discard)

    async def run(self, job: str, started: asyncio.Event) -> None:
        await self.append(job, "started")
        started.set()
        try:
            self.append_later(job, "progress")
            await asyncio.sleep(30)  # the job's real work
            await self.append(job, "final")
        except asyncio.CancelledError:
            if self.fixed:
                await asyncio.gather(*self.detached, return_exceptions=True)
            await self.append(job, "final")
            raise

    async def tape(self, job: str) -> list[str]:
        rows = await self.pool.fetch(
            f"SELECT kind FROM {self.table} WHERE job = $1 ORDER BY id", job
        )
        return [row["kind"] for row in rows]


async def check_final_is_last(*, fixed: bool) -> None:
    """The user's test: start a job, cancel it once it started, the tape ends in ``final``."""
    table = f"tape_{uuid.uuid4().hex[:12]}"
    async with asyncpg.create_pool(DSN, min_size=2, max_size=2) as pool:
        await pool.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, job text, kind text)")
        try:
            runner = Runner(pool, table, fixed=fixed)
            started = asyncio.Event()
            job = asyncio.get_running_loop().create_task(runner.run("job-1", started))
            await started.wait()
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
            await asyncio.gather(*runner.detached, return_exceptions=True)
            tape = await runner.tape("job-1")
            assert tape[-1] == "final", tape
        finally:
            await pool.execute(f"DROP TABLE {table}")
