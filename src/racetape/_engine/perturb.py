"""A seeded perturbing event loop: the timing a loaded machine gives, chosen by a seed.

:class:`PerturbingEventLoop` is the platform's selector event loop with three seeded changes,
drawn from a :class:`Perturbation` (none at all while its ``perturbation`` is None):

* every job sent to a worker thread (``asyncio.to_thread``, ``loop.run_in_executor`` with any
  executor) sleeps a seeded delay in its thread before it starts, and another before its result
  is handed back. A job whose awaiter is cancelled during the first delay still runs, as a job a
  worker thread has picked up does: this is the window of the seed's bug 1;
* every callback that reaches the loop from outside (``call_soon_threadsafe``: a worker thread
  handing back, ``run_coroutine_threadsafe``, aiosqlite's connection thread) and every timer that
  fires (``call_at`` / ``call_later``, so ``asyncio.sleep`` and timeouts) is held for a seeded
  number of loop turns before it joins the ready queue, so the callbacks the loop schedules
  itself overtake it: a seeded reordering of the ready callbacks.

What stays as asyncio promises (so a correct program cannot fail for the perturbation alone):
callbacks queued with ``call_soon`` keep their FIFO order (task steps, future callbacks,
transports), held callbacks join the ready queue in the order they arrived (a timer never
overtakes an earlier timer, a thread's hand-backs stay in order), a cancelled handle never
runs, and every held callback runs in its own context. Only arrival times move, as they do on
a slow machine. I/O readiness is not perturbed: the selector's events have no public hook.

Determinism: all draws happen on the loop's thread, from streams seeded by the seed alone (one
for jobs, one for held callbacks), so the n-th job and the n-th arrival get the same decision
on every replay of the seed. Which job is n-th, and which callback arrives n-th, can still
depend on how the OS schedules the threads: a replay repeats the perturbation, not the
interleaving.

Usage without pytest::

    perturbation = Perturbation(seed=7)
    with asyncio.Runner(loop_factory=lambda: PerturbingEventLoop(perturbation)) as runner:
        runner.run(main())
    print(perturbation.summary())
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import math
import random
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

DEFAULT_MAX_DELAY = 0.05
"""Seconds: the longest delay a worker-thread job gets before it starts or before it hands back."""

MIN_DELAY = 5e-5
MAX_HOLD = 4


def derive_seed(base: int, *parts: object) -> int:
    """A 32-bit seed for one run, derived from ``base`` and what names the run (a test's node id
    and the run's index): the same on every machine and Python process."""
    text = ":".join(str(p) for p in ("racetape.perturb", base, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


@dataclass
class Perturbation:
    """The seeded decisions of one run, and the log of what was decided.

    Half the delays and half the holds are zero: perturbing everything would only slow every
    job down by the same amount. A non-zero delay is log-uniform between ``MIN_DELAY`` and
    ``max_delay``, so windows of every size between a few microseconds and ``max_delay`` get
    hit; a non-zero hold is 1 to ``MAX_HOLD`` loop turns.
    """

    seed: int
    max_delay: float = DEFAULT_MAX_DELAY
    jobs: list[tuple[float, float]] = field(default_factory=list)
    holds: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.max_delay <= 10:
            raise ValueError(f"max_delay must be in (0, 10] seconds, got {self.max_delay}")
        self._job_stream = random.Random(f"racetape.perturb:{self.seed}:jobs")
        self._hold_stream = random.Random(f"racetape.perturb:{self.seed}:holds")

    def _delay(self) -> float:
        stream = self._job_stream
        if stream.random() < 0.5 or self.max_delay <= MIN_DELAY:
            return 0.0
        return math.exp(stream.uniform(math.log(MIN_DELAY), math.log(self.max_delay)))

    def job_delays(self) -> tuple[float, float]:
        """(before start, before hand-back) for the next worker-thread job."""
        delays = (self._delay(), self._delay())
        self.jobs.append(delays)
        return delays

    def hold(self) -> int:
        """Loop turns the next arriving callback waits before it joins the ready queue."""
        stream = self._hold_stream
        turns = 0 if stream.random() < 0.5 else stream.randint(1, MAX_HOLD)
        self.holds.append(turns)
        return turns

    def summary(self) -> str:
        """One line: what was decided so far (the same for the same seed and program)."""
        jobs = ", ".join(f"{b * 1e3:.1f}/{a * 1e3:.1f}" for b, a in self.jobs[:8])
        more = f", ... ({len(self.jobs)} in all)" if len(self.jobs) > 8 else ""
        held = sum(1 for h in self.holds if h)
        return (
            f"seed {self.seed}: {len(self.jobs)} worker-thread jobs delayed (ms before start/"
            f"before hand-back: {jobs or 'none'}{more}); {len(self.holds)} arriving callbacks,"
            f" {held} held 1-{MAX_HOLD} loop turns"
        )


class _DelayedJob:
    """A worker-thread job with its seeded delays; ``__wrapped__`` names what it runs."""

    __slots__ = ("__wrapped__", "after", "before")

    def __init__(self, job: Callable[[], Any], before: float, after: float) -> None:
        self.__wrapped__ = job
        self.before = before
        self.after = after

    def __call__(self) -> Any:
        if self.before:
            time.sleep(self.before)
        try:
            return self.__wrapped__()
        finally:
            if self.after:
                time.sleep(self.after)


# The caller's handle, once known, so a cancel of it is honoured. Weakly: a strong reference
# would close a cycle through the handle's own arguments and keep the callback's arguments alive
# until the cyclic GC runs, which code that frees resources by reference count notices (aiosqlite
# hands back sqlite3 cursors this way: one kept alive keeps its statement open and fails COMMIT).
_HandleRef = list["weakref.ref[asyncio.Handle]"]


def _cancelled(ref: _HandleRef) -> bool:
    handle = ref[0]() if ref else None
    return handle is not None and handle.cancelled()


@dataclass(eq=False, slots=True)
class _Held:
    turns: int
    handle: _HandleRef
    callback: Callable[..., object]
    args: tuple[Any, ...]
    context: contextvars.Context


class PerturbingEventLoop(asyncio.SelectorEventLoop):
    """The selector event loop, perturbed by ``perturbation`` while it is set (see the module).

    ``perturbation`` may be replaced between runs (from the loop's thread, while it is idle):
    a loop that outlives one test serves the next with that test's perturbation.
    """

    def __init__(self, perturbation: Perturbation | None = None) -> None:
        super().__init__()
        self.perturbation = perturbation
        self._held: deque[_Held] = deque()
        self._released = 0  # held callbacks in the ready queue, not yet run
        self._turn_scheduled = False

    # -- worker-thread jobs ------------------------------------------------------------------

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        perturbation = self.perturbation
        if perturbation is None:
            return super().run_in_executor(executor, func, *args)
        job = functools.partial(func, *args) if args else func
        before, after = perturbation.job_delays()
        return super().run_in_executor(executor, _DelayedJob(job, before, after))

    # -- callbacks arriving from outside the loop's own FIFO ---------------------------------

    def call_soon_threadsafe(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if self.perturbation is None:
            return super().call_soon_threadsafe(callback, *args, context=context)
        # The context is taken here, in the calling thread, as asyncio's own Handle would.
        ctx = context if context is not None else contextvars.copy_context()
        ref: _HandleRef = []
        handle = super().call_soon_threadsafe(self._arrive, ref, callback, args, ctx, context=ctx)
        ref.append(weakref.ref(handle))
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if self.perturbation is None:
            return super().call_at(when, callback, *args, context=context)
        ctx = context if context is not None else contextvars.copy_context()
        ref: _HandleRef = []
        timer = super().call_at(when, self._arrive, ref, callback, args, ctx, context=ctx)
        ref.append(weakref.ref(timer))
        return timer

    def _arrive(
        self,
        ref: _HandleRef,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        ctx: contextvars.Context,
    ) -> None:
        """Runs on the loop, in ``ctx``, when the callback would have joined the ready queue."""
        perturbation = self.perturbation
        turns = perturbation.hold() if perturbation is not None else 0
        if turns == 0 and not self._held and not self._released:
            callback(*args)
            return
        # Behind anything held or released and not yet run, whatever its own draw: arrivals keep
        # their order.
        self._held.append(_Held(turns, ref, callback, args, ctx))
        self._schedule_turn()

    def _schedule_turn(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            super().call_soon(self._turn)

    def _turn(self) -> None:
        """Once per loop turn while anything is held: count the head down, release what is due
        to the end of the ready queue, in arrival order."""
        self._turn_scheduled = False
        if not self._held:
            return
        self._held[0].turns -= 1
        while self._held and self._held[0].turns <= 0:
            held = self._held.popleft()
            self._released += 1
            super().call_soon(self._release, held, context=held.context)
        if self._held:
            self._schedule_turn()

    def _release(self, held: _Held) -> None:
        self._released -= 1
        if not _cancelled(held.handle):
            held.callback(*held.args)
