"""A task manager written outside racetape: the seed's bug 1, with the standard sqlite3 module.

The runner writes its progress through ``asyncio.to_thread``, as the pull request racetape
models did. Cancelling the runner while its write is in a worker thread does not stop the
write, which can land after ``final``. ``TaskManager(guarded=True)`` is the fix: the append
drops a non-final event once the task has its ``final``.

Not collected by the suite (see README.md here); ``tests/test_loop.py`` and
``tests/test_pytest_plugin.py`` run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import tempfile
from pathlib import Path


class TaskManager:
    def __init__(self, path: Path, *, guarded: bool) -> None:
        self.path = path
        self.guarded = guarded
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS events (task TEXT, seq INTEGER, kind TEXT)")

    def append(self, task: str, kind: str) -> None:
        # One write transaction from the first read (BEGIN IMMEDIATE takes SQLite's write lock),
        # so the guard's check and the insert are one step even against a writer in parallel.
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if self.guarded and kind != "final":
                    done = db.execute(
                        "SELECT 1 FROM events WHERE task = ? AND kind = 'final'", (task,)
                    ).fetchone()
                    if done:
                        return
                (seq,) = db.execute(
                    "SELECT COUNT(*) FROM events WHERE task = ?", (task,)
                ).fetchone()
                db.execute("INSERT INTO events VALUES (?, ?, ?)", (task, seq + 1, kind))
            finally:
                db.execute("COMMIT")

    def tape(self, task: str) -> list[str]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            rows = db.execute("SELECT kind FROM events WHERE task = ? ORDER BY seq", (task,))
            return [kind for (kind,) in rows]

    async def run(self, task: str, started: asyncio.Event) -> None:
        self.append(task, "started")
        started.set()
        try:
            await asyncio.to_thread(self.append, task, "progress")
            await asyncio.sleep(30)  # the task's real work
            self.append(task, "final")
        except asyncio.CancelledError:
            self.append(task, "final")
            raise


async def cancel_after_start(*, guarded: bool) -> list[str]:
    """Submit, wait until the runner has started, cancel; the tape, as the test reads it."""
    folder = tempfile.mkdtemp()
    try:
        manager = TaskManager(Path(folder) / "tasks.db", guarded=guarded)
        started = asyncio.Event()
        runner = asyncio.create_task(manager.run("t1", started))
        await started.wait()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        return manager.tape("t1")
    finally:
        # A detached write may still be on its way into this folder: never fail on it.
        shutil.rmtree(folder, ignore_errors=True)


async def check_final_is_last(*, guarded: bool) -> None:
    tape = await cancel_after_start(guarded=guarded)
    assert tape[-1] == "final", f"an event landed after final: {tape}"


async def test_cancel_leaves_final_last() -> None:
    await check_final_is_last(guarded=False)


async def test_cancel_leaves_final_last_guarded() -> None:
    await check_final_is_last(guarded=True)
