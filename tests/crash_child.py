"""Child process for the crash test: runs a task mid-progress, says so, and waits to be killed.

Usage: python -m tests.crash_child sqlite PATH | postgres DSN SCHEMA
Prints "RUNNING_ID PENDING_ID" once the running task's progress is committed.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from reftask.manager import RunContext, TaskManager
from reftask.stores.base import SqlTaskStore
from reftask.stores.postgres import PostgresStore
from reftask.stores.sqlite import SqliteStore


async def main(argv: list[str]) -> None:
    store: SqlTaskStore
    if argv[0] == "sqlite":
        store = await SqliteStore.open(argv[1])
    else:
        store = await PostgresStore.open(argv[1], schema=argv[2])
    manager = TaskManager(store)
    pending = f"crash-pending-{uuid.uuid4().hex[:8]}"
    await store.create_task(pending)  # created, then the process died before its run started
    progressed = asyncio.Event()

    async def runner(ctx: RunContext) -> None:
        await ctx.reporter.progress(step=1)
        progressed.set()
        await asyncio.Event().wait()

    running = await manager.submit(runner, task_id=f"crash-running-{uuid.uuid4().hex[:8]}")
    await progressed.wait()
    print(running, pending, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
