"""asyncpg under the controlled loop, on a real Postgres: each request's send and each answer's
read are decisions, the server runs a request at the step that sent it, and a backend waiting
on another connection's lock is seen from the server, never timed out."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from racetape import Deadlock, Hung, check, replay

sys.path.insert(0, str(Path(__file__).parent / "examples"))
import progress_asyncpg
import worker_stop_pg

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def dsn(postgres_server: object, monkeypatch: pytest.MonkeyPatch) -> str:
    found: str = postgres_server.dsn  # type: ignore[attr-defined]
    monkeypatch.setattr(progress_asyncpg, "DSN", found)
    monkeypatch.setattr(worker_stop_pg, "DSN", found)
    return found


async def detached_write() -> None:
    await progress_asyncpg.check_final_is_last(fixed=False)


async def detached_write_fixed() -> None:
    await progress_asyncpg.check_final_is_last(fixed=True)


def test_a_detached_asyncpg_write_after_final_is_found_for_every_base_seed_and_replays() -> None:
    # The default search: it holds the progress write's request back while the final write's
    # waits too (one deviation), where one swap lets only one message pass.
    for seed in range(20):
        checked = check(detached_write, runs=5, seed=seed, stop_at_first_failure=True)
        assert checked.failures, f"base seed {seed}: no failure in 5 runs ({checked.covered})"
        first = checked.failures[0]
        assert isinstance(first.error, AssertionError), first.error
        assert "'final', 'progress'" in str(first.error)
    # The last seed's printed schedule replays its failure, decision for decision.
    for _ in range(100):
        again = replay(detached_write, first.token)
        assert isinstance(again.error, AssertionError)
        assert again.schedule.decisions == first.schedule.decisions
    # pct finds it too (it holds a connection back by its priority).
    assert check(detached_write, strategy="pct", runs=30, stop_at_first_failure=True).failures


def test_the_fixed_twin_passes_the_runs_that_find_the_detached_write() -> None:
    checked = check(detached_write_fixed, strategy="pct", runs=100)
    assert not checked.failures, checked.failures[0].error
    searched = check(detached_write_fixed, runs=30)
    assert not searched.failures, searched.failures[0].error


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_a_lost_stop_after_a_postgres_round_trip_is_found_within_five_runs_and_replays(
    driver: str,
) -> None:
    async def lost_stop() -> None:
        await worker_stop_pg.start_then_stop(driver, fixed=False)

    for seed in range(20):
        checked = check(lost_stop, runs=5, seed=seed, stop_at_first_failure=True)
        assert checked.failures, f"base seed {seed}: no failure in 5 runs ({checked.covered})"
        first = checked.failures[0]
        assert isinstance(first.error, TimeoutError), first.error
        assert any(d.detail == "answer" for d in first.schedule.decisions), "reads decided"
    for _ in range(100):
        again = replay(lost_stop, first.token)
        assert isinstance(again.error, TimeoutError)
        assert again.schedule.decisions == first.schedule.decisions


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_the_fixed_worker_stops_in_every_schedule_the_search_reaches(driver: str) -> None:
    async def fixed() -> None:
        await worker_stop_pg.start_then_stop(driver, fixed=True)

    searched = check(fixed, runs=100)
    assert not searched.failures, searched.failures[0].error
    sampled = check(fixed, runs=100, strategy="random")
    assert not sampled.failures, sampled.failures[0].error


@asynccontextmanager
async def a_table(dsn: str, rows: int) -> AsyncIterator[str]:
    table = f"rt_rows_{uuid.uuid4().hex[:10]}"
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
        await con.executemany(f"INSERT INTO {table} VALUES ($1, 0)", [(i,) for i in range(rows)])
        yield table
    finally:
        await con.execute(f"DROP TABLE {table}")
        await con.close()


def test_two_transactions_contending_for_a_row_never_hang_and_both_orders_are_reached(
    dsn: str,
) -> None:
    firsts: list[str] = []

    async def main() -> None:
        async with a_table(dsn, 1) as table:
            order: list[str] = []

            async def bump(name: str) -> None:
                con = await asyncpg.connect(dsn)
                try:
                    async with con.transaction():
                        n = await con.fetchval(f"SELECT n FROM {table} WHERE id = 0 FOR UPDATE")
                        order.append(name)
                        await con.execute(f"UPDATE {table} SET n = $1 WHERE id = 0", n + 1)
                finally:
                    await con.close()

            await asyncio.gather(bump("a"), bump("b"))
            con = await asyncpg.connect(dsn)
            try:
                assert await con.fetchval(f"SELECT n FROM {table} WHERE id = 0") == 2
            finally:
                await con.close()
            firsts.append(order[0])

    checked = check(main, strategy="random", runs=40, seed=3)
    assert not checked.failures, checked.failures[0].error
    assert set(firsts) == {"a", "b"}, "each transaction took the lock first in some run"


def test_a_lock_order_deadlock_between_two_connections_is_reported_naming_both(dsn: str) -> None:
    async def main() -> None:
        async with a_table(dsn, 2) as table:
            # Connected one after the other: a connection's start-up is not decided (the run
            # says so), and two at once would make the decisions after them differ run to run.
            cons = [await asyncpg.connect(dsn), await asyncpg.connect(dsn)]

            async def lock(con: asyncpg.Connection, first: int, second: int) -> None:
                async with con.transaction():
                    await con.execute(f"SELECT 1 FROM {table} WHERE id = {first} FOR UPDATE")
                    await con.execute(f"SELECT 1 FROM {table} WHERE id = {second} FOR UPDATE")

            try:
                await asyncio.gather(lock(cons[0], 0, 1), lock(cons[1], 1, 0))
            finally:
                for con in cons:
                    con.terminate()

    checked = check(main, strategy="random", runs=60, seed=1, stop_at_first_failure=True)
    deadlocks = [f for f in checked.failures if isinstance(f.error, Deadlock)]
    assert deadlocks, [repr(f.error) for f in checked.failures]
    message = str(deadlocks[0].error)
    assert message.count("waits on a lock held by") == 2, message
    for _ in range(5):  # each replay's clean-up waits out the server's own deadlock_timeout
        assert isinstance(replay(main, deadlocks[0].token).error, Deadlock)


def test_the_loop_waits_for_an_answer_without_a_timeout_and_time_does_not_move(dsn: str) -> None:
    # pg_sleep holds the answer back for 0.3 s of real time: the loop waits for it without
    # moving its virtual time, so a 0.1 s asyncio timeout around it does not fire early.
    async def main() -> None:
        con = await asyncpg.connect(dsn)
        try:
            loop = asyncio.get_running_loop()
            before = loop.time()
            async with asyncio.timeout(0.1):
                await con.execute("SELECT pg_sleep(0.3)")
            assert loop.time() - before < 0.1
        finally:
            await con.close()

    checked = check(main, runs=3)
    assert not checked.failures, checked.failures[0].error


@pytest.mark.parametrize("through", ["asyncpg", "psycopg"])
def test_the_lock_monitor_names_the_backend_holding_the_lock(
    dsn: str, through: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import urllib.parse

    import psycopg

    from racetape.drivers.pgwire import Monitor, Server

    if through == "psycopg":  # a psycopg user's machine, without asyncpg
        monkeypatch.setitem(sys.modules, "asyncpg", None)
    url = urllib.parse.urlsplit(dsn)
    server = Server(url.hostname or "", url.port or 5432, url.username, url.password, "postgres")
    table = f"rt_mon_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as holder, psycopg.connect(dsn) as waiter:
        holder.execute(f"CREATE TABLE {table} (id int)")
        try:
            holder.execute("BEGIN")
            holder.execute(f"LOCK TABLE {table}")
            blocked = threading.Thread(target=lambda: waiter.execute(f"SELECT * FROM {table}"))
            blocked.start()
            monitor = Monitor(server)
            for _ in range(200):
                if monitor.blocking_pids(waiter.info.backend_pid):
                    break
                blocked.join(0.01)
            assert monitor.blocking_pids(waiter.info.backend_pid) == [holder.info.backend_pid]
            assert monitor.blocking_pids(holder.info.backend_pid) == []
        finally:
            holder.execute("ROLLBACK")
            blocked.join()
            waiter.rollback()
            holder.execute(f"DROP TABLE {table}")


# -- what a fresh-eyes review found: each was a false alarm or a varying schedule -------------


def test_two_connections_answering_alike_never_deadlock_and_replay_alike(dsn: str) -> None:
    # Answers of the same size, one after the other on each connection: each is a new answer.
    async def main() -> None:
        a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:

            async def ask(con: asyncpg.Connection, i: int) -> None:
                for _ in range(5):
                    await con.fetchval("SELECT pg_sleep(0.003), $1::int", i)

            await asyncio.gather(ask(a, 1), ask(b, 2))
        finally:
            await a.close()
            await b.close()

    runs = [check(main, runs=1, seed=0).runs[0] for _ in range(3)]
    assert [r.error for r in runs] == [None] * 3, runs[0].error
    assert runs[0].schedule.decisions == runs[1].schedule.decisions == runs[2].schedule.decisions


def test_a_lock_held_across_an_uncontrolled_wait_is_no_deadlock(dsn: str) -> None:
    # The holder waits on a socket the loop does not watch: that can still answer, so a
    # connection waiting on the holder's lock is no cycle.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        peer, _ = server.accept()
        peer.recv(10)
        time.sleep(0.1)
        peer.sendall(b"ok\n")
        peer.close()

    async def main() -> None:
        threading.Thread(target=answer, daemon=True).start()
        async with a_table(dsn, 1) as table:
            a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
            try:

                async def holder() -> None:
                    async with a.transaction():
                        await a.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 0")
                        reader, writer = await asyncio.open_connection(*server.getsockname())
                        writer.write(b"hi")
                        await reader.readline()
                        writer.close()

                async def waiter() -> None:
                    await asyncio.sleep(0.01)
                    await b.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 0")

                await asyncio.gather(holder(), waiter())
            finally:
                await a.close()
                await b.close()

    checked = check(main, runs=1, settle_timeout=5)
    server.close()
    assert not checked.failures, checked.failures[0].error
    assert not checked.clean, "a socket it does not watch makes the run partly uncontrolled"


def test_a_lock_held_outside_the_run_ends_it_hung_within_the_settle_timeout(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as setup:
        table = f"rt_out_{uuid.uuid4().hex[:10]}"
        setup.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
        setup.execute(f"INSERT INTO {table} VALUES (0, 0)")
        try:
            with psycopg.connect(dsn) as outside:
                outside.execute(f"UPDATE {table} SET n = 1 WHERE id = 0")  # held, uncommitted

                async def main() -> None:
                    con = await asyncpg.connect(dsn)
                    try:
                        await con.execute(f"UPDATE {table} SET n = 2 WHERE id = 0")
                    finally:
                        con.terminate()

                started = time.monotonic()
                checked = check(main, runs=1, settle_timeout=1)
                assert isinstance(checked.runs[0].error, Hung), checked.runs[0].error
                assert "outside the run" in str(checked.runs[0].error)
                assert time.monotonic() - started < 30
                outside.rollback()
        finally:
            setup.execute(f"DROP TABLE {table}")


def test_an_answer_larger_than_the_socket_holds_is_read_and_said_uncontrolled(dsn: str) -> None:
    async def main() -> None:
        con = await asyncpg.connect(dsn)
        try:
            rows = await con.fetch("SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
            assert len(rows) == 2000
        finally:
            await con.close()

    checked = check(main, runs=1, settle_timeout=5)
    assert not checked.failures, checked.failures[0].error
    assert any("larger than the socket holds" in what for what in checked.partly_uncontrolled)


async def timed_out_update(dsn: str, *, commit_after: float) -> int:
    """A query that waits on a row lock times out after 0.05 s (so asyncpg sends a cancel) while
    the lock's holder commits after ``commit_after``; the row's value once both are done: 1 if
    the cancel undid the query's update, 2 if the update ran."""
    async with a_table(dsn, 1) as table:
        holder, waiter = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute(f"UPDATE {table} SET n = 1 WHERE id = 0")

            async def commit() -> None:
                await asyncio.sleep(commit_after)
                await tx.commit()

            committing = asyncio.create_task(commit())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await waiter.execute(f"UPDATE {table} SET n = 2 WHERE id = 0")
            await committing
            n: int = await holder.fetchval(f"SELECT n FROM {table} WHERE id = 0")
            return n
        finally:
            await holder.close()
            await waiter.close()


def test_a_cancelled_query_lands_either_side_of_the_lock_it_waits_on_and_each_replays(
    dsn: str,
) -> None:
    # A query that waits on a row lock times out, so asyncpg sends a cancel; the lock's holder
    # commits at the same moment. The cancel reaching the server first undoes the query's
    # update; the commit first lets the update run, and the caller still sees its timeout.
    async def main() -> None:
        n = await timed_out_update(dsn, commit_after=0.05)
        raise AssertionError(f"n = {n}")  # each run's outcome, as its failure

    checked = check(main, runs=12)
    outcomes = {str(run.error): run for run in checked.runs}
    assert {"n = 1", "n = 2"} <= set(outcomes), outcomes.keys()  # the cancel won; the commit won
    for outcome, run in outcomes.items():
        assert any(d.actor.endswith(" cancel#1") for d in run.schedule.decisions), outcome
        for _ in range(5):
            assert str(replay(main, run.token).error) == outcome, run.token


def test_a_cancel_that_never_reaches_the_server_leaves_the_query_waiting_without_a_stall(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server resets the cancel's connection (some do): asyncpg ignores that, and the query
    # goes on waiting for its lock. The run must not wait for an answer the cancel never asked.
    import racetape.drivers.asyncpg as adapter

    def reset(*args: object) -> None:
        raise ConnectionResetError("reset by the server")

    monkeypatch.setattr(adapter, "send_cancel", reset)

    async def main() -> None:
        assert await timed_out_update(dsn, commit_after=0.2) == 2

    started = time.monotonic()
    checked = check(main, runs=3, settle_timeout=20)
    assert not checked.failures, checked.failures[0].error
    assert time.monotonic() - started < 15, "no wait of a settle timeout for the cancel"
