"""The seed's bug 1 in miniature: a ``to_thread`` write that outlives the cancel of its awaiter.

Not collected by the normal suite (see README.md here). ``test_final_stays_last`` is the buggy
test a project would have: it passes under plain pytest, because the write is done long before
the test's 10 ms wait ends; ``--race-runs`` makes it fail. ``test_final_stays_last_with_guard``
runs the same code against a tape with the seed's fix (drop a non-final event once the task is
final): it passes under every perturbation.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

WAIT_BEFORE_CANCEL = 0.01  # "long enough for the progress write", as the seed's tests assumed


class Tape:
    """A task's event tape in a thread-safe store; ``guarded`` is the seed's fix."""

    def __init__(self, *, guarded: bool) -> None:
        self.guarded = guarded
        self.events: list[str] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def append(self, kind: str) -> None:
        with self._lock:
            self.attempts += 1
            if self.guarded and "final" in self.events and kind != "final":
                return  # the terminal guard: nothing after final
            self.events.append(kind)

    async def settled(self, writes: int) -> None:
        """Wait until ``writes`` appends were attempted: a worker thread is never stopped, so
        its write always comes, sooner or later."""
        async with asyncio.timeout(5):
            while self.attempts < writes:  # noqa: ASYNC110 - counted in a worker thread
                await asyncio.sleep(0.001)


async def run_task(tape: Tape) -> None:
    tape.append("started")
    try:
        await asyncio.to_thread(tape.append, "progress")
        await asyncio.sleep(10)  # the task's real work
    except asyncio.CancelledError:
        tape.append("final")
        raise


async def cancel_after_progress(tape: Tape) -> None:
    task = asyncio.create_task(run_task(tape))
    await asyncio.sleep(WAIT_BEFORE_CANCEL)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await tape.settled(writes=3)


async def test_final_stays_last() -> None:
    tape = Tape(guarded=False)
    await cancel_after_progress(tape)
    assert tape.events[-1] == "final", f"an event landed after final: {tape.events}"


async def test_final_stays_last_with_guard() -> None:
    tape = Tape(guarded=True)
    await cancel_after_progress(tape)
    assert tape.events[-1] == "final", f"an event landed after final: {tape.events}"
