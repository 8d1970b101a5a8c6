"""Named control points: the places where the reference system lets a controller decide timing.

The reference code calls :func:`checkpoint` (on the event loop) or :func:`checkpoint_blocking`
(in a worker thread) at fixed, named places. With no controller installed they return at once and
cost next to nothing (about 0.3 us a point, mostly building the keyword arguments; measured by
``racetape bench``). A controller installed with :func:`controlled` sees every point reached in
that context (and in the tasks and ``asyncio.to_thread`` workers it spawns, which copy the context)
and may hold the caller there for as long as it likes, delay it, or raise into it.

Contract for controllers
------------------------
* ``reach(point, info)`` is awaited on the event loop by the coroutine that reached the point;
  ``reach_blocking(point, info)`` is called in the worker thread that reached it. Returning lets
  the caller go on; raising raises at the point.
* ``info`` always carries ``task_id``. Two keys describe database locks, because an actor held at
  a point inside a transaction blocks, inside the database, every other actor that needs the same
  lock, where no controller could otherwise see it:

  - ``acquires``: the step that follows this point takes this lock inside the database;
  - ``holds``: the caller holds this lock while it waits at this point.

  A controller that lets one actor run at a time must never let an actor go from a point whose
  ``acquires`` names a lock another actor holds; it would block in the database, not at a point.
  A lock is held from the step after the point that ``acquires`` it until the holder reaches a
  point that does not ``hold`` it (or ends). Lock names are opaque strings chosen by the store.
* Every point is listed in :data:`POINTS`, with the window a cancel landing there represents.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, Protocol

PointInfo = dict[str, object]


class Controller(Protocol):
    def reach(self, point: str, info: PointInfo) -> Awaitable[None]:
        """Called on the loop when a coroutine reaches ``point``; awaited before it goes on."""
        ...

    def reach_blocking(self, point: str, info: PointInfo) -> None:
        """Called in a worker thread that reaches ``point``; returns when the thread may go on."""
        ...


@dataclass(frozen=True, slots=True)
class PointSpec:
    name: str
    side: Literal["loop", "thread"]
    where: str
    window: str


POINTS: dict[str, PointSpec] = {
    spec.name: spec
    for spec in (
        PointSpec(
            "run.before_try",
            "loop",
            "TaskManager._run, its first await, before the try block opens",
            "cancel before the runner starts (seed bug 2)",
        ),
        PointSpec(
            "create.begin",
            "loop",
            "store.create_task, before the insert (takes the lock only where a new row needs one)",
            "task row not yet written",
        ),
        PointSpec(
            "create.done",
            "loop",
            "store.create_task, after the row committed",
            "task row written, submit not yet returned",
        ),
        PointSpec(
            "status.begin",
            "loop",
            "store.set_status, before the update takes the task's lock",
            "status write not started",
        ),
        PointSpec(
            "status.committed",
            "loop",
            "store.set_status, after the update committed",
            "status committed, not yet handed back",
        ),
        PointSpec(
            "write.enter",
            "thread",
            "Reporter worker thread, before it hands its event to the store",
            "worker-thread write not yet started",
        ),
        PointSpec(
            "append.begin",
            "loop",
            "store.append_event, before the append transaction takes the append lock",
            "append not yet started",
        ),
        PointSpec(
            "append.locked",
            "loop",
            "store.append_event, status and max(seq) read under the lock; insert and commit follow",
            "append in flight",
        ),
        PointSpec(
            "append.done",
            "loop",
            "store.append_event, the transaction committed (or the event was dropped)",
            "append committed, not yet handed back",
        ),
        PointSpec(
            "final.appended",
            "loop",
            "TaskManager, after the final event is on the tape",
            "task finished",
        ),
        PointSpec(
            "cancel.delivered",
            "loop",
            "TaskManager.cancel, right after the task was cancelled or its token set",
            "cancel delivered, the canceller not yet returned",
        ),
    )
}


_controller: ContextVar[Controller | None] = ContextVar("reftask.controller", default=None)


async def checkpoint(point: str, /, **info: object) -> None:
    """Reach ``point`` on the event loop; returns when the controller lets the caller go on."""
    controller = _controller.get()
    if controller is not None:
        await controller.reach(point, info)


def checkpoint_blocking(point: str, /, **info: object) -> None:
    """Reach ``point`` in a worker thread; returns when the controller lets the thread go on."""
    controller = _controller.get()
    if controller is not None:
        controller.reach_blocking(point, info)


def current_controller() -> Controller | None:
    return _controller.get()


@contextmanager
def controlled(controller: Controller | None) -> Iterator[None]:
    """Install ``controller`` for the current context and everything it spawns from here."""
    token = _controller.set(controller)
    try:
        yield
    finally:
        _controller.reset(token)
