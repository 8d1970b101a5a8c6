"""A worker written outside racetape, with a lost stop.

``Worker.run`` registers itself (a write in a worker thread), says it is running, then creates
its loop task and awaits it. The loop task's first statement clears the stop event, so a
``stop()`` that lands after ``running`` is seen but before the loop task's first step is erased,
and the worker never ends. That needs the registration's hand-back and the test's polling timer
to land in the same loop turn: plain runs almost never show it. ``Worker(fixed=True)`` clears
the event before it says it is running.

Not collected by the suite (see README.md here).
"""

from __future__ import annotations

import asyncio


class Worker:
    def __init__(self, *, fixed: bool) -> None:
        self.fixed = fixed
        self.running = False
        self.ticks = 0
        self.registered_as = ""
        self._stop = asyncio.Event()

    def _register(self) -> None:
        self.registered_as = "worker-1"  # a registration write, well within the test's 10 ms poll

    async def run(self) -> None:
        await asyncio.to_thread(self._register)
        if self.fixed:
            self._stop.clear()
        self.running = True
        loop = asyncio.create_task(self._loop())
        await loop

    async def _loop(self) -> None:
        if not self.fixed:
            self._stop.clear()  # the bug: a stop that landed already is erased
        while not self._stop.is_set():
            self.ticks += 1
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()


async def start_then_stop(*, fixed: bool) -> None:
    worker = Worker(fixed=fixed)
    task = asyncio.create_task(worker.run())
    while not worker.running:  # noqa: ASYNC110 - the polling the test under study does
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(task, timeout=5)


async def test_stop_ends_the_worker() -> None:
    await start_then_stop(fixed=False)


async def test_stop_ends_the_fixed_worker() -> None:
    await start_then_stop(fixed=True)
