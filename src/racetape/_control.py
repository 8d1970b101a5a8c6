"""Named control points: the places where code under test lets a controller decide its timing.

Code calls :func:`point` (on the event loop) or :func:`point_blocking` (in a worker thread) at
fixed, named places. With no controller installed they return at once and cost next to nothing
(about 0.2 us a point, mostly building the keyword arguments; measured by ``racetape bench``).
A controller installed with :func:`under_controller` sees every point reached in that context
(and in the tasks and ``asyncio.to_thread`` workers it spawns, which copy the context) and may
hold the caller there for as long as it likes, delay it, or raise into it.

Contract for controllers
------------------------
* ``reach(point, info)`` is awaited on the event loop by the coroutine that reached the point;
  ``reach_blocking(point, info)`` is called in the worker thread that reached it. Returning lets
  the caller go on; raising raises at the point.
* ``info`` is the point's keyword arguments, opaque to racetape but for two keys that describe
  database locks, because an actor held at a point inside a transaction blocks, inside the
  database, every other actor that needs the same lock, where no controller could otherwise
  see it:

  - ``acquires``: the step that follows this point takes this lock inside the database;
  - ``holds``: the caller holds this lock while it waits at this point.

  A controller that lets one actor run at a time must never let an actor go from a point whose
  ``acquires`` names a lock another actor holds; it would block in the database, not at a point.
  A lock is held from the step after the point that ``acquires`` it until the holder reaches a
  point that does not ``hold`` it (or ends). Lock names are opaque strings chosen by the caller.
* Point names are the caller's: racetape keeps no catalog of them (the reference system keeps
  its own, ``reftask.points``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

PointInfo = dict[str, object]


class Controller(Protocol):
    def reach(self, point: str, info: PointInfo) -> Awaitable[None]:
        """Called on the loop when a coroutine reaches ``point``; awaited before it goes on."""
        ...

    def reach_blocking(self, point: str, info: PointInfo) -> None:
        """Called in a worker thread that reaches ``point``; returns when the thread may go on."""
        ...


_controller: ContextVar[Controller | None] = ContextVar("racetape.controller", default=None)


async def point(name: str, /, **info: object) -> None:
    """Reach the point ``name`` on the event loop; returns when the controller lets the caller
    go on (at once when none is installed)."""
    controller = _controller.get()
    if controller is not None:
        await controller.reach(name, info)


def point_blocking(name: str, /, **info: object) -> None:
    """Reach the point ``name`` in a worker thread; returns when the controller lets the thread
    go on (at once when none is installed)."""
    controller = _controller.get()
    if controller is not None:
        controller.reach_blocking(name, info)


def current_controller() -> Controller | None:
    return _controller.get()


@contextmanager
def under_controller(controller: Controller | None) -> Iterator[None]:
    """Install ``controller`` for the current context and everything it spawns from here."""
    token = _controller.set(controller)
    try:
        yield
    finally:
        _controller.reset(token)
