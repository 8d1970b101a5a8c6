"""A task runner written outside racetape: progress writes through aiosqlite, fire-and-forget.

The runner records each task's events in SQLite. Progress is reported without waiting for the
write (a task the runner creates and keeps a reference to, but does not await, each write on a
connection of its own, so a slow disk never holds up the work). The last event of a task is
meant to be ``final``; but a progress write still on its way when the runner writes ``final``
can commit after it. ``Runner(fixed=True)`` is the fix: before writing ``final``, the runner
waits for the progress writes it started.

Not collected by the suite (see README.md here); ``tests/test_aiosqlite_example.py`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import tempfile
from pathlib import Path

import aiosqlite


class Runner:
    def __init__(self, path: Path, *, fixed: bool) -> None:
        self.path = path
        self.fixed = fixed
        self._background: set[asyncio.Task[None]] = set()
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS events"
                " (id INTEGER PRIMARY KEY, task TEXT, kind TEXT, detail TEXT)"
            )

    async def _write(self, task: str, kind: str, detail: str = "") -> None:
        # Autocommit: one statement, one transaction, no lock held between requests.
        async with aiosqlite.connect(self.path, isolation_level=None) as db:
            await db.execute(
                "INSERT INTO events (task, kind, detail) VALUES (?, ?, ?)", (task, kind, detail)
            )

    def report_progress(self, task: str, done: int, total: int) -> None:
        """Record progress without waiting for the write."""
        write = asyncio.create_task(self._write(task, "progress", f"{done}/{total}"))
        self._background.add(write)  # keep it alive until it is done
        write.add_done_callback(self._background.discard)

    async def run(self, task: str, steps: int) -> None:
        await self._write(task, "started")
        for step in range(steps):
            await asyncio.sleep(0.001)  # the task's real work
            self.report_progress(task, step + 1, steps)
        await asyncio.sleep(0)  # let the progress write get going: it started first
        if self.fixed:
            await asyncio.gather(*self._background)
        await self._write(task, "final")

    def tape(self, task: str) -> list[str]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            rows = db.execute("SELECT kind FROM events WHERE task = ? ORDER BY id", (task,))
            return [kind for (kind,) in rows]


async def run_one_task(*, fixed: bool) -> list[str]:
    """Run a task of two steps, let background writes land, and read its tape."""
    folder = tempfile.mkdtemp()
    try:
        runner = Runner(Path(folder) / "runner.db", fixed=fixed)
        await runner.run("t1", steps=2)
        await asyncio.sleep(0.1)  # background writes are quick
        return runner.tape("t1")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def check_final_is_last(*, fixed: bool) -> None:
    tape = await run_one_task(fixed=fixed)
    assert tape[-1] == "final", f"an event landed after final: {tape}"


async def test_final_is_last() -> None:
    await check_final_is_last(fixed=False)


async def test_final_is_last_fixed() -> None:
    await check_final_is_last(fixed=True)
