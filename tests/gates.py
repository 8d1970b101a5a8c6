"""A small controller for deterministic tests: it records points and holds the ones asked for.

It honours the lock contract of :mod:`racetape._control`: an actor at a point that ``acquires`` a
lock another actor ``holds`` waits in the controller (visibly, see :meth:`Gates.lock_waiters`)
instead of blocking inside the database.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from racetape._control import PointInfo


@dataclass(eq=False)
class Gate:
    """Holds the first actor that reaches a matching point, until :meth:`release`."""

    point: str
    match: dict[str, object]
    loop: asyncio.AbstractEventLoop
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _released: threading.Event = field(default_factory=threading.Event)
    _released_on_loop: asyncio.Event = field(default_factory=asyncio.Event)
    taken: bool = False

    def matches(self, point: str, info: PointInfo) -> bool:
        return (
            not self.taken
            and point == self.point
            and all(info.get(k) == v for k, v in self.match.items())
        )

    async def arrived(self) -> None:
        await self._arrived.wait()

    def release(self) -> None:
        self._released.set()
        self._released_on_loop.set()


class Gates:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.reached: list[tuple[str, PointInfo]] = []
        self._gates: list[Gate] = []
        self._lock_holder: dict[str, object] = {}
        self._lock_freed = asyncio.Condition()
        self.lock_waiters: list[tuple[str, PointInfo]] = []
        self.lock_wait_started = asyncio.Event()

    def hold(self, point: str, **match: object) -> Gate:
        gate = Gate(point, match, self.loop)
        self._gates.append(gate)
        return gate

    def points(self, name: str) -> list[PointInfo]:
        return [info for point, info in self.reached if point == name]

    def _take(self, point: str, info: PointInfo) -> Gate | None:
        self.reached.append((point, info))
        for gate in self._gates:
            if gate.matches(point, info):
                gate.taken = True
                return gate
        return None

    async def reach(self, point: str, info: PointInfo) -> None:
        me = asyncio.current_task()
        async with self._lock_freed:
            for lock, holder in list(self._lock_holder.items()):
                if holder is me and info.get("holds") != lock:
                    del self._lock_holder[lock]
                    self._lock_freed.notify_all()
        gate = self._take(point, info)
        if gate is not None:
            gate._arrived.set()
            await gate._released_on_loop.wait()
        wanted = info.get("acquires")
        if isinstance(wanted, str):
            async with self._lock_freed:
                if self._lock_holder.get(wanted, me) is not me:
                    self.lock_waiters.append((point, info))
                    self.lock_wait_started.set()
                    await self._lock_freed.wait_for(lambda: wanted not in self._lock_holder)
                self._lock_holder[wanted] = me

    def reach_blocking(self, point: str, info: PointInfo) -> None:
        gate = self._take(point, info)
        if gate is not None:
            self.loop.call_soon_threadsafe(gate._arrived.set)
            gate._released.wait()
