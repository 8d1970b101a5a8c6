"""The TaskStore contract, on both adapters against real databases."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest

from harness.pgserver import PostgresServer
from reftask.manager import TaskManager
from reftask.models import EventKind, NewEvent, TaskStatus, UnknownTaskError
from reftask.stores.base import SqlTaskStore
from reftask.stores.postgres import PostgresStore
from reftask.stores.sqlite import SqliteStore
from tests import checks, plans
from tests.checks import unique_id
from tests.conftest import StoreFactory, StoreLocation


@pytest.mark.parametrize("check", checks.ALL_CHECKS, ids=lambda c: c.__name__)
async def test_invariant_holds_without_faults(
    store_factory: StoreFactory, check: checks.Check
) -> None:
    await check(store_factory, ())


async def test_create_and_read_back(store: SqlTaskStore) -> None:
    task_id = unique_id("create")
    created = await store.create_task(task_id)
    row = await store.get_task(task_id)
    assert row.status == TaskStatus.PENDING
    assert row.created_at == pytest.approx(created.created_at)
    assert await store.list_events(task_id) == []


async def test_set_status_overwrites(store: SqlTaskStore) -> None:
    task_id = unique_id("status")
    await store.create_task(task_id)
    await store.set_status(task_id, TaskStatus.RUNNING)
    assert (await store.get_task(task_id)).status == TaskStatus.RUNNING


async def test_appends_number_from_one_and_stamp_the_event(store: SqlTaskStore) -> None:
    task_id = unique_id("seq")
    await store.create_task(task_id)
    events: list[NewEvent] = [
        {"kind": EventKind.TASK_STARTED, "body": {}},
        {"kind": EventKind.PROGRESS, "body": {"step": 1, "note": "é"}},
        {"kind": EventKind.FINAL, "body": {"status": "SUCCEEDED"}},
    ]
    returned = [await store.append_event(task_id, e) for e in events]
    assert returned == [1, 2, 3]
    assert [e["seq"] for e in events] == [1, 2, 3]
    tape = await store.list_events(task_id)
    assert [(e.seq, e.kind) for e in tape] == [(1, "task_started"), (2, "progress"), (3, "final")]
    assert tape[1].body == {"step": 1, "note": "é"}
    assert tape[1].ts == pytest.approx(events[1]["ts"])


async def test_final_is_never_dropped(store: SqlTaskStore) -> None:
    task_id = unique_id("final")
    await store.create_task(task_id)
    await store.set_status(task_id, TaskStatus.SUCCEEDED)
    final: NewEvent = {"kind": EventKind.FINAL, "body": {"status": "SUCCEEDED"}}
    assert await store.append_event(task_id, final) == 1
    assert final["seq"] == 1


async def test_drop_is_logged_at_debug(
    store: SqlTaskStore, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = unique_id("log")
    await store.create_task(task_id)
    await store.set_status(task_id, TaskStatus.FAILED)
    with caplog.at_level(logging.DEBUG, logger="reftask.store"):
        await store.append_event(task_id, {"kind": EventKind.PROGRESS, "body": {}})
    drops = [r for r in caplog.records if r.name == "reftask.store" and "dropped" in r.message]
    assert len(drops) == 1
    assert drops[0].levelno == logging.DEBUG
    assert task_id in drops[0].message


async def test_unknown_task_is_an_error(store: SqlTaskStore) -> None:
    with pytest.raises(UnknownTaskError):
        await store.get_task("nope")
    with pytest.raises(UnknownTaskError):
        await store.set_status("nope", TaskStatus.RUNNING)
    with pytest.raises(UnknownTaskError):
        await store.append_event("nope", {"kind": EventKind.PROGRESS, "body": {}})


async def test_list_unfinished(store: SqlTaskStore) -> None:
    """PENDING and RUNNING rows, and terminal rows with no final; not a finished task."""
    pending, running, finished, unfinalized = (unique_id(n) for n in ("p", "r", "f", "u"))
    for task_id in (pending, running, finished, unfinalized):
        await store.create_task(task_id)
    await store.set_status(running, TaskStatus.RUNNING)
    for task_id in (finished, unfinalized):
        await store.set_status(task_id, TaskStatus.FAILED)
    await store.append_event(finished, {"kind": EventKind.FINAL, "body": {"status": "FAILED"}})
    ours = {pending, running, finished, unfinalized}
    assert [t for t in await store.list_unfinished() if t in ours] == [
        pending,
        running,
        unfinalized,
    ]


async def test_list_unfinished_among_only_those_ids(store: SqlTaskStore) -> None:
    """Only the given ids, oldest first whatever order they come in; unknown ids are ignored."""
    older, newer, finished, elsewhere = (unique_id(n) for n in ("o", "n", "f", "e"))
    for task_id in (older, newer, finished, elsewhere):
        await store.create_task(task_id)
    await store.set_status(finished, TaskStatus.SUCCEEDED)
    await store.append_event(finished, {"kind": EventKind.FINAL, "body": {"status": "SUCCEEDED"}})
    among = [newer, "no-such-task", finished, older]
    assert await store.list_unfinished(among) == [older, newer]
    assert await store.list_unfinished(set(among)) == [older, newer]
    assert await store.list_unfinished([]) == []
    assert elsewhere in await store.list_unfinished()


async def test_restart_cleanup_among_reads_only_the_given_tasks_rows(
    large_store: SqlTaskStore, store_location: StoreLocation
) -> None:
    """On a database holding 20,000 other tasks, no statement restart_cleanup(among=...) sends
    reads a whole table: each is answered by index probes of the given tasks (the plan says so).

    The same check on the unscoped form, which must read every task, finds its scan: the check
    sees a whole-table read when there is one (it is what the old query did for ``among`` too).
    """
    assert isinstance(large_store, SqliteStore | PostgresStore)
    pending, running, unfinalized, finished = (unique_id(n) for n in ("p", "r", "u", "f"))
    for task_id in (pending, running, unfinalized, finished):
        await large_store.create_task(task_id)
    await large_store.set_status(running, TaskStatus.RUNNING)
    await large_store.append_event(running, {"kind": EventKind.TASK_STARTED, "body": {}})
    for task_id in (unfinalized, finished):
        await large_store.set_status(task_id, TaskStatus.SUCCEEDED)
    await large_store.append_event(
        finished, {"kind": EventKind.FINAL, "body": {"status": "SUCCEEDED"}}
    )
    repaired: list[str] = []

    async def cleanup() -> None:
        among = [pending, running, unfinalized, finished]
        repaired.extend(await TaskManager(large_store).restart_cleanup(among=among))

    dsn = store_location.pg_dsn or ""
    scans = await plans.full_scans(large_store, cleanup, pg_dsn=dsn)
    assert repaired == [pending, running, unfinalized]
    assert scans == []
    assert await plans.full_scans(large_store, large_store.list_unfinished, pg_dsn=dsn)


async def test_concurrent_appends_from_many_connections_are_unique(
    store_factory: StoreFactory,
) -> None:
    """No control at all: four pools append 25 events each, concurrently, to one task."""
    task_id = unique_id("many")
    stores = [await store_factory() for _ in range(4)]
    await stores[0].create_task(task_id)

    async def append_many(store: SqlTaskStore, base: int) -> None:
        for i in range(25):
            await store.append_event(task_id, {"kind": EventKind.PROGRESS, "body": {"i": base + i}})

    await asyncio.gather(*(append_many(s, 100 * n) for n, s in enumerate(stores)))
    seqs = [e.seq for e in await stores[0].list_events(task_id)]
    assert seqs == list(range(1, 101))


@pytest.mark.postgres
async def test_postgres_status_updates_are_hot_and_leave_no_dead_row_for_a_vacuum(
    postgres_server: PostgresServer,
) -> None:
    """300 tasks, each set RUNNING then FAILED: at least 90% of the 600 updates are HOT (heap-
    only: no new index entry, the old version pruned in place by the next visitor of its page),
    so a long job's tasks table stays its size without a VACUUM, which autovacuum may never run
    (it is off on some servers, this one included). An index on ``status`` makes none HOT."""
    schema = f"rt_hot_{uuid.uuid4().hex[:12]}"
    store = await PostgresStore.open(postgres_server.dsn, schema=schema, max_connections=1)
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        for _ in range(300):
            task_id = unique_id("hot")
            await store.create_task(task_id)
            await store.set_status(task_id, TaskStatus.RUNNING)
            await store.set_status(task_id, TaskStatus.FAILED)
        # The store's one connection reports its counts as soon as it is idle again.
        await store._pool.execute("SELECT pg_stat_force_next_flush()")
        query = (
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE schemaname = $1 AND relname = 'tasks'"
        )
        for _ in range(200):  # stats reach the view within a second or so of the flush
            row = await conn.fetchrow(query, schema)
            if row is not None and row["n_tup_upd"] >= 600:
                break
            await asyncio.sleep(0.1)
        assert row is not None
        assert row["n_tup_upd"] == 600
        assert row["n_tup_hot_upd"] >= 0.9 * 600
    finally:
        await store.close()
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
