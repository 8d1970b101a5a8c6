"""The controlled event loop: unmodified asyncio code, with every source of timing decided.

Given the same external events arriving at the same loop turns, an asyncio program runs the same
way. What differs from one real run to the next is only when a worker-thread job starts, runs its
body and hands back; when a timer fires relative to other work; when a callback from a foreign
thread arrives; when a socket becomes ready. :class:`ControlledLoop` is the platform's selector
loop with the first three of these turned into decisions that a strategy takes, one at a time,
and recorded by stable names, so that a seed or a decision list replays the same interleaving on
any machine.

The model (what a decision can do, and why each is an interleaving a real machine can produce):

* A *turn* is asyncio's own: at its start, pending events join the end of the ready queue; then
  the callbacks that were ready at that moment run, in FIFO order; callbacks they queue run next
  turn. The loop's own ``call_soon`` order is never changed.
* A worker-thread job (``asyncio.to_thread``, ``run_in_executor`` with the default or any
  ``ThreadPoolExecutor``) is picked up by a worker as soon as its executor has one free (oldest
  first, within ``max_workers``; a job whose awaiter is cancelled while it waits for a worker
  never runs, as with ``concurrent.futures``); from then on cancelling its awaiter cannot stop
  it. Then two decisions: its *body* runs (on a real worker thread, while the loop waits: its
  effects happen at that point and nowhere else), and its *hand-back* joins the ready queue.
  Both may land at a turn start or between any two callbacks of a turn, as threads do.
* Timers run on virtual time (:meth:`ControlledLoop.time`): a ``sleep(5)`` costs no wall time.
  A turn costs ``TURN_COST``; beyond that, time jumps only at a turn start with an otherwise
  empty ready queue, to the next deadline, and every timer due by then joins the turn in
  deadline order, as in asyncio. While worker-thread
  work is still owed, time may move only up to ``horizon`` seconds (default 0.05) past the moment
  the oldest of it was submitted: a job may take that long on a loaded machine, but a
  ``wait_for(..., 30)`` never fires because the engine skipped past a job still running.
* A *served thread* (a driver's connection thread, given a :class:`ServedQueue` by its adapter
  in ``racetape.drivers``) runs the requests the loop's code queues to it one at a time: each
  request is a job of a pool of one, whose body starts when the thread takes it from the queue
  and ends when the thread comes back for the next; its first ``call_soon_threadsafe`` is the
  job's hand-back. A body that waits on a database lock another actor's open transaction holds
  (a wait in C; a driver adapter's lock probe says so) is parked until that transaction ends,
  or, when nothing else can happen, runs on to its own busy timeout, and time does not move
  past that timeout meanwhile.
* A callback from a thread the loop does not control (``call_soon_threadsafe`` from a thread
  started by hand, a driver's thread without an adapter) joins the ready queue when a decision says,
  in its thread's order, but when it *arrives* is the OS's business: such a run is *partly
  uncontrolled* and says so (:attr:`Execution.uncontrolled`). Socket readiness is not decided:
  the selector's events join each turn start as asyncio's would, and a run that used sockets
  says so too. While such a thread or socket is alive, time does not jump past it: the loop
  waits for it in real time, as a real loop would, up to ``settle_timeout``.
* A job's body that calls back into the loop and blocks on the answer
  (``run_coroutine_threadsafe(...).result()``, ``Event.wait``) is parked until what it waits on
  is done; the loop then waits for it to finish or block again before it takes another step.

Quiescence is known exactly: nothing ready, no job body running, nothing owed by a controlled
thread. A run in which nothing can happen while the main future is not done is a
:class:`Deadlock`, naming what each task waits on; one that can make no progress (a body that
never returns, no foreign callback within ``settle_timeout``, more than ``max_turns`` turns) is
:class:`Hung`.

Candidates are offered first come, first served: the loop's own next step first, then pending
events oldest first; so index 0 always is "no deviation", and a decision list read as indices
is the interleaving's distance from the unloaded machine.
"""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import contextvars
import heapq
import os
import queue
import select
import selectors
import socket
import sys
import threading
import time
import weakref
from asyncio.base_events import (  # type: ignore[attr-defined]
    _MIN_CANCELLED_TIMER_HANDLES_FRACTION,
    _MIN_SCHEDULED_TIMER_HANDLES,
)
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from types import FrameType
from typing import Any, TypeVar, TypeVarTuple

from racetape._engine.drivers import (
    LockWait,
    Peer,
    install_drivers,
    is_own_thread,
    lock_wait,
    running,
)
from racetape._engine.schedule import Candidate, Decision, chose
from racetape._engine.schedule import Strategy as _Strategy

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

HORIZON = 0.05
"""Seconds of virtual time a worker-thread job may take before timers must wait for it."""

SETTLE_TIMEOUT = 10.0
"""Real seconds to wait for what the loop does not control (a foreign thread, a socket, a job
body still running) before the run is :class:`Hung`."""

MAX_TURNS = 500_000
"""Turns after which a run that has not finished is :class:`Hung` (an endless poll loop)."""

TURN_COST = 1e-5
"""Virtual seconds a turn takes: time moves while the loop is busy too, so a program that polls
with ``sleep(0)`` until a deadline reaches it, as on a real machine."""

START_TIME = 1000.0
"""Virtual time at which a loop starts: not zero, which code sometimes reads as "unset"."""

DEFAULT_WORKERS = 32
"""Workers of the default executor: the most asyncio gives one (``min(32, cpus + 4)``), fixed
so that a decision list means the same on every machine."""

LOOP = "loop"
"""The actor name of the loop's own next step."""

LOCK_PROBE = 0.005
"""Real seconds a job's body may run before the loop asks the driver adapters whether it waits
on a database lock another actor holds (a wait in C, which no Python frame shows)."""


Strategy = _Strategy
"""A strategy picks one of two or more :class:`Candidate`s (see ``racetape._engine.strategies``)."""


class ControlledRunError(RuntimeError):
    """The run cannot go on under control; the message says why and names the actors."""


class Deadlock(ControlledRunError):
    """Nothing can happen, and the run has not finished."""


class Hung(ControlledRunError):
    """The run makes no progress that the loop can see within its bounds."""


@dataclass
class Execution:
    """What one controlled run did: its decisions, and what the loop could not control."""

    decisions: list[Decision] = field(default_factory=list)
    uncontrolled: dict[str, int] = field(default_factory=dict)
    jobs: int = 0
    timers: int = 0
    turns: int = 0
    lock_waits: int = 0  # bodies parked on a database lock another actor held

    @property
    def partly_uncontrolled(self) -> bool:
        return bool(self.uncontrolled)

    @property
    def deviations(self) -> list[Decision]:
        """The decisions that did not take the first candidate (first come, first served)."""
        return [d for d in self.decisions if d.index != 0]

    @property
    def choices(self) -> list[str]:
        return [d.actor for d in self.decisions]

    def coverage(self) -> str:
        """One line: what was decided, and what was not under control."""
        text = (
            f"{len(self.decisions)} decisions ({len(self.deviations)} deviations), {self.jobs}"
            f" worker-thread jobs, {self.timers} timers, {self.turns} turns"
        )
        if self.lock_waits:
            text += f", {self.lock_waits} database lock waits"
        if self.uncontrolled:
            parts = ", ".join(f"{what} x{n}" for what, n in sorted(self.uncontrolled.items()))
            text += f"; partly uncontrolled: {parts}"
        return text


# -- names ---------------------------------------------------------------------------------------

_SKIP = (
    os.path.dirname(asyncio.__file__),
    os.path.dirname(concurrent.futures.__file__),
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    threading.__file__,
)


_DISPATCH = frozenset({"_run", "__step", "_Task__step", "_run_once", "run_forever"})
"""asyncio's frames that run a callback or a task step: above them is whoever drives the loop,
never the code that made the choice."""


def _where(frame: FrameType | None, skip: tuple[str, ...] = ()) -> str:
    """``file:line`` of the first frame outside asyncio, concurrent.futures and racetape (and
    ``skip``: a driver's own folder), within the current callback or task step (``?`` if there
    is none: a task of asyncio's own, such as ``to_thread`` under ``gather``), so that a name
    never depends on who drives the loop."""
    asyncio_dir = _SKIP[0]
    skipped = _SKIP + skip
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(asyncio_dir) and frame.f_code.co_name in _DISPATCH:
            return "?"
        if not path.startswith(skipped) and not path.startswith("<frozen"):
            try:
                shown = os.path.relpath(path)
            except ValueError:
                shown = path
            if shown.startswith(".."):
                shown = os.path.basename(path)
            return f"{shown}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _innermost(task: asyncio.Task[Any]) -> tuple[str, str]:
    """Where a suspended task waits (the deepest frame of user code) and on what."""
    coro: Any = task.get_coro()
    frames: list[FrameType] = []
    what = ""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
            what = frame.f_code.co_qualname
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    where = "?"
    for frame in reversed(frames):
        if not frame.f_code.co_filename.startswith(_SKIP):
            where = _where(frame)
            break
    return where, what


# -- jobs ----------------------------------------------------------------------------------------


class _JobState(Enum):
    QUEUED = "queued"  # submitted; cancelling its awaiter drops it
    PICKED = "picked"  # a worker has it: it will run
    PARKED = "parked"  # its body waits on the loop
    DONE = "done"  # body finished; the hand-back is pending
    OVER = "over"  # handed back, or dropped


@dataclass(eq=False)
class _Job:
    name: str
    call: Callable[[], Any]
    future: asyncio.Future[Any] | None  # None for a served thread's request: nobody awaits it
    pool: _Pool
    since: int
    submitted_at: float
    state: _JobState = _JobState.QUEUED
    result: Any = None
    error: BaseException | None = None
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    wakes_when: Callable[[], bool] | None = None
    served: ServedQueue | None = None  # the served thread's queue this request was put on
    item: Any = None  # what the served thread's get() returns for it
    released: bool = False  # given to its served thread (its body was decided)
    handed_back: bool = False  # its served thread has called back once (that is its hand-back)
    lock_wait: LockWait | None = None  # parked on a database lock, not on the loop
    parked_at: float = 0.0  # virtual time at which it was parked on that lock


@dataclass(eq=False)
class _Pool:
    """One executor's queue of jobs and how many workers it has."""

    workers: int
    queue: deque[_Job] = field(default_factory=deque)
    busy: int = 0


class _Worker(threading.Thread):
    """A real thread that runs job bodies, one at a time, when the loop hands it one."""

    def __init__(self, index: int) -> None:
        super().__init__(name=f"racetape-worker-{index}", daemon=True)
        # A SimpleQueue blocks in C: an idle worker shows no wait of threading's, which
        # _blocked_on would read as a body waiting on the loop.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()

    def give(self, job: _Job | None) -> None:
        self._jobs.put(job)

    def run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.started.set()
            try:
                job.result = job.call()
            except BaseException as exc:  # handed back, as concurrent.futures does
                job.error = exc
            finally:
                job.finished.set()


def _blocked_on(thread: threading.Thread) -> tuple[bool, Callable[[], bool] | None]:
    """Whether ``thread`` is blocked in a wait, and a test for what would wake it, if known.

    Read from the thread's Python frames. Every blocking wait of ``threading``,
    ``concurrent.futures`` and ``queue`` ends in ``Condition.wait``; the frames around it name
    what is awaited: a ``concurrent.futures.Future`` (what ``run_coroutine_threadsafe(...)
    .result()`` does), a ``threading.Event``, a ``queue.Queue``. A wait on anything else is
    blocked on something unknown; a thread blocked in C (a plain ``Lock.acquire``) looks busy.
    """
    try:
        return _read_blocked_on(thread)
    except (AttributeError, TypeError):
        # The thread ran on while its frames were read (CPython 3.11 may show a frame being
        # torn down as garbage): busy, as far as this look can tell; the loop looks again.
        return False, None


def _read_blocked_on(thread: threading.Thread) -> tuple[bool, Callable[[], bool] | None]:
    frame = sys._current_frames().get(thread.ident or -1)
    blocked = False
    while frame is not None:
        code = frame.f_code
        owner = frame.f_locals.get("self") if blocked else None
        if code.co_filename == threading.__file__ and code.co_qualname == "Condition.wait":
            blocked = True
        elif code.co_qualname == "Event.wait" and isinstance(owner, threading.Event):
            return True, owner.is_set
        elif code.co_qualname in ("Future.result", "Future.exception") and isinstance(
            owner, concurrent.futures.Future
        ):
            return True, owner.done
        elif code.co_qualname == "Queue.get" and isinstance(owner, queue.Queue):
            return True, lambda q=owner: not q.empty()
        frame = frame.f_back
    return blocked, None


class _Loose:
    """What a served thread runs that the loop did not decide (a put from another thread)."""


_LOOSE = _Loose()


class ServedQueue:
    """The request queue of a *served thread*: a thread that runs, one at a time, the functions
    the loop's code queues to it, and hands each result back with ``call_soon_threadsafe``
    (aiosqlite's connection thread). Made by :meth:`ControlledLoop.served_queue`.

    A ``put`` from the loop's thread is a worker-thread job in a pool of one worker (the served
    thread), named as any job is (the owner task's path and the user's ``file:line``). Unlike an
    executor's job it cannot be dropped by cancelling its awaiter: the thread runs every item.
    When the strategy decides its body, ``get()`` on the served thread returns the item; the
    body is over when the thread comes back to ``get()`` (or ends); the thread's first
    ``call_soon_threadsafe`` during the body is the job's hand-back (one decision), later ones
    are callbacks, all in the thread's order. A put from any other thread, or once the loop has
    failed or closed, goes straight to the thread and is counted as uncontrolled.
    """

    def __init__(self, loop: ControlledLoop, name: str, source: str, skip: tuple[str, ...]):
        self.name = name
        self.source = source  # the arrival queue of everything this thread calls back
        self._loop = loop
        self._skip = skip
        self._pool = _Pool(1)
        # Items in the order the thread takes them, each with its job (or _LOOSE). A
        # SimpleQueue blocks in C: an idle served thread shows no wait of threading's.
        self._real: queue.SimpleQueue[tuple[_Job | _Loose, Any]] = queue.SimpleQueue()
        self._running: _Job | _Loose | None = None  # what the served thread runs now
        self._lock = threading.Lock()
        self._loose = 0  # loose items queued or running: the loop does not control those

    def serve(self, thread: threading.Thread) -> None:
        """Name the thread that will call :meth:`get` before it starts, so that the loop never
        counts it as a thread it does not control."""
        self._loop._served_threads.add(thread)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        loop = self._loop
        if threading.get_ident() == loop._loop_thread and not (loop._failed or loop.is_closed()):
            loop._serve(self, item, sys._getframe(1))
            return
        if threading.get_ident() != loop._loop_thread:
            loop.note_uncontrolled(
                f"requests put on a served thread from another thread ({self.name})"
            )
        self._release(_LOOSE, item)

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """On the served thread: the previous item's body is over; wait for the next one."""
        thread = threading.current_thread()
        self._loop._served[thread.ident or 0] = (thread, self)
        self._loop._served_threads.add(thread)
        self._over()
        job, item = self._real.get(block, timeout)
        self._running = job
        if isinstance(job, _Job):
            job.thread = thread
            self._loop._body_threads[thread.ident or 0] = job
            job.started.set()
        return item

    def empty(self) -> bool:
        return self._real.empty()

    def qsize(self) -> int:
        return self._real.qsize()

    def _release(self, job: _Job | _Loose, item: Any) -> None:
        if job is _LOOSE:
            with self._lock:
                self._loose += 1
        self._real.put((job, item))

    def _over(self) -> None:
        running, self._running = self._running, None
        if running is _LOOSE:
            with self._lock:
                self._loose -= 1
        elif isinstance(running, _Job):
            self._loop._body_threads.pop(threading.get_ident(), None)
            running.finished.set()


# -- the loop ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Arrival:
    handle: asyncio.Handle
    since: int
    at: float
    kind: str  # "hand-back" of a job, or "callback" from a thread
    actor: str | None = None  # the decision's name, if not its source's (a served thread's job)


class ControlledLoop(asyncio.SelectorEventLoop):
    """The selector event loop, with jobs, timers and foreign callbacks decided by ``strategy``.

    Use it as a loop factory: ``asyncio.Runner(loop_factory=lambda: ControlledLoop(strategy))``.
    :attr:`execution` holds the decisions and the coverage of everything run on it so far.
    Invariant: between two decisions at most one thing runs, the loop's callback or one job body,
    except a thread the loop does not control (counted in :attr:`Execution.uncontrolled`).
    """

    # asyncio's private state, which this loop's turn runs (typeshed does not declare it). A
    # handle's _run, _cancelled and _when are as asyncio's own _run_once uses them.
    _ready: deque[Any]
    _scheduled: list[Any]
    _stopping: bool
    _selector: selectors.BaseSelector
    _ssock: socket.socket
    _timer_cancelled_count: int
    _clock_resolution: float
    _read_from_self: Callable[[], None]
    _process_events: Callable[[list[tuple[selectors.SelectorKey, int]]], None]
    _write_to_self: Callable[[], None]
    _check_closed: Callable[[], None]
    _default_executor: concurrent.futures.Executor | None

    def __init__(
        self,
        strategy: Strategy,
        *,
        horizon: float = HORIZON,
        settle_timeout: float = SETTLE_TIMEOUT,
        max_turns: int = MAX_TURNS,
    ) -> None:
        super().__init__()
        install_drivers()
        self.strategy = strategy
        self.execution = Execution()
        self._horizon = horizon
        self._settle_timeout = settle_timeout
        self._max_turns = max_turns
        self._now = START_TIME
        self._seq = 0
        self._default_pool = _Pool(DEFAULT_WORKERS)
        self._pools: dict[int, _Pool] = {}
        self._jobs: list[_Job] = []  # every job not OVER, in submission order
        self._arrivals: dict[str, deque[_Arrival]] = {}
        # From other threads: (source, handle, kind, actor), see _Arrival.
        self._inbox: deque[tuple[str, asyncio.Handle, str, str | None]] = deque()
        self._workers: list[_Worker] = []
        self._idle_workers: list[_Worker] = []
        self._body_threads: dict[int, _Job] = {}  # thread ident -> the job it runs
        self._thread_names: dict[int, str] = {}
        # The threads, not their idents: an ident is reused once its thread has ended, and a
        # new thread under an old ident is not one that was here before.
        self._baseline_threads = set(threading.enumerate())
        self._names: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = (
            weakref.WeakKeyDictionary()
        )  # task -> spawn path; weakly, and without a done callback that would add a step
        self._children: dict[str, int] = {}
        self._counters: dict[str, int] = {}
        self._timer_names: dict[int, str] = {}
        # Loops run in the thread that made them (asyncio.Runner, pytest-asyncio): a call from
        # it is the loop's own, even between two run_until_complete calls.
        self._loop_thread = threading.get_ident()
        self._noted_threads: set[str] = set()
        self._failed = False
        self._joined_at: list[float] = []
        self._advanced = False
        self._on_over: dict[_Job, list[asyncio.Future[None]]] = {}
        self._peers: dict[int, _Watched] = {}  # fd -> a watched socket's far end
        self._lock_asked = 0.0  # when the server was last asked about a lock held outside
        self._lock_waited_since = 0.0  # since when the run has waited on one (0: it does not)
        self._peer_epoch = 0  # moves whenever a watched server finished some work
        self._queues: list[ServedQueue] = []
        # Served thread ident -> that thread and its queue (an ident outlives its thread).
        self._served: dict[int, tuple[threading.Thread, ServedQueue]] = {}
        self._served_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    # -- time ------------------------------------------------------------------------------------

    def time(self) -> float:
        return self._now

    # -- names -----------------------------------------------------------------------------------

    def _owner(self) -> str:
        task = asyncio.current_task(self) if self._loop_thread == threading.get_ident() else None
        return self._names.get(task, LOOP) if task is not None else LOOP

    def _count(self, key: str) -> int:
        n = self._counters.get(key, 0) + 1
        self._counters[key] = n
        return n

    def create_task(  # type: ignore[override]  # typeshed's overloads, one behaviour
        self, coro: Any, *, name: str | None = None, context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        task = super().create_task(coro, name=name, context=context)
        parent = self._owner()
        label = getattr(coro, "__qualname__", type(coro).__name__).rsplit(".", 1)[-1]
        if parent == LOOP:
            path = f"{label}{self._count('root:' + label)}"
        else:
            path = f"{parent}/{label}{self._count(parent + '/' + label)}"
        self._names[task] = path
        return task

    def task_name(self, task: asyncio.Task[Any]) -> str:
        """A task's spawn path, e.g. ``test_cancel1/run_task1``: stable for an interleaving."""
        return self._names.get(task, task.get_name())

    # -- worker-thread jobs ----------------------------------------------------------------------

    def run_in_executor(
        self, executor: concurrent.futures.Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        self._check_closed()
        if executor is None:
            executor = self._default_executor  # set_default_executor's, if any
        if executor is None:
            pool = self._default_pool
        elif type(executor).submit is concurrent.futures.ThreadPoolExecutor.submit:
            pool = self._pools.setdefault(id(executor), _Pool(executor._max_workers))  # type: ignore[attr-defined]
        else:
            # A process pool, or a thread pool whose submit does more than queue the job (an
            # instrumented one): its jobs run as it says, out of the loop's control.
            self.note_uncontrolled(
                f"jobs of an executor racetape cannot see into ({type(executor).__name__})"
            )
            return super().run_in_executor(executor, func, *args)
        owner = self._owner()
        where = _where(sys._getframe(1))
        name = f"{owner}>job@{where}#{self._count(owner + '>job@' + where)}"
        future = self.create_future()
        job = _Job(
            name,
            (lambda: func(*args)) if args else func,
            future,
            pool,
            self._next_seq(),
            self._now,
        )
        pool.queue.append(job)
        self._jobs.append(job)
        self.execution.jobs += 1
        future.add_done_callback(lambda f: self._awaiter_done(job))
        self._pick_up(pool)
        return future

    def served_queue(self, name: str, *, skip: tuple[str, ...] = ()) -> ServedQueue:
        """A new served thread's request queue (see :class:`ServedQueue`): its requests are named
        ``owner>name@file:line#n``, ``file:line`` the first frame outside racetape, asyncio and
        the folders in ``skip`` (the driver's own)."""
        served = ServedQueue(self, name, f"served:{name}#{len(self._queues) + 1}", skip)
        self._queues.append(served)
        return served

    def _serve(self, served: ServedQueue, item: Any, frame: FrameType | None) -> None:
        owner = self._owner()
        where = _where(frame, served._skip)
        key = f"{owner}>{served.name}@{where}"
        job = _Job(
            f"{key}#{self._count(key)}",
            lambda: None,
            None,
            served._pool,
            self._next_seq(),
            self._now,
            served=served,
            item=item,
        )
        served._pool.queue.append(job)
        self._jobs.append(job)
        self.execution.jobs += 1
        self._pick_up(served._pool)

    def _awaiter_done(self, job: _Job) -> None:
        # As wrap_future's _call_check_cancel: a cancel reaches the job only once this callback
        # runs, and stops it only if no worker has picked it up yet.
        if job.future is not None and job.future.cancelled() and job.state is _JobState.QUEUED:
            job.pool.queue.remove(job)
            self._over(job)

    def _pick_up(self, pool: _Pool) -> None:
        """Free workers take queued jobs at once, oldest first, as a thread pool's do."""
        while pool.queue and pool.busy < pool.workers:
            job = pool.queue.popleft()
            pool.busy += 1
            job.state = _JobState.PICKED

    def _run_body(self, job: _Job) -> None:
        if job.served is not None:
            job.served._release(job, job.item)  # its thread takes it, and only it, now
            job.released = True
            job.item = None
            self._settle_job(job)
            return
        worker = self._idle_workers.pop() if self._idle_workers else self._new_worker()
        job.thread = worker
        worker.give(job)
        self._body_threads[worker.ident or 0] = job
        self._settle_job(job)

    def _new_worker(self) -> _Worker:
        worker = _Worker(len(self._workers))
        worker.start()
        self._workers.append(worker)
        return worker

    def _settle_job(self, job: _Job, *, run_on: bool = False) -> None:
        """Wait until the job's body has finished, or is blocked on what the loop must do, or
        (unless ``run_on``: nothing else can happen) waits on a database lock that another
        actor holds (a driver adapter says so, see ``racetape._engine.drivers.lock_wait``)."""
        started = time.monotonic()
        deadline = started + self._settle_timeout
        probe_at = started + LOCK_PROBE
        while not job.finished.wait(0.0002):
            thread = job.thread  # a served thread sets it when it takes the item
            if thread is not None and not thread.is_alive():
                break  # a served thread that ended after its last body
            blocked, wakes = _blocked_on(thread) if thread is not None else (False, None)
            if blocked and (wakes is None or not wakes()):
                if wakes is None:
                    self.note_uncontrolled(
                        "a worker-thread job waiting on a lock racetape cannot see"
                    )
                job.state = _JobState.PARKED
                job.wakes_when = wakes
                return
            if thread is not None and not run_on and time.monotonic() >= probe_at:
                wait = lock_wait(thread)
                if wait is not None and not wait.over():
                    # Blocked in the database's own busy wait: it goes on once the holder's
                    # transaction ends, which only a later decision can bring about.
                    job.state = _JobState.PARKED
                    job.wakes_when = wait.over
                    job.lock_wait = wait
                    job.parked_at = self._now
                    self.execution.lock_waits += 1
                    return
                probe_at = time.monotonic() + LOCK_PROBE
            if time.monotonic() > deadline:
                self._failed = True
                raise Hung(
                    f"the body of {job.name} has run {self._settle_timeout:g} s without"
                    " finishing or waiting on the loop"
                )
        self._job_finished(job)

    def _job_finished(self, job: _Job) -> None:
        job.lock_wait = None
        if job.served is not None:
            # What the served thread called back during the body is already on its way, in the
            # thread's order, its first callback being the hand-back: no hand-back of our own.
            assert job.thread is not None
            self._body_threads.pop(job.thread.ident or 0, None)
            job.pool.busy -= 1
            job.state = _JobState.DONE
            self._take_inbox()
            self._pick_up(job.pool)
            self._over(job)
            return
        worker = job.thread
        assert isinstance(worker, _Worker)
        self._body_threads.pop(worker.ident or 0, None)
        self._idle_workers.append(worker)
        job.pool.busy -= 1
        job.state = _JobState.DONE
        self._pick_up(job.pool)
        self._take_inbox()  # what the body queued comes before its result, as it did
        handle = asyncio.Handle(self._hand_back, (job,), self, None)
        self._arrivals.setdefault(job.name, deque()).append(
            _Arrival(handle, self._next_seq(), self._now, "hand-back")
        )

    def _over(self, job: _Job) -> None:
        job.state = _JobState.OVER
        self._jobs.remove(job)
        for done in self._on_over.pop(job, []):
            if not done.done():
                done.set_result(None)

    def _hand_back(self, job: _Job) -> None:
        self._over(job)
        future = job.future
        if future is None or future.cancelled():
            return
        if job.error is not None:
            future.set_exception(job.error)
        else:
            future.set_result(job.result)
        job.error = None  # no cycle through the traceback

    def _check_parked(self) -> None:
        """A parked body whose wait is over runs on, alone, until it finishes or waits again."""
        for job in [j for j in self._jobs if j.state is _JobState.PARKED]:
            ended = job.thread is not None and not job.thread.is_alive()
            over = job.finished.is_set() or ended
            woken = job.wakes_when is not None and job.wakes_when()
            if over and not woken and job.lock_wait is not None:
                # It went on while the holder still held its transaction: it was slow, not
                # blocked, or its busy timeout ran out in real time; either way the moment it
                # finished was the machine's, not a decision.
                self.note_uncontrolled("a body parked on a database lock that went on by itself")
            if over or woken:
                job.state = _JobState.PICKED
                self._settle_job(job)

    # -- watched sockets (a driver's connection to its server) ------------------------------------

    def name_for(self, kind: str, *, library: str = "") -> str:
        """A name for something the current task makes here (a connection): its spawn path,
        ``kind`` and the user's ``file:line`` (outside ``library``, the driver's own folder),
        as worker-thread jobs are named."""
        owner = self._owner()
        where = _where(sys._getframe(1), (library,) if library else ())
        return f"{owner}>{kind}@{where}#{self._count(owner + '>' + kind + '@' + where)}"

    def watch(self, fd: int, peer: Peer) -> None:
        """Decide when what arrives on socket ``fd`` from ``peer`` is read (a decision, kind
        ``answer``), and wait for every answer ``peer`` owes before the next step. Called by a
        driver adapter (``racetape.drivers``) when a connection is made under this loop."""
        self._peers[fd] = _Watched(peer)

    def defer(self, source: str, action: Callable[[], None]) -> None:
        """Run ``action`` (a driver's send of a request) when a decision says, after every
        action deferred earlier from ``source``: as a slow network may hold bytes back. Called
        from the loop's thread."""
        handle = asyncio.Handle(action, (), self, None)
        label = f"{source}#{self._count('request:' + source)}"
        arrival = _Arrival(handle, self._next_seq(), self._now, "request", label)
        self._arrivals.setdefault(source, deque()).append(arrival)

    def interrupted(self, name: str) -> None:
        """A request to interrupt the server's work for the watched peer named ``name`` (a
        cancel) reached the server. Called by a driver adapter from a decision's action. The
        server now answers that peer's request, with an error or its result, whatever lock it
        waited on: the loop waits for that answer before its next step, as for any other (for
        up to :data:`INTERRUPT_GRACE`: a request still waiting on its lock then took no cancel).
        """
        for watched in self._peers.values():
            if watched.peer.name == name and watched.peer.owed():
                watched.blocked, watched.interrupted = None, True
        self._peer_epoch += 1

    def flush_deferred(self, source: str) -> None:
        """Run, now and in order, every action still deferred from ``source`` (a connection
        that closes sends what it was given first, as a transport flushes its buffer)."""
        for arrival in self._arrivals.pop(source, deque()):
            arrival.handle._run()

    def _check_peers(self) -> None:
        """Wait for what the watched servers owe; offer what they sent as arrivals."""
        for fd, watched in list(self._peers.items()):
            peer = watched.peer
            if peer.closed():
                del self._peers[fd]
                self._peer_epoch += 1  # a connection gone releases its locks
                continue
            if peer.owed():
                if watched.blocked is not None and watched.blocked_epoch == self._peer_epoch:
                    continue
                if not self._settle_peer(fd, watched):
                    continue
            elif not watched.readable:
                continue
            if watched.arrival is not None or not self._reads(fd):
                continue
            pending = _peek(fd)
            if pending and not peer.answered(pending) and not _at_eof(fd):
                continue  # a message still on its way (unasked-for: a notification)
            if not pending and not _at_eof(fd):
                watched.readable = False  # read already: nothing to offer
                continue
            reader = self._selector.get_key(fd).data[0]
            if pending and (reader, len(pending)) == watched.offered:
                # Offered and read already, to the same reader: a driver whose reader only
                # wakes its task (psycopg) has yet to take these bytes.
                continue
            if pending and not peer.owed():
                self.note_uncontrolled(f"messages {peer.name} sent unasked (read when they arrive)")
            watched.offered = (reader, len(pending))
            handle = asyncio.Handle(self._read_peer, (fd, watched), self, None)
            label = f"{peer.name} answer#{self._count('answer:' + peer.name)}"
            watched.arrival = _Arrival(handle, self._next_seq(), self._now, "answer", label)
            self._arrivals.setdefault(peer.name, deque()).append(watched.arrival)

    def _settle_peer(self, fd: int, watched: _Watched) -> bool:
        """Wait, in real time, until the server has answered all ``watched`` owes (True) or
        its work waits on a lock another connection holds (False: the schedule moves on)."""
        peer = watched.peer
        start = time.monotonic()
        deadline = start + self._settle_timeout
        # A request not answered within 2 ms may wait on a lock; one found waiting before is
        # asked about at once.
        ask_at = start if watched.blocked is not None else start + 0.002
        if watched.interrupted:
            ask_at = start + INTERRUPT_GRACE  # interrupted: it answers, whatever it waited on
        grown_at, size = start, -1
        while True:
            pending = _peek(fd)
            if not peer.owed() or peer.answered(pending) or _at_eof(fd):
                watched.blocked, watched.interrupted = None, False
                if len(pending) != watched.answered_size:  # the server did new work
                    watched.answered_size = len(pending)
                    self._peer_epoch += 1
                return True
            now = time.monotonic()
            if len(pending) != size:
                grown_at, size = now, len(pending)
            elif size >= _FULL_SOCKET and now - grown_at > 0.02:
                # An answer larger than the socket holds: the server waits for the driver to
                # read. This connection's reads go back to the selector, and the run says so.
                del self._peers[fd]
                self.note_uncontrolled(
                    f"reads of {peer.name} (an answer larger than the socket holds)"
                )
                return False
            if now >= ask_at:
                why = peer.blocked()
                watched.interrupted = False  # asked: from now on, as any other request
                if why is not None:
                    watched.blocked, watched.blocked_epoch = why, self._peer_epoch
                    return False
                ask_at = now + 0.005
            if now > deadline:
                self._failed = True
                raise Hung(
                    f"{peer.name} has not answered within {self._settle_timeout:g} s and waits"
                    f" on nothing the server names: {self._waiting()}"
                )
            _wait_readable(fd, 0.0005)

    def _reads(self, fd: int) -> bool:
        """Whether the driver reads ``fd`` now (a reader is registered)."""
        try:
            key = self._selector.get_key(fd)
        except (KeyError, ValueError):
            return False
        reader = key.data[0]
        return reader is not None and not reader._cancelled

    def _read_peer(self, fd: int, watched: _Watched) -> None:
        """The decided read: the driver's reader runs, as the selector would have run it."""
        watched.arrival = None
        watched.readable = False
        watched.answered_size = -1
        try:
            reader = self._selector.get_key(fd).data[0]
        except (KeyError, ValueError):
            return
        if reader is None or reader._cancelled:
            return  # the driver stopped reading; what is pending waits for its next read
        pending = _peek(fd)
        watched.peer.reading(pending)
        reader._run()
        if not _unread(fd):
            watched.offered = None  # all taken: the next answer is new, whatever its size
        if watched.peer.whole_reads and self._peers.get(fd) is watched and _unread(fd):
            # The driver read part of what was there: which answers it has seen is no longer
            # known, so this connection's reads go back to the selector, and the run says so.
            del self._peers[fd]
            self.note_uncontrolled(
                f"reads of {watched.peer.name} (a driver read part of an answer)"
            )

    def _blocked_peers(self) -> list[_Watched]:
        return [w for w in self._peers.values() if w.blocked is not None and w.peer.owed()]

    # -- callbacks from other threads ------------------------------------------------------------

    def call_soon_threadsafe(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if threading.get_ident() == self._loop_thread:
            return self.call_soon(callback, *args, context=context)
        self._check_closed()
        handle = asyncio.Handle(callback, args, self, context)
        ident = threading.get_ident()
        job = self._body_threads.get(ident)
        thread, served = self._served.get(ident, (None, None))
        if thread is not threading.current_thread():
            served = None  # a new thread that has a served thread's old ident
        kind, actor = "callback", None
        if job is not None and job.served is not None:
            # A served thread's requests share one arrival queue: one thread's order is kept.
            source, actor = job.served.source, job.name
            if not job.handed_back:
                job.handed_back = True
                kind = "hand-back"
        elif job is not None:
            source = job.name  # the same queue as its hand-back: one thread's order is kept
        elif served is not None:
            source, actor = served.source, served.name  # a loose item's (already counted)
        else:
            source = f"thread:{self._foreign_name(threading.current_thread())}"
        self._inbox.append((source, handle, kind, actor))
        self._write_to_self()
        return handle

    def _foreign_name(self, thread: threading.Thread) -> str:
        ident = thread.ident or 0
        if ident not in self._thread_names:
            target = getattr(thread, "_target", None)
            label = getattr(target, "__qualname__", None) or type(thread).__name__
            self._thread_names[ident] = f"{label}#{len(self._thread_names) + 1}"
        return self._thread_names[ident]

    def _take_inbox(self) -> None:
        while self._inbox:
            source, handle, kind, actor = self._inbox.popleft()
            if source.startswith("thread:"):
                self.note_uncontrolled("callbacks from threads racetape does not control")
            self._arrivals.setdefault(source, deque()).append(
                _Arrival(handle, self._next_seq(), self._now, kind, actor)
            )

    # -- timers ----------------------------------------------------------------------------------

    def call_at(
        self,
        when: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        timer = super().call_at(when, callback, *args, context=context)
        if threading.get_ident() == self._loop_thread:
            owner = self._owner()
            where = _where(sys._getframe(1))
            self._timer_names[id(timer)] = (
                f"{owner}>timer@{where}#{self._count(owner + '>timer@' + where)}"
            )
            self.execution.timers += 1
        return timer

    def _purge_cancelled_timers(self) -> None:
        """asyncio's own rule, which this loop's turn replaces: once most timers are cancelled,
        rebuild the heap without them, so a long run's cancelled timeouts do not pile up."""
        count = len(self._scheduled)
        if (
            count > _MIN_SCHEDULED_TIMER_HANDLES
            and self._timer_cancelled_count / count > _MIN_CANCELLED_TIMER_HANDLES_FRACTION
        ):
            kept = []
            for timer in self._scheduled:
                if timer._cancelled:
                    timer._scheduled = False
                    self._timer_names.pop(id(timer), None)
                else:
                    kept.append(timer)
            heapq.heapify(kept)
            self._scheduled = kept
            self._timer_cancelled_count = 0

    def _drop_cancelled_timers(self) -> None:
        while self._scheduled and self._scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            timer = heapq.heappop(self._scheduled)
            timer._scheduled = False
            self._timer_names.pop(id(timer), None)

    def _move_due_timers(self) -> None:
        end = self._now + self._clock_resolution
        while self._scheduled:
            self._drop_cancelled_timers()
            if not self._scheduled or self._scheduled[0]._when >= end:
                break
            timer = heapq.heappop(self._scheduled)
            timer._scheduled = False
            self._timer_names.pop(id(timer), None)
            self._ready.append(timer)

    def _owed_since(self) -> float | None:
        """Virtual time at which the oldest work still owed by a controlled thread began (a body
        parked on the loop is not owed: it waits for the loop), or that of an arrival already
        joined this turn: a timer joins the same turn only if it could have come due while that
        work was still on its way."""
        times = [j.submitted_at for j in self._jobs if j.state is not _JobState.PARKED]
        # A body parked on a database lock gives up at its busy timeout: time may reach that
        # point and no further, as the database's own clock would.
        times += [
            j.parked_at + max(0.0, j.lock_wait.timeout - self._horizon)
            for j in self._jobs
            if j.state is _JobState.PARKED and j.lock_wait is not None
        ]
        times += [pending[0].at for pending in self._arrivals.values() if pending]
        times += self._joined_at
        return min(times) if times else None

    # -- decisions -------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def note_uncontrolled(self, what: str) -> None:
        """Count ``what`` (a phrase: "asyncpg connections over TLS") in this run's coverage as
        something the loop could not decide: the run is then ``partly uncontrolled`` and says
        so, never clean. A driver adapter calls it for what it cannot see into."""
        self.execution.uncontrolled[what] = self.execution.uncontrolled.get(what, 0) + 1

    def _external(self) -> tuple[list[tuple[int, Candidate, Callable[[], None]]], bool]:
        """Everything that may happen now besides the loop's own next step, oldest first.

        An event owed for ``horizon`` of virtual time or more is no longer a choice: it alone
        is returned, with True, and happens now. A thread runs beside a busy loop too, so a
        job's body is never put off for ever by a loop that keeps itself busy (a ``sleep(0)``
        poll).
        """
        self._take_inbox()
        if self._peers:
            self._check_peers()
        found: list[tuple[int, Candidate, Callable[[], None], float]] = []
        for job in self._jobs:
            if job.state is _JobState.PICKED:
                candidate = Candidate(job.name, "body", job.since)
                found.append((job.since, candidate, _bind(self._run_body, job), job.submitted_at))
        for source, pending in self._arrivals.items():
            if pending:
                head = pending[0]
                candidate = Candidate(head.actor or source, head.kind, head.since)
                found.append((head.since, candidate, _bind(self._deliver, source), head.at))
        found.sort(key=lambda entry: entry[0])
        overdue = [entry for entry in found if entry[3] + self._horizon <= self._now]
        return [entry[:3] for entry in (overdue[:1] or found)], bool(overdue)

    def _deliver(self, source: str) -> None:
        pending = self._arrivals[source]
        arrival = pending.popleft()
        if not pending:
            del self._arrivals[source]
        self._joined_at.append(arrival.at)
        self._ready.append(arrival.handle)

    def _advance(self) -> tuple[Candidate, Callable[[], None], float] | None:
        """Moving virtual time to the next deadline, if it may move now, and by how much."""
        self._drop_cancelled_timers()
        if not self._scheduled:
            return None
        head = self._scheduled[0]
        owed = self._owed_since()
        if owed is not None and head._when > owed + self._horizon:
            return None
        name = self._timer_names.get(id(head), "timer")
        delta = max(0.0, head._when - self._now)
        candidate = Candidate(name, f"fire +{delta * 1e3:.3f}ms", self._seq + 1)
        return candidate, _bind(self._fire, head._when), delta

    def _fire(self, when: float) -> None:
        self._now = max(self._now, when)
        self._move_due_timers()
        self._advanced = True

    # -- the turn --------------------------------------------------------------------------------

    def _run_once(self) -> None:
        if self._failed:
            return self._run_plain()
        try:
            self._run_turn()
        except BaseException:
            # Whatever stopped the turn (a deadlock, a diverged replay, an interrupt), the loop
            # goes on without decisions, so that the runner's cleanup can cancel and finish.
            self._failed = True
            raise

    def _run_turn(self) -> None:
        self.execution.turns += 1
        if self.execution.turns > self._max_turns:
            self._failed = True
            raise Hung(f"{self._max_turns} loop turns without finishing: {self._waiting()}")
        self._now += TURN_COST
        install_drivers()  # a driver imported by the run itself: hooked from its next turn
        self._purge_cancelled_timers()
        self._check_parked()
        self._poll_io(0)
        self._move_due_timers()
        # Time may move only when the loop had nothing to run; what joins at this turn start
        # (a hand-back, then a timer) still joins the same turn, as on a loaded machine.
        idle = not self._ready
        self._joined_at = []  # when what joined this turn was first owed
        self._advanced = False
        while True:
            external, forced = self._external()
            if forced:
                external[0][2]()
                self._check_parked()
                continue
            options = [(c, act) for _, c, act in external]
            # Time moves once a turn start: a loop that wakes for one deadline does not sleep
            # through to the next one.
            advance = self._advance() if idle and not self._advanced else None
            if advance is not None:
                if not options and not self._ready and self._uncontrolled():
                    # Only time could move, but a socket or a foreign thread may still answer:
                    # wait for it in real time, as a real loop would (up to settle_timeout), so
                    # that a driver's timeout never fires early because time skipped past an
                    # answer still on its way. What arrives joins this turn, and time then
                    # moves only as far as it may past work still owed (the horizon).
                    self._poll_io(min(advance[2], self._settle_timeout))
                    if self._inbox or self._ready:
                        self._joined_at.append(self._now)
                        continue
                options.append(advance[:2])
            if self._ready:
                options.insert(0, (Candidate(LOOP, "turn", 0), _TURN))
            if not options:
                if self._stopping or not self._wait_for_something():
                    return
                continue
            if len(options) == 1:
                if options[0][1] is _TURN:
                    break
                options[0][1]()  # no choice: not a decision
            elif self._choose(options) is _TURN:
                break
            self._check_parked()
        ntodo = len(self._ready)
        for i in range(ntodo):
            if i:
                self._between_callbacks()
            handle = self._ready.popleft()
            if handle._cancelled:
                continue
            handle._run()
            self._check_parked()
        handle = None  # breaks a cycle through an exception, as asyncio does

    def _choose(
        self, options: list[tuple[Candidate, Callable[[], None]]], *, mid_turn: bool = False
    ) -> Callable[[], None]:
        candidates = [c for c, _ in options]
        step = len(self.execution.decisions)
        chosen = self.strategy.choose(step, candidates)
        index = candidates.index(chosen)
        self.execution.decisions.append(chose(step, candidates, index, mid_turn=mid_turn))
        action = options[index][1]
        if action is not _TURN:
            action()
        return action

    def _between_callbacks(self) -> None:
        """Threads run while the loop does: a job may move, a foreign callback may arrive."""
        while True:
            external, forced = self._external()
            if not external:
                return
            if forced:
                external[0][2]()
                self._check_parked()
                continue
            options = [(Candidate(LOOP, "step", 0), _TURN)]
            options += [(c, act) for _, c, act in external]
            if self._choose(options, mid_turn=True) is _TURN:
                return
            self._check_parked()

    def _poll_io(self, timeout: float | None) -> None:
        """Socket events join the ready queue as asyncio's would (not decided); the loop's own
        wake-up pipe is drained here, not through a callback that would add a step."""
        events = self._selector.select(timeout)
        own = self._ssock.fileno()
        theirs = []
        withheld = False
        for key, mask in events:
            if key.fd == own:
                self._read_from_self()
                continue
            watched = self._peers.get(key.fd) if not self._failed else None
            if watched is not None and mask & selectors.EVENT_READ:
                watched.readable = True  # read when a decision says (_check_peers)
                withheld = True
                mask &= ~selectors.EVENT_READ
                if not mask:
                    continue
            theirs.append((key, mask))
        if theirs:
            if any(key.fd not in self._peers for key, _ in theirs):
                self.note_uncontrolled("socket readiness (not decided)")
            self._process_events(theirs)
        elif withheld and timeout:
            time.sleep(min(timeout, 0.0005))  # the withheld socket stays ready: do not spin

    def _foreign_threads(self) -> list[threading.Thread]:
        """Threads started since the loop was made that the loop does not run: uncontrolled."""
        ours = {w.ident for w in self._workers}
        found = [
            t
            for t in threading.enumerate()
            if t not in self._baseline_threads
            and t.ident not in ours
            and t not in self._served_threads
            and not is_own_thread(t.ident)
            and t.is_alive()
        ]
        for thread in found:
            name = self._foreign_name(thread)
            if name not in self._noted_threads:
                self._noted_threads.add(name)
                self.note_uncontrolled(f"a thread started by hand ({name})")
        return found

    def _sockets(self) -> bool:
        """A socket the loop does not watch is registered."""
        own = self._ssock.fileno()
        return any(
            key.fd != own and key.fd not in self._peers for key in self._selector.get_map().values()
        )

    def _locked_outside(self) -> list[_Watched]:
        """Watched connections waiting on a lock that a connection outside the run holds."""
        ours = {w.peer.ident for w in self._peers.values()}
        return [w for w in self._blocked_peers() if not w.peer.holders() <= ours]

    def _uncontrolled(self, *, counting_locks: bool = True) -> bool:
        """Something the loop does not control could still make something happen (with
        ``counting_locks``: a lock held outside the run, which its holder may let go)."""
        loose = any(served._loose for served in self._queues)
        if loose or self._foreign_threads() or self._sockets():
            return True
        return counting_locks and bool(self._locked_outside())

    def _wait_for_something(self) -> bool:
        """Nothing can happen under control: wait for what is not controlled, or fail."""
        if not self._locked_outside():
            self._lock_waited_since = 0.0
        if not self._uncontrolled(counting_locks=False):
            self._check_lock_cycle()
        if self._uncontrolled():
            deadline = time.monotonic() + self._settle_timeout
            while time.monotonic() < deadline:
                self._poll_io(0.01)
                if self._inbox or self._ready:
                    return True
                outside = self._locked_outside()
                if outside and time.monotonic() >= self._lock_asked + 0.005:
                    # Ask the server again (the holder may be done), within one deadline
                    # across these waits: a lock held outside the run ends the run Hung.
                    self._lock_asked = time.monotonic()
                    self._lock_waited_since = self._lock_waited_since or self._lock_asked
                    if self._lock_asked - self._lock_waited_since > self._settle_timeout:
                        self._failed = True
                        raise Hung(
                            f"{outside[0].peer.name} has waited {self._settle_timeout:g} s on"
                            f" {outside[0].blocked}, outside the run: {self._waiting()}"
                        )
                    self._peer_epoch += 1
                    return True
                if not self._uncontrolled():
                    break
            else:
                self._failed = True
                raise Hung(
                    "nothing came from the threads or sockets racetape does not control within"
                    f" {self._settle_timeout:g} s: {self._waiting()}"
                )
        if self._inbox or self._ready:
            return True
        waiting = [j for j in self._jobs if j.state is _JobState.PARKED and j.lock_wait]
        if waiting:
            # The holder of the lock will not let go while nothing else happens: the body runs
            # on to its own busy timeout ("database is locked"), as on a real machine.
            waiting[0].state = _JobState.PICKED
            self._settle_job(waiting[0], run_on=True)
            return True
        self._failed = True
        parked = [j.name for j in self._jobs if j.state is _JobState.PARKED]
        if parked:
            raise Deadlock(
                f"worker-thread jobs wait on the loop, and nothing on the loop can go:"
                f" {', '.join(parked)}; {self._waiting()}"
            )
        raise Deadlock(f"nothing can happen and the run has not finished: {self._waiting()}")

    def _check_lock_cycle(self) -> None:
        """Nothing in the run can go: a server connection waiting on a lock that another of
        the run's connections holds will wait for ever (the server's own deadlock detector
        would end it with an error after its timeout): a :class:`Deadlock`, naming both."""
        blocked = self._blocked_peers()
        if not blocked:
            return
        ours = {w.peer.ident: w.peer.name for w in self._peers.values()}
        waits = []
        for watched in blocked:
            holders = watched.peer.holders()
            if not holders or not holders <= ours.keys():
                return  # a lock held outside the run: wait for it, in real time
            names = ", ".join(ours[h] for h in sorted(holders))
            waits.append(f"{watched.peer.name} waits on a lock held by {names}")
        self._failed = True
        raise Deadlock(
            f"database connections wait on each other: {'; '.join(waits)}; {self._waiting()}"
        )

    def _waiting(self) -> str:
        """Who waits on whom, for a deadlock or hang report."""
        parts = []
        for task in sorted(asyncio.all_tasks(self), key=self.task_name):
            where, what = _innermost(task)
            waiter = getattr(task, "_fut_waiter", None)
            if isinstance(waiter, asyncio.Task):
                parts.append(f"{self.task_name(task)} waits on {self.task_name(waiter)} ({where})")
            else:
                parts.append(f"{self.task_name(task)} waits at {where} ({what})")
        return "; ".join(parts) or "no task is left"

    def _run_plain(self) -> None:
        """After a failure: no more decisions, so that cleanup can run (FIFO, time moves on)."""
        self._take_inbox()
        for source in list(self._arrivals):
            while source in self._arrivals:
                self._deliver(source)
        self._release_served()
        for job in list(self._jobs):
            if job.state is _JobState.QUEUED:
                job.pool.queue.remove(job)
                self._over(job)
                if job.future is not None and not job.future.done():
                    job.future.cancel()
        self._poll_io(0)
        if not self._ready and not self._stopping:
            self._drop_cancelled_timers()
            if self._scheduled:
                self._now = max(self._now, self._scheduled[0]._when)
        self._move_due_timers()
        for _ in range(len(self._ready)):
            handle = self._ready.popleft()
            if not handle._cancelled:
                handle._run()

    def _release_served(self) -> None:
        """Undecided requests of served threads go to their threads, uncontrolled: a driver
        runs every request it queued (a connection's close among them), decided or not."""
        for job in list(self._jobs):
            undecided = job.state in (_JobState.QUEUED, _JobState.PICKED) and not job.released
            if job.served is not None and undecided:
                if job.state is _JobState.QUEUED:
                    job.pool.queue.remove(job)
                else:
                    job.pool.busy -= 1
                job.served._release(_LOOSE, job.item)
                self._over(job)

    def run_forever(self) -> None:
        install_drivers()  # a driver imported since the loop was made
        with running():
            super().run_forever()

    # -- closing ---------------------------------------------------------------------------------

    async def shutdown_default_executor(self, *args: Any) -> None:
        """Let every job still owed by the default pool run and hand back, as asyncio's own
        shutdown waits for the pool's threads: a detached write lands before ``asyncio.run``
        returns, at a decided point, instead of never."""
        while not self._failed:  # after a failure nothing is decided: no body would run
            owed = [j for j in self._jobs if j.pool is self._default_pool or j.served]
            if not owed:
                break
            # Awaiting the last one lets the loop go idle, where the strategy runs the bodies.
            await asyncio.wait([_owed_future(self, j) for j in owed])
        await super().shutdown_default_executor(*args)

    def close(self) -> None:
        self._release_served()
        for worker in self._workers:
            worker.give(None)
        super().close()


@dataclass(eq=False)
class _Watched:
    """A watched socket: its peer, and what the loop knows of it."""

    peer: Peer
    readable: bool = False  # the selector said so, and the read is withheld
    arrival: _Arrival | None = None  # the pending decided read
    blocked: str | None = None  # the server's work waits on a lock (the peer's words)
    blocked_epoch: int = -1
    interrupted: bool = False  # a cancel of its request landed: its answer is awaited
    answered_size: int = -1  # the pending bytes when last found answered
    offered: tuple[object, int] | None = None  # the reader and pending bytes last offered


INTERRUPT_GRACE = 0.05
"""Seconds the loop waits for the answer of a request whose cancel reached the server before it
asks again whether the request waits on a lock: a backend that takes the cancel answers at
once; one still waiting on its lock after this did not take it (the cancel came too late)."""

_FULL_SOCKET = 64 * 1024
"""Unread bytes past which an answer that stops growing waits on its reader (a socket buffer's
worth on Linux)."""


def _unread(fd: int) -> int:
    """Bytes waiting to be read on socket ``fd``."""
    import fcntl  # POSIX only: imported where a watched socket needs it
    import termios

    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return 0
    return buf[0]


def _wait_readable(fd: int, timeout: float) -> None:
    poller = select.poll()  # not select(): it refuses descriptors of 1024 and above
    poller.register(fd, select.POLLIN)
    poller.poll(timeout * 1000)


def _at_eof(fd: int) -> bool:
    """The server closed its end (with or without a last message still unread)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLRDHUP)
    try:
        events = poller.poll(0)
    except OSError:
        return True
    hung_up = select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL
    return any(mask & hung_up for _, mask in events) or (bool(events) and not _unread(fd))


def _peek(fd: int) -> bytes:
    """The unread bytes on socket ``fd``, left unread."""
    n = _unread(fd)
    if not n:
        return b""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:  # closed (and its number reused) since it was watched
        return b""
    try:
        return sock.recv(n, socket.MSG_PEEK)
    except OSError:
        return b""
    finally:
        sock.detach()


def _owed_future(loop: ControlledLoop, job: _Job) -> asyncio.Future[None]:
    """Done once ``job`` is over (handed back or dropped), whatever its awaiter did."""
    done = loop.create_future()
    loop._on_over.setdefault(job, []).append(done)
    return done


def _TURN() -> None:
    """The loop's own next step (a turn, or the next callback of one)."""


def _bind(fn: Callable[[Any], None], arg: Any) -> Callable[[], None]:
    return lambda: fn(arg)


__all__ = [
    "HORIZON",
    "Candidate",
    "ControlledLoop",
    "ControlledRunError",
    "Deadlock",
    "Execution",
    "Hung",
    "ServedQueue",
]
