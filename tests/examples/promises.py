"""Correct programs, each relying on one ordering asyncio promises.

Any failure of these under racetape's controlled loop would be a false alarm: an interleaving
no real machine produces. ``tests/test_loop.py`` runs each 2,000 times.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading


async def call_soon_fifo() -> None:
    loop = asyncio.get_running_loop()
    seen: list[int] = []
    done = loop.create_future()
    for i in range(5):
        loop.call_soon(seen.append, i)
    loop.call_soon(done.set_result, None)
    await asyncio.to_thread(lambda: None)  # a thread's work in flight meanwhile
    await done
    assert seen == [0, 1, 2, 3, 4], seen


async def event_wakes_in_order() -> None:
    event = asyncio.Event()
    woke: list[int] = []

    async def waiter(i: int) -> None:
        await event.wait()
        woke.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(4)]
    await asyncio.sleep(0)  # every waiter is waiting
    await asyncio.to_thread(lambda: None)
    event.set()
    await asyncio.gather(*tasks)
    assert woke == [0, 1, 2, 3], woke


async def lock_is_fair() -> None:
    lock = asyncio.Lock()
    order: list[int] = []

    async def holder(i: int) -> None:
        async with lock:
            order.append(i)
            await asyncio.to_thread(lambda: None)

    tasks = []
    for i in range(4):
        tasks.append(asyncio.create_task(holder(i)))
        await asyncio.sleep(0)  # each asks for the lock in turn
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3], order


async def queue_keeps_order() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
    got: list[int] = []

    async def producer() -> None:
        for i in range(6):
            await queue.put(i)
            await asyncio.to_thread(lambda: None)

    async def consumer() -> None:
        for _ in range(6):
            got.append(await queue.get())
            await asyncio.sleep(0.001)

    await asyncio.gather(producer(), consumer())
    assert got == list(range(6)), got


async def gather_keeps_result_order() -> None:
    async def job(i: int, delay: float) -> int:
        await asyncio.to_thread(lambda: None)
        await asyncio.sleep(delay)
        return i

    results = await asyncio.gather(job(0, 0.03), job(1, 0.01), job(2, 0.02), job(3, 0))
    assert list(results) == [0, 1, 2, 3], results


async def one_threads_hand_backs_in_order() -> None:
    loop = asyncio.get_running_loop()
    seen: list[int] = []
    done = asyncio.Event()

    def post() -> None:  # one worker thread handing five callbacks back, in order
        for i in range(5):
            loop.call_soon_threadsafe(seen.append, i)
        loop.call_soon_threadsafe(done.set)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        first = loop.run_in_executor(pool, post)
        second = loop.run_in_executor(pool, threading.get_ident)
        await first
        await second
    await done.wait()
    assert seen == [0, 1, 2, 3, 4], seen


async def timers_fire_in_deadline_order() -> None:
    fired: list[float] = []

    async def sleeper(delay: float) -> None:
        await asyncio.sleep(delay)
        fired.append(delay)

    delays = [0.05, 0.01, 0.04, 0.02, 0.03]
    await asyncio.gather(*(sleeper(d) for d in delays), asyncio.to_thread(lambda: None))
    assert fired == sorted(delays), fired


PROGRAMS = {
    program.__name__: program
    for program in (
        call_soon_fifo,
        event_wakes_in_order,
        lock_is_fair,
        queue_keeps_order,
        gather_keeps_result_order,
        one_threads_hand_backs_in_order,
        timers_fire_in_deadline_order,
    )
}
