"""The task manager: submit, cancel, wait, restart_cleanup; and the Reporter runners write through.

Invariants the manager keeps (without faults):

* Every task it submits ends in a terminal status with exactly one ``final`` event, which is the
  last event on its tape, whatever the timing of cancels. The terminal status is committed
  immediately before ``final`` is appended, in every arm: success, failure, task cancel, token
  cancel, and a cancel that lands before the run opened its try.
* Once a task has begun finishing (its terminal status is being written), a cancel is a no-op.

What the manager cannot stop, and does not try to: a worker thread started by
:meth:`Reporter.progress` keeps running after its awaiter is cancelled, and its write reaches the
store later. The store's terminal guard is what keeps such a write off a finished tape.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from racetape import point, point_blocking
from reftask.faults import Fault
from reftask.models import EventKind, NewEvent, TaskRecord, TaskStatus, UnknownTaskError
from reftask.store import TaskStore


class TaskCancelled(Exception):
    """Raised by a runner that finds its cancel token set."""


class TaskFailed(Exception):
    """Raised by a runner to fail its task on purpose; the message goes into ``final``."""


class CancelToken:
    """Cooperative cancel: the runner checks it between steps."""

    __slots__ = ("_cancelled",)

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise TaskCancelled("cancel token set")


class Reporter:
    """Writes a task's events the way the seed's reporter did: through ``asyncio.to_thread``.

    The worker thread hands its event to the store on the event loop and waits until the store
    has committed it. Cancelling the coroutine that awaits :meth:`progress` does not stop that
    thread: the write still reaches the store, later. That is the property racetape exercises.
    """

    def __init__(self, store: TaskStore, task_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._task_id = task_id
        self._loop = loop

    async def started(self) -> int:
        return await asyncio.to_thread(self._write, EventKind.TASK_STARTED, {})

    async def progress(self, **body: Any) -> int:
        return await asyncio.to_thread(self._write, EventKind.PROGRESS, body)

    def _write(self, kind: EventKind, body: dict[str, Any]) -> int:
        """Runs in a worker thread."""
        point_blocking("write.enter", task_id=self._task_id, kind=kind.value)
        event: NewEvent = {"kind": kind.value, "body": body}
        append = self._store.append_event(self._task_id, event)
        return asyncio.run_coroutine_threadsafe(append, self._loop).result()


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a runner is given."""

    task_id: str
    reporter: Reporter
    token: CancelToken


Runner = Callable[[RunContext], Awaitable[object]]


@dataclass(eq=False)
class _Handle:
    task_id: str
    runner: Runner
    token: CancelToken = field(default_factory=CancelToken)
    run_task: asyncio.Task[None] | None = None
    entered: bool = False  # _run got past its first await and opened its try
    finishing: bool = False  # a terminal status is being (or has been) written
    done: asyncio.Event = field(default_factory=asyncio.Event)


class TaskManager:
    def __init__(self, store: TaskStore, *, faults: Iterable[Fault] = ()) -> None:
        self._store = store
        self._faults = frozenset(faults)
        self._handles: dict[str, _Handle] = {}

    @property
    def store(self) -> TaskStore:
        return self._store

    async def submit(self, runner: Runner, *, task_id: str | None = None) -> str:
        """Create a PENDING task and start running it; returns its id."""
        task_id = task_id or uuid.uuid4().hex
        await self._store.create_task(task_id)
        handle = _Handle(task_id, runner)
        self._handles[task_id] = handle
        handle.run_task = asyncio.create_task(self._run(handle), name=f"reftask.run:{task_id}")
        return task_id

    async def cancel(self, task_id: str, *, via: Literal["task", "token"] = "task") -> bool:
        """Cancel a task by cancelling its asyncio task or by setting its token.

        Returns False when the task had already begun finishing: nothing changes then.
        """
        handle = self._handle(task_id)
        assert handle.run_task is not None
        if handle.finishing:
            if Fault.DOUBLE_FINAL_ON_LATE_CANCEL not in self._faults:
                return False
            if handle.run_task.done():
                # The fault: "the run is over, so record the cancel ourselves", on a task that
                # already has its final.
                await self._finish(handle, TaskStatus.CANCELLED, reason="late cancel")
                return True
        if via == "token":
            handle.token.cancel()
        else:
            handle.run_task.cancel()
        await point("cancel.delivered", task_id=task_id, via=via)
        if (
            via == "task"
            and not handle.entered
            and not handle.finishing
            and Fault.PRESTART_CANCEL_STRAND not in self._faults
        ):
            # The cancel landed before _run opened its try: the CancelledError is raised where no
            # handler can see it, so nobody else will ever write this task's final.
            await self._finish(handle, TaskStatus.CANCELLED, reason="cancelled before start")
        return True

    async def wait(self, task_id: str) -> TaskRecord:
        """Wait until the task has its final; returns its row. Bound it with asyncio.timeout."""
        await self._handle(task_id).done.wait()
        return await self._store.get_task(task_id)

    async def join(self) -> None:
        """Wait until every run task has ended (detached worker threads are not waited for)."""
        tasks = [h.run_task for h in self._handles.values() if h.run_task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def restart_cleanup(self, *, among: Collection[str] | None = None) -> list[str]:
        """Finish the tasks a crashed manager left unfinished; returns their ids.

        A row left PENDING or RUNNING becomes FAILED, with a final. A terminal row with no final
        (the manager died between committing the status and appending final) gets the final it
        was owed, with the status the row already has. Call it on a fresh manager at start-up;
        tasks this manager is running are left alone, and with ``among`` only those tasks are
        looked at (one crashed manager's share of a database that others use too).

        Cost: with ``among``, the database reads only those tasks' rows (see
        :meth:`reftask.store.TaskStore.list_unfinished`), so it costs the same whatever else the
        database holds; without it, a pass over every task ever stored.
        """
        repaired = []
        for task_id in await self._store.list_unfinished(among):
            if task_id in self._handles:
                continue
            row = await self._store.get_task(task_id)
            if not row.terminal:
                await self._store.set_status(task_id, TaskStatus.FAILED)
                final = _final(TaskStatus.FAILED, reason="abandoned: manager restarted")
            elif Fault.RESTART_SKIPS_UNFINALIZED in self._faults:
                continue
            else:
                final = _final(row.status, reason="final restored at restart")
            await self._store.append_event(task_id, final)
            repaired.append(task_id)
        return repaired

    def _handle(self, task_id: str) -> _Handle:
        try:
            return self._handles[task_id]
        except KeyError:
            raise UnknownTaskError(task_id) from None

    async def _run(self, handle: _Handle) -> None:
        await point("run.before_try", task_id=handle.task_id)
        handle.entered = True
        reporter = Reporter(self._store, handle.task_id, asyncio.get_running_loop())
        try:
            await self._store.set_status(handle.task_id, TaskStatus.RUNNING)
            await reporter.started()
            await handle.runner(RunContext(handle.task_id, reporter, handle.token))
        except asyncio.CancelledError:
            await self._finish(handle, TaskStatus.CANCELLED, reason="cancelled")
            raise
        except TaskCancelled:
            await self._finish(handle, TaskStatus.CANCELLED, reason="cancel token")
        except TaskFailed as exc:
            await self._finish(handle, TaskStatus.FAILED, reason=str(exc))
        except Exception as exc:
            error = "".join(traceback.format_exception_only(exc)).strip()
            await self._finish(handle, TaskStatus.FAILED, reason="runner raised", error=error)
        else:
            await self._finish(handle, TaskStatus.SUCCEEDED)

    async def _finish(self, handle: _Handle, status: TaskStatus, **body: Any) -> None:
        handle.finishing = True  # before any await: a cancel from here on is a no-op
        final = _final(status, **body)
        if Fault.FINAL_BEFORE_STATUS in self._faults:
            await self._store.append_event(handle.task_id, final)
            await point("final.appended", task_id=handle.task_id, status=status.value)
            await self._store.set_status(handle.task_id, status)
        else:
            await self._store.set_status(handle.task_id, status)
            await self._store.append_event(handle.task_id, final)
            await point("final.appended", task_id=handle.task_id, status=status.value)
        handle.done.set()


def _final(status: TaskStatus, **body: Any) -> NewEvent:
    return {"kind": EventKind.FINAL.value, "body": {"status": status.value, **body}}
