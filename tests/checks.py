"""Checks of the reference system's invariants, shared by the contract suite and the fault table.

Each check opens what it needs from a store factory with the faults it is given, drives one race
deterministically (control points via :class:`tests.gates.Gates`, or an ordering the code itself
guarantees; never a sleep), and raises AssertionError when the invariant breaks. Without faults
every check passes; ``test_faults.py`` asserts that each fault turns at least one of them red.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from harness.oracle import check_task
from racetape._control import under_controller
from reftask.faults import Fault
from reftask.manager import RunContext, TaskManager
from reftask.models import EventKind, NewEvent, TaskRecord, TaskStatus
from reftask.stores.base import SqlTaskStore
from tests.gates import Gates

StoreFactory = Callable[..., Awaitable[SqlTaskStore]]
Faults = tuple[Fault, ...]


async def assert_settled_task_sound(
    store: SqlTaskStore, task_id: str, *, runner_started: bool
) -> None:
    row = await store.get_task(task_id)
    tape = await store.list_events(task_id)
    violations = check_task(row, tape, runner_started=runner_started)
    assert not violations, "; ".join(map(str, violations))


async def one_progress(ctx: RunContext) -> None:
    await ctx.reporter.progress(step=1)


async def append_after_terminal_is_dropped(open_store: StoreFactory, faults: Faults) -> None:
    """The seed's test: a non-final append on a terminal row is dropped and final stays last."""
    store = await open_store(faults)
    task_id = unique_id("drop")
    await store.create_task(task_id)
    await store.append_event(task_id, {"kind": EventKind.TASK_STARTED, "body": {}})
    await store.set_status(task_id, TaskStatus.CANCELLED)
    final: NewEvent = {"kind": EventKind.FINAL, "body": {"status": "CANCELLED"}}
    assert await store.append_event(task_id, final) == 2
    late: NewEvent = {"kind": EventKind.PROGRESS, "body": {"step": 9}}
    returned = await store.append_event(task_id, late)
    kinds = [e.kind for e in await store.list_events(task_id)]
    assert kinds == ["task_started", "final"], f"tape {kinds}: the late progress was not dropped"
    assert returned == 2, "a dropped append returns the current max seq"
    assert "seq" not in late, "a dropped event is left unstamped"
    assert "ts" not in late, "a dropped event is left unstamped"


async def concurrent_appends_keep_seq_unique(open_store: StoreFactory, faults: Faults) -> None:
    """Two appends from two connections: the first is held after reading max(seq) under the lock.

    With the append lock the second waits for the lock (in the controller, as the store declared
    it) and takes the next seq; without it, the second reads the same max and a seq repeats.
    """
    store_a, store_b = await open_store(faults), await open_store(faults)
    task_id = unique_id("seq")
    await store_a.create_task(task_id)
    gates = Gates()
    held = gates.hold("append.locked", task_id=task_id)
    with under_controller(gates):
        first = asyncio.create_task(store_a.append_event(task_id, _progress(1)))
        await held.arrived()
        second = asyncio.create_task(store_b.append_event(task_id, _progress(2)))
        lock_wait = asyncio.create_task(gates.lock_wait_started.wait())
        await asyncio.wait({second, lock_wait}, return_when=asyncio.FIRST_COMPLETED)
        lock_wait.cancel()
        held.release()
        await asyncio.gather(first, second)
    seqs = sorted(e.seq for e in await store_a.list_events(task_id))
    assert seqs == [1, 2], f"seqs {seqs}: concurrent appends repeated a seq"


async def late_progress_lands_after_cancel(open_store: StoreFactory, faults: Faults) -> None:
    """Seed bug 1: the progress write of a cancelled runner reaches the store after ``final``.

    The worker thread is held before it hands its event to the store; the runner is cancelled and
    the task finishes; then the thread goes on. Its write must be dropped, not land after final.
    """
    store = await open_store(faults)
    manager = TaskManager(store, faults=faults)
    gates = Gates()
    thread_held = gates.hold("write.enter", kind="progress")
    late_write = gates.hold("append.done", kind="progress")
    with under_controller(gates):
        task_id = await manager.submit(one_progress)
    await thread_held.arrived()
    assert await manager.cancel(task_id)
    await wait_for_final(manager, task_id, 10)
    thread_held.release()
    await late_write.arrived()
    late_write.release()
    order = [p for p, info in gates.reached if p in ("final.appended", "append.done")]
    assert order[-2:] == ["final.appended", "append.done"], (
        f"the cancelled runner's write should reach the store after final: {order}"
    )
    await assert_settled_task_sound(store, task_id, runner_started=True)


async def prestart_cancel_finishes_task(open_store: StoreFactory, faults: Faults) -> None:
    """Seed bug 2: a cancel that lands before the run's first step still ends in a final.

    ``submit`` creates the run task and returns without awaiting it, so the cancel issued right
    after it always reaches the task before its first step.
    """
    store = await open_store(faults)
    manager = TaskManager(store, faults=faults)
    task_id = await manager.submit(one_progress)
    assert await manager.cancel(task_id)
    await manager.join()
    await assert_settled_task_sound(store, task_id, runner_started=False)


async def final_comes_after_terminal_status(open_store: StoreFactory, faults: Faults) -> None:
    """A late write let go just after ``final`` was appended must find the row already terminal."""
    store = await open_store(faults)
    manager = TaskManager(store, faults=faults)
    gates = Gates()
    thread_held = gates.hold("write.enter", kind="progress")
    final_held = gates.hold("final.appended")
    late_write = gates.hold("append.done", kind="progress")
    with under_controller(gates):
        task_id = await manager.submit(one_progress)
    await thread_held.arrived()
    await manager.cancel(task_id)
    await final_held.arrived()
    thread_held.release()
    await late_write.arrived()
    late_write.release()
    final_held.release()
    await wait_for_final(manager, task_id, 10)
    await assert_settled_task_sound(store, task_id, runner_started=True)


async def cancel_after_terminal_changes_nothing(open_store: StoreFactory, faults: Faults) -> None:
    """A cancel of a finished task is a no-op: one final, the row keeps its status."""
    store = await open_store(faults)
    manager = TaskManager(store, faults=faults)
    task_id = await manager.submit(one_progress)
    await wait_for_final(manager, task_id, 10)
    cancelled = await manager.cancel(task_id)
    await assert_settled_task_sound(store, task_id, runner_started=True)
    assert (await store.get_task(task_id)).status == TaskStatus.SUCCEEDED
    assert not cancelled, "cancel() of a finished task reports that it changed nothing"


async def cancel_while_finishing_changes_nothing(open_store: StoreFactory, faults: Faults) -> None:
    """A cancel that lands between the terminal status and final must not cut the final off."""
    store = await open_store(faults)
    manager = TaskManager(store, faults=faults)
    gates = Gates()
    finishing = gates.hold("status.committed", status="SUCCEEDED")
    with under_controller(gates):
        task_id = await manager.submit(one_progress)
    await finishing.arrived()
    await manager.cancel(task_id)
    finishing.release()
    await manager.join()
    await assert_settled_task_sound(store, task_id, runner_started=True)


async def wait_for_final(manager: TaskManager, task_id: str, seconds: float) -> TaskRecord:
    async with asyncio.timeout(seconds):
        return await manager.wait(task_id)


def unique_id(prefix: str) -> str:
    """Task ids are unique per call: Postgres tests share one schema for the whole session."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def restart_restores_a_missing_final(open_store: StoreFactory, faults: Faults) -> None:
    """A manager that died between committing the terminal status and appending final left a
    finished row with no final; the restart must append the final it was owed."""
    store = await open_store(faults)
    task_id = unique_id("unfinalized")
    await store.create_task(task_id)
    await store.append_event(task_id, {"kind": EventKind.TASK_STARTED, "body": {}})
    await store.set_status(task_id, TaskStatus.SUCCEEDED)  # ... and then the process died
    await TaskManager(store, faults=faults).restart_cleanup()
    await assert_settled_task_sound(store, task_id, runner_started=True)
    tape = await store.list_events(task_id)
    assert tape[-1].body["status"] == "SUCCEEDED", "the restored final keeps the row's status"


def _progress(step: int) -> NewEvent:
    return {"kind": EventKind.PROGRESS, "body": {"step": step}}


Check = Callable[[StoreFactory, Faults], Awaitable[None]]

FAULT_CHECKS: dict[Fault, list[tuple[Check, str]]] = {
    Fault.NO_TERMINAL_GUARD: [
        (append_after_terminal_is_dropped, "the late progress was not dropped"),
        (late_progress_lands_after_cancel, "final-not-last"),
    ],
    Fault.UNLOCKED_APPEND: [(concurrent_appends_keep_seq_unique, "repeated a seq")],
    Fault.PRESTART_CANCEL_STRAND: [(prestart_cancel_finishes_task, "stuck-nonterminal")],
    Fault.FINAL_BEFORE_STATUS: [(final_comes_after_terminal_status, "final-not-last")],
    Fault.DOUBLE_FINAL_ON_LATE_CANCEL: [
        (cancel_after_terminal_changes_nothing, "duplicate-final"),
        (cancel_while_finishing_changes_nothing, "missing-final"),
    ],
    Fault.RESTART_SKIPS_UNFINALIZED: [(restart_restores_a_missing_final, "missing-final")],
}
"""For each fault, the checks it must turn red (each one, not merely one of them), and what the
failure says: the invariant the fault breaks, not some other assertion on the way."""

ALL_CHECKS = sorted(
    {check for pairs in FAULT_CHECKS.values() for check, _ in pairs}, key=lambda c: c.__name__
)
