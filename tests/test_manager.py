"""TaskManager behaviour on both adapters: every arm ends terminal with exactly one final, last."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from racetape._control import under_controller
from reftask.faults import Fault
from reftask.manager import RunContext, TaskFailed, TaskManager
from reftask.models import TaskStatus, UnknownTaskError
from reftask.stores.base import SqlTaskStore
from tests.checks import assert_settled_task_sound, one_progress, unique_id, wait_for_final
from tests.conftest import StoreFactory, StoreLocation
from tests.gates import Gates


async def three_progress(ctx: RunContext) -> str:
    for step in range(3):
        ctx.token.raise_if_cancelled()
        await ctx.reporter.progress(step=step)
    return "done"


async def fails_on_purpose(ctx: RunContext) -> None:
    await ctx.reporter.progress(step=1)
    raise TaskFailed("bad input")


async def raises(ctx: RunContext) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("runner", "status", "kinds", "body"),
    [
        (three_progress, "SUCCEEDED", ["task_started", *["progress"] * 3, "final"], {}),
        (
            fails_on_purpose,
            "FAILED",
            ["task_started", "progress", "final"],
            {"reason": "bad input"},
        ),
        (raises, "FAILED", ["task_started", "final"], {"error": "RuntimeError: boom"}),
    ],
    ids=["succeed", "fail", "raise"],
)
async def test_runner_outcomes(
    store: SqlTaskStore, runner: object, status: str, kinds: list[str], body: dict[str, str]
) -> None:
    manager = TaskManager(store)
    task_id = await manager.submit(runner)  # type: ignore[arg-type]
    row = await wait_for_final(manager, task_id, 10)
    tape = await store.list_events(task_id)
    assert row.status == status
    assert [e.kind for e in tape] == kinds
    assert tape[-1].body.items() >= {"status": status, **body}.items()
    await assert_settled_task_sound(store, task_id, runner_started=True)


async def test_token_cancel_ends_cancelled(store: SqlTaskStore) -> None:
    manager = TaskManager(store)
    gates = Gates()
    first_write = gates.hold("write.enter", kind="progress")
    with under_controller(gates):
        task_id = await manager.submit(three_progress)
    await first_write.arrived()
    assert await manager.cancel(task_id, via="token")
    first_write.release()
    row = await wait_for_final(manager, task_id, 10)
    tape = await store.list_events(task_id)
    assert row.status == TaskStatus.CANCELLED
    assert [e.kind for e in tape] == ["task_started", "progress", "final"]
    assert tape[-1].body["reason"] == "cancel token"


async def test_stranded_task_makes_wait_time_out(store_factory: StoreFactory) -> None:
    """The seed's symptom: with bug 2 back, a waiter on the cancelled task never wakes."""
    store = await store_factory()
    manager = TaskManager(store, faults={Fault.PRESTART_CANCEL_STRAND})
    task_id = await manager.submit(one_progress)
    await manager.cancel(task_id)
    with pytest.raises(TimeoutError):
        await wait_for_final(manager, task_id, 0.2)
    assert (await store.get_task(task_id)).status == TaskStatus.PENDING


async def test_cancel_of_unknown_task(store: SqlTaskStore) -> None:
    with pytest.raises(UnknownTaskError):
        await TaskManager(store).cancel("nope")


async def test_worker_thread_outlives_its_cancelled_awaiter(store_factory: StoreFactory) -> None:
    """Cancelling the coroutine awaiting Reporter.progress does not stop its worker thread.

    With the guard off the proof is on the tape: the thread's write lands after final.
    """
    store = await store_factory((Fault.NO_TERMINAL_GUARD,))
    manager = TaskManager(store, faults={Fault.NO_TERMINAL_GUARD})
    gates = Gates()
    thread_held = gates.hold("write.enter", kind="progress")
    landed = gates.hold("append.done", kind="progress")
    with under_controller(gates):
        task_id = await manager.submit(one_progress)
    await thread_held.arrived()
    await manager.cancel(task_id)
    await wait_for_final(manager, task_id, 10)
    assert [e.kind for e in await store.list_events(task_id)] == ["task_started", "final"]
    thread_held.release()  # the awaiter is long gone; the thread goes on regardless
    await landed.arrived()
    landed.release()
    assert [e.kind for e in await store.list_events(task_id)] == [
        "task_started",
        "final",
        "progress",
    ]


async def test_restart_cleanup_finishes_what_a_crash_left(store: SqlTaskStore) -> None:
    """The rows a dead manager leaves: one PENDING, one RUNNING mid-progress, one finished."""
    pending, running, finished = (unique_id(p) for p in ("pending", "running", "finished"))
    for task_id in (pending, running, finished):
        await store.create_task(task_id)
    await store.set_status(running, TaskStatus.RUNNING)
    await store.append_event(running, {"kind": "task_started", "body": {}})
    await store.append_event(running, {"kind": "progress", "body": {"step": 1}})
    await store.set_status(finished, TaskStatus.SUCCEEDED)
    await store.append_event(finished, {"kind": "final", "body": {"status": "SUCCEEDED"}})

    manager = TaskManager(store)
    cleaned = await manager.restart_cleanup()
    assert pending in cleaned
    assert running in cleaned
    assert finished not in cleaned
    for task_id, started in ((pending, False), (running, True)):
        row = await store.get_task(task_id)
        tape = await store.list_events(task_id)
        assert row.status == TaskStatus.FAILED
        assert tape[-1].body["reason"] == "abandoned: manager restarted"
        await assert_settled_task_sound(store, task_id, runner_started=started)
    assert [t for t in await manager.restart_cleanup() if t in (pending, running)] == []


async def test_restart_cleanup_among_some_tasks_leaves_the_others_alone(
    store: SqlTaskStore,
) -> None:
    mine, theirs = unique_id("mine"), unique_id("theirs")
    for task_id in (mine, theirs):
        await store.create_task(task_id)
    cleaned = await TaskManager(store).restart_cleanup(among={mine})
    assert cleaned == [mine]
    assert (await store.get_task(theirs)).status == TaskStatus.PENDING
    assert await store.list_events(theirs) == []


async def test_restart_cleanup_after_a_killed_process(
    store: SqlTaskStore, store_location: StoreLocation
) -> None:
    """A real crash: a child process running a task is killed with SIGKILL mid-run."""
    if store_location.sqlite_path is not None:
        target = [str(store_location.sqlite_path)]
    else:
        target = [str(store_location.pg_dsn), str(store_location.pg_schema)]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.crash_child",
        store_location.adapter,
        *target,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
    running, pending = line.decode().split()
    child.kill()
    await child.wait()

    cleaned = await TaskManager(store).restart_cleanup()
    assert {running, pending} <= set(cleaned)
    await assert_settled_task_sound(store, running, runner_started=True)
    await assert_settled_task_sound(store, pending, runner_started=False)
    kinds = [e.kind for e in await store.list_events(running)]
    assert kinds == ["task_started", "progress", "final"]
