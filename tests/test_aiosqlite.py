"""aiosqlite and sqlite3 under the controlled loop, on real SQLite files, with no change to the
code: each request on a connection's thread is a decision (a served thread, see
``racetape.drivers.aiosqlite``), and a body waiting on another actor's transaction is seen as
blocked (``racetape.drivers.sqlite``), never timed out."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from racetape import check, replay
from racetape._engine.checking import run_once
from racetape._engine.deviations import Deviations
from racetape._engine.strategies import RandomStrategy

THIS = Path(__file__).name


def fresh_db() -> Path:
    path = Path(tempfile.mkdtemp()) / "t.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x INTEGER)")
    sqlite3.connect(path).close()
    return path


async def per_operation(path: Path) -> dict[str, Any]:
    """Every call of the API, each on a connection of its own (``async with connect``)."""
    seen: dict[str, Any] = {}
    async with aiosqlite.connect(path) as db:
        await db.execute("INSERT INTO t VALUES (1)")
        await db.commit()
    async with aiosqlite.connect(path) as db:
        await db.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])
        await db.commit()
    async with aiosqlite.connect(path) as db:
        await db.execute("INSERT INTO t VALUES (9)")
        await db.rollback()  # gone again
    async with aiosqlite.connect(path) as db:
        await db.executescript("BEGIN; INSERT INTO t VALUES (4); COMMIT;")
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("BEGIN IMMEDIATE")  # a transaction over several requests
        await db.execute("INSERT INTO t VALUES (5)")
        seen["in_transaction"] = db.in_transaction
        await db.execute("COMMIT")
    async with aiosqlite.connect(path) as db:
        seen["insert"] = await db.execute_insert("INSERT INTO t VALUES (6)")
        await db.commit()
    async with aiosqlite.connect(path) as db, db.cursor() as cursor:
        await cursor.execute("SELECT x FROM t ORDER BY x")
        seen["fetchone"] = await cursor.fetchone()
        seen["fetchmany"] = await cursor.fetchmany(2)
        seen["fetchall"] = await cursor.fetchall()
    async with aiosqlite.connect(path) as db:
        async with db.execute("SELECT x FROM t ORDER BY x") as cursor:
            seen["iterated"] = [row async for row in cursor]
        seen["fetched"] = await db.execute_fetchall("SELECT count(*) FROM t")
    return seen


async def shared(path: Path) -> dict[str, Any]:
    """The same calls on one connection, shared by two tasks."""
    seen: dict[str, Any] = {}
    async with aiosqlite.connect(path, isolation_level=None) as db:

        async def one() -> None:
            await db.execute("INSERT INTO t VALUES (1)")
            cursor = await db.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])
            await cursor.close()

        async def two() -> None:
            await db.executescript("INSERT INTO t VALUES (4); INSERT INTO t VALUES (5);")

        await asyncio.gather(one(), two())
        await db.execute("BEGIN")
        await db.execute("INSERT INTO t VALUES (6)")
        await db.rollback()
        await db.execute("BEGIN")
        await db.execute("INSERT INTO t VALUES (6)")
        await db.commit()
        async with db.cursor() as cursor:
            await cursor.execute("SELECT x FROM t ORDER BY x")
            seen["fetchone"] = await cursor.fetchone()
            seen["fetchmany"] = await cursor.fetchmany(2)
            seen["fetchall"] = await cursor.fetchall()
        cursor = await db.execute("SELECT x FROM t ORDER BY x")
        seen["iterated"] = [row async for row in cursor]
        seen["fetched"] = await db.execute_fetchall("SELECT count(*) FROM t")
    return seen


EXPECTED = {
    "fetchone": (1,),
    "fetchmany": [(2,), (3,)],
    "fetchall": [(4,), (5,), (6,)],
    "iterated": [(1,), (2,), (3,), (4,), (5,), (6,)],
}


@pytest.mark.parametrize("program", [per_operation, shared], ids=["per-operation", "shared"])
def test_every_call_is_a_request_the_schedule_decides_and_gives_the_real_result(
    program: Callable[[Path], Awaitable[dict[str, Any]]],
) -> None:
    results: list[dict[str, Any]] = []

    async def ticker() -> None:  # another actor, so that each request's timing is a choice
        for _ in range(10):
            await asyncio.sleep(0)

    async def main() -> None:
        seen, _ = await asyncio.gather(program(fresh_db()), ticker())
        results.append(seen)

    checked = check(main, runs=30, strategy="random")
    assert not checked.failures, checked.failures[0].failures
    assert checked.clean, checked.partly_uncontrolled  # no thread "started by hand"
    for seen in results:
        assert {key: seen[key] for key in EXPECTED} == EXPECTED
        assert list(seen["fetched"]) == [(6,)]
    if program is per_operation:
        assert results[0]["in_transaction"] is True
        assert results[0]["insert"] == (6,)
    # Each request is a body and its result one hand-back, both named by the user's line.
    decisions = checked.runs[0].schedule.decisions
    bodies = [d for d in decisions if ">aiosqlite@" in d.actor and d.detail == "body"]
    hand_backs = [d for d in decisions if ">aiosqlite@" in d.actor and d.detail == "hand-back"]
    assert bodies, decisions
    assert hand_backs, decisions
    assert all(f"{THIS}:" in d.actor for d in bodies + hand_backs), decisions
    assert all("core.py" not in d.actor for d in decisions)


def test_a_request_is_one_body_and_one_hand_back_and_its_order_replays() -> None:
    async def ticker() -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def request() -> None:
        async with aiosqlite.connect(fresh_db()) as db:
            await db.execute("INSERT INTO t VALUES (1)")

    async def main() -> None:
        await asyncio.gather(request(), ticker())

    checked = check(main, runs=30, strategy="random")
    assert not checked.failures, checked.failures[0].failures
    kinds: set[tuple[str, str]] = set()
    for report in checked.runs:
        decided = collections.Counter(
            (d.actor, d.detail) for d in report.schedule.decisions if ">aiosqlite@" in d.actor
        )
        assert all(n == 1 for n in decided.values()), decided  # no second hand-back
        kinds |= {(actor.rsplit("@", 1)[1], detail) for actor, detail in decided}
        again = replay(main, report.decisions)
        assert not again.failed, again.failures
        assert again.decisions == report.decisions
    # connect, close and aiosqlite's stop (one line: the async with), and the execute.
    names = sorted({name for name, _ in kinds})
    connect, execute = sorted({name.split("#")[0] for name in names})
    assert connect.split(":")[0].endswith(THIS), names
    assert names == [f"{connect}#1", f"{connect}#2", f"{connect}#3", f"{execute}#1"], names
    assert {detail for _, detail in kinds} == {"body", "hand-back"}, kinds


def test_cancelling_the_awaiter_does_not_drop_a_queued_request() -> None:
    """aiosqlite's thread runs every function put on its queue; an executor's queued job, by
    contrast, is dropped by the cancel (test_loop.py): here the insert lands on every schedule."""
    counts: set[int] = set()

    async def main() -> None:
        async with aiosqlite.connect(fresh_db(), isolation_level=None) as db:
            insert = asyncio.create_task(db.execute("INSERT INTO t VALUES (1)"))
            await asyncio.sleep(0)  # the request is queued
            insert.cancel()
            ((count,),) = await db.execute_fetchall("SELECT count(*) FROM t")
            counts.add(count)

    checked = check(main, runs=200, strategy="exhaustive")
    assert not checked.failures, checked.failures[0].failures
    assert counts == {1}


def test_a_request_put_from_another_thread_passes_through_and_is_named_uncontrolled() -> None:
    async def main() -> None:
        db = await aiosqlite.connect(fresh_db())
        # As aiosqlite's __del__ does for a connection nobody closed: stop() off the loop.
        stopper = threading.Thread(target=db.stop)
        stopper.start()
        stopper.join()
        await asyncio.to_thread(db._thread.join, 5)
        assert not db._thread.is_alive(), "the stop reached the connection's thread"

    run = run_once(main, Deviations())
    assert run.error is None, run.error
    assert "requests put on a served thread from another thread (aiosqlite)" in (
        run.execution.uncontrolled
    )


def test_a_connection_outside_a_controlled_loop_is_aiosqlite_s_own() -> None:
    async def main() -> list[Any]:
        async with aiosqlite.connect(fresh_db()) as db:
            assert type(db._tx).__name__ == "SimpleQueue"
            return list(await db.execute_fetchall("SELECT 1"))

    assert asyncio.run(main()) == [(1,)]
    with contextlib.closing(sqlite3.connect(":memory:")) as plain:
        assert type(plain) is sqlite3.Connection  # no tracking either


async def two_writers(path: Path, order: list[int]) -> None:
    """Two actors, each with a write transaction over two requests (the INSERT takes SQLite's
    write lock, the commit lets go), a busy timeout far past any settle timeout."""

    async def writer(value: int) -> None:
        async with aiosqlite.connect(path, timeout=60) as db:
            await db.execute("INSERT INTO t VALUES (?)", (value,))
            await asyncio.sleep(0)
            await db.commit()

    await asyncio.gather(writer(1), writer(2))
    async with aiosqlite.connect(path) as db:
        order.extend(x for (x,) in await db.execute_fetchall("SELECT x FROM t ORDER BY rowid"))


def test_two_writers_contending_on_one_file_wait_as_blocked_and_both_orders_are_reached() -> None:
    orders: collections.Counter[tuple[int, ...]] = collections.Counter()
    waits = 0
    started = time.monotonic()
    for seed in range(40):
        order: list[int] = []

        async def main(order: list[int] = order) -> None:
            await two_writers(fresh_db(), order)

        run = run_once(main, RandomStrategy(seed), settle_timeout=5)
        assert run.error is None, f"seed {seed}: {run.error!r}"
        orders[tuple(order)] += 1
        waits += run.execution.lock_waits
        # The same decisions give the same interleaving, lock waits and all.
        first = list(order)
        order.clear()
        again = replay(main, run.execution.choices, settle_timeout=5)
        assert not again.failed, again.failures
        assert again.decisions == run.execution.choices
        assert order == first
    assert set(orders) == {(1, 2), (2, 1)}, orders
    assert waits, "no schedule made a writer wait on the other's lock"
    # No busy timeout (60 s) and no settle timeout (5 s) was waited out.
    assert time.monotonic() - started < 30


def test_a_sqlite3_write_in_a_worker_thread_waits_on_an_aiosqlite_transaction_as_blocked() -> None:
    """The lock probe sees sqlite3 itself: ``to_thread`` on a connection of the worker's own."""
    tapes: set[tuple[str, ...]] = set()
    waits = 0

    def append(path: Path, kind: str) -> None:
        with sqlite3.connect(path, timeout=60, isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?)", (len(kind),))
            db.execute("COMMIT")
        db.close()

    for seed in range(30):

        async def main() -> None:
            path = fresh_db()
            async with aiosqlite.connect(path, timeout=60) as db:
                await db.execute("INSERT INTO t VALUES (0)")
                other = asyncio.create_task(asyncio.to_thread(append, path, "abc"))
                await asyncio.sleep(0)
                await db.commit()
                await other
                rows = await db.execute_fetchall("SELECT x FROM t ORDER BY rowid")
                tapes.add(tuple(str(x) for (x,) in rows))

        run = run_once(main, RandomStrategy(seed), settle_timeout=5)
        assert run.error is None, f"seed {seed}: {run.error!r}"
        waits += run.execution.lock_waits
    assert tapes == {("0", "3")}
    assert waits, "no schedule made the worker thread wait on the aiosqlite transaction"


def test_a_writer_whose_lock_holder_waits_on_it_runs_on_to_its_own_busy_timeout() -> None:
    """Nothing else can happen: as on a real machine, the waiter's busy timeout ends it."""
    errors: list[str] = []

    async def main() -> None:
        path = fresh_db()
        async with (
            aiosqlite.connect(path) as holder,
            aiosqlite.connect(path, timeout=0.2) as waiter,
        ):
            await holder.execute("INSERT INTO t VALUES (1)")  # holds the write lock
            try:
                await waiter.execute("INSERT INTO t VALUES (2)")
            except sqlite3.OperationalError as exc:
                errors.append(str(exc))
            await holder.commit()

    checked = check(main, runs=10, strategy="random")
    assert not checked.failures, checked.failures[0].failures
    assert errors == ["database is locked"] * 10


def test_time_does_not_skip_past_a_waiting_writer_s_busy_timeout() -> None:
    """The holder sleeps 30 s inside its transaction: on a real machine the waiter's busy
    timeout (0.2 s) ends its wait long before; virtual time may not jump past it."""
    errors: list[str] = []

    async def main() -> None:
        path = fresh_db()
        locked = asyncio.Event()

        async def holder() -> None:
            async with aiosqlite.connect(path) as db:
                await db.execute("INSERT INTO t VALUES (1)")
                locked.set()
                await asyncio.sleep(30)
                await db.commit()

        async def waiter() -> None:
            await locked.wait()
            async with aiosqlite.connect(path, timeout=0.2) as db:
                try:
                    await db.execute("INSERT INTO t VALUES (2)")
                except sqlite3.OperationalError as exc:
                    errors.append(str(exc))

        await asyncio.gather(holder(), waiter())

    checked = check(main, runs=5, strategy="random")
    assert not checked.failures, checked.failures[0].failures
    assert errors == ["database is locked"] * 5


def test_a_connection_left_open_by_a_failed_run_does_not_hold_up_the_interpreter() -> None:
    """A deadlocked run whose report keeps the frames of a connection never closed."""

    async def main() -> None:
        db = await aiosqlite.connect(fresh_db())
        await db.execute("INSERT INTO t VALUES (1)")
        await asyncio.Event().wait()

    run = run_once(main, Deviations())
    assert run.error is not None
    served = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    assert served, "the connection's thread is still there, idle"
    assert all(t.daemon for t in served)
    # Collected here, not in a later test's run (aiosqlite's __del__ stops the thread).
    del run
    gc.collect()
    for thread in served:
        thread.join(5)
    assert not any(t.is_alive() for t in served)


def test_a_parked_writer_whose_busy_timeout_runs_out_meanwhile_is_said_to_be_uncontrolled() -> None:
    """While the holder's next body takes real time, the parked waiter's own busy timeout
    (50 ms) runs out in C: when it finished was the machine's, and the run says so."""
    errors: list[str] = []

    async def main() -> None:
        path = fresh_db()
        locked = asyncio.Event()

        async def holder() -> None:
            async with aiosqlite.connect(path) as db:
                await db.execute("INSERT INTO t VALUES (1)")
                locked.set()
                await asyncio.sleep(0.01)
                await asyncio.to_thread(time.sleep, 0.3)  # slow work inside the transaction
                await db.commit()

        async def waiter() -> None:
            await locked.wait()
            async with aiosqlite.connect(path, timeout=0.05) as db:
                try:
                    await db.execute("INSERT INTO t VALUES (2)")
                except sqlite3.OperationalError as exc:
                    errors.append(str(exc))

        await asyncio.gather(holder(), waiter())

    run = run_once(main, Deviations())
    assert run.error is None, run.error
    assert errors == ["database is locked"]
    assert run.execution.lock_waits == 1
    assert "a body parked on a database lock that went on by itself" in run.execution.uncontrolled
