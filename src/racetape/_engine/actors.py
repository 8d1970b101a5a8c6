"""Actors: every task and worker-thread job a run spawns, tracked through public asyncio hooks.

A run's code is observed without being instrumented beyond its named control points:

* the loop's task factory sees every task created by a tracked actor: a new child actor, or,
  when the creator is a worker-thread job handing work back to the loop (the reporter's
  ``run_coroutine_threadsafe``), the job's own continuation (its *delegate*);
* the loop's default executor sees every ``asyncio.to_thread`` / ``run_in_executor(None, ...)``
  job submitted by a tracked actor: a new thread actor, which its submitter awaits.

Names are paths of spawn order, ``main/run1/write2``: stable for a given interleaving on any
machine, so a recorded decision list names the same actors when it is replayed.

Invariant: an actor's state changes only on the event loop's thread; worker threads post their
transitions with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, cast

from racetape._control import PointInfo, current_controller

if TYPE_CHECKING:
    from asyncio.events import _TaskFactory


class ActorState(Enum):
    RUNNABLE = "runnable"  # running, or will run without the scheduler's say
    READY = "ready"  # reached a point while others ran or waited; goes on in spawn order
    PARKED = "parked"  # waiting at a control point for the scheduler
    BLOCKED = "blocked"  # awaiting a worker-thread job it submitted
    DONE = "done"


@dataclass(eq=False)
class Actor:
    name: str
    kind: Literal["task", "thread"]
    parent: Actor | None
    tracker: Tracker
    state: ActorState = ActorState.RUNNABLE
    task: asyncio.Task[Any] | None = None
    point: str | None = None
    info: PointInfo = field(default_factory=dict)
    parked_step: int = 0
    holding: str | None = None
    blocked_on: Actor | None = None
    cancels_seen: int = 0
    wake: asyncio.Future[None] | None = None
    wake_thread: threading.Event | None = None
    aborted: bool = False
    crashed: bool = False
    _spawned: Counter[str] = field(default_factory=Counter)

    def child_name(self, label: str) -> str:
        self._spawned[label] += 1
        return f"{self.name}/{label}{self._spawned[label]}"

    def __repr__(self) -> str:
        return f"<Actor {self.name} {self.state.value} at {self.point}>"


current_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar(
    "racetape.actor", default=None
)
_job = threading.local()


def thread_actor() -> Actor | None:
    """The actor of the worker-thread job running on this thread, if it is tracked."""
    actor: Actor | None = getattr(_job, "actor", None)
    return actor


class RunAborted(BaseException):
    """Raised into actors when the engine abandons a run (hung or deadlocked)."""


class SimulatedCrash(BaseException):
    """Raised into every actor of a run whose process "died": no handler of the reference code
    catches it, as no code runs in a dead process; open transactions roll back as they would."""


class EngineError(RuntimeError):
    """Something the engine cannot model; the message says what and where."""


def _label(target: object) -> str:
    # asyncio.to_thread submits functools.partial(Context.run, func, ...): name the func. A
    # wrapper that says what it wraps (``__wrapped__``, e.g. racetape._engine.perturb's delayed
    # jobs) is named by what it wraps. Bounded: a wrapper may wrap itself.
    for _ in range(32):
        if isinstance(target, functools.partial):
            owner = getattr(target.func, "__self__", None)
            target = target.args[0] if isinstance(owner, contextvars.Context) else target.func
        elif (inner := getattr(target, "__wrapped__", None)) is not None:
            target = inner
        else:
            break
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", "job")
    return str(name).rsplit(".", 1)[-1].strip("_<>") or "job"


class Tracker:
    """Knows every actor of one run. Subclasses decide what happens at control points."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.actors: list[Actor] = []
        self.changed = asyncio.Event()
        self.started_at = time.perf_counter()
        self.timeline: list[dict[str, Any]] = []
        # Task actors that ended with an exception of their own, "name: Type: message" (not
        # the engine's RunAborted or SimulatedCrash, nor a cancellation), in the order they
        # ended: the failures of a run whose target judges by exceptions.
        self.errors: list[str] = []

    # -- bookkeeping -------------------------------------------------------------------------

    def note(self, event: str, actor: Actor, **fields: Any) -> None:
        entry = {"t": round(time.perf_counter() - self.started_at, 6), "event": event}
        entry["actor"] = actor.name
        entry.update(fields)
        self.timeline.append(entry)

    def live(self) -> list[Actor]:
        return [a for a in self.actors if a.state is not ActorState.DONE]

    def _add(self, actor: Actor) -> Actor:
        self.actors.append(actor)
        self.note("spawn", actor, kind=actor.kind)
        self.changed.set()
        return actor

    def start_root(self, main: Coroutine[Any, Any, None]) -> Actor:
        """Start ``main`` as the root actor; call inside the run's controlled context."""
        self.loop = asyncio.get_running_loop()
        install_loop_hooks(self.loop)
        root = self._add(Actor("main", "task", None, self))
        context = contextvars.copy_context()
        context.run(current_actor.set, root)
        root.task = asyncio.Task(main, loop=self.loop, context=context)
        root.task.add_done_callback(lambda task: self._task_ended(root, task))
        return root

    def _task_ended(self, actor: Actor, task: asyncio.Task[Any]) -> None:
        # Retrieve the outcome, so an actor that died of a crash or an abort is on the timeline
        # rather than in asyncio's "exception was never retrieved" log.
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.note("raised", actor, error=type(exc).__name__)
            if not isinstance(exc, RunAborted | SimulatedCrash):
                self.errors.append(f"{actor.name}: {type(exc).__name__}: {exc}")
        self.finished(actor)

    def finished(self, actor: Actor) -> None:
        if actor.state is ActorState.DONE:
            return
        actor.state = ActorState.DONE
        actor.holding = None
        self.note("done", actor)
        self.on_finished(actor)
        self.changed.set()

    def on_finished(self, actor: Actor) -> None:
        """Hook: an actor ended (its task is done, or its job returned)."""

    async def crash_others(self, *, then: str) -> None:
        """Kill every other live actor of the run, as if their process died, and return once
        they are all gone. Only the calling actor (the one that restarts) survives; where the
        controller holds it meanwhile, it is at the point named ``then``."""
        raise NotImplementedError

    def _victims(self) -> list[Actor]:
        me = current_actor.get()
        victims = [a for a in self.live() if a is not me]
        for victim in victims:
            victim.crashed = True
            self.note("crashed", victim, at=victim.point)
        return victims

    def on_job_submitted(self, creator: Actor, job: Actor) -> None:
        """Hook: ``creator`` handed ``job`` to a worker thread and awaits it."""

    # -- loop hooks ------------------------------------------------------------------------------

    def task_created(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context | None,
        creator: Actor,
    ) -> asyncio.Task[Any]:
        context = context or contextvars.copy_context()
        if creator.kind == "thread":
            # A worker thread handing work to the loop and waiting for it: its continuation.
            task = asyncio.Task(coro, loop=loop, context=context)
            self.note("delegate", creator)
            return task
        child = self._add(Actor(creator.child_name(_label(coro)), "task", creator, self))
        context.run(current_actor.set, child)
        task = asyncio.Task(coro, loop=loop, context=context)
        child.task = task
        task.add_done_callback(lambda task: self._task_ended(child, task))
        return task

    def job_submitted(
        self, creator: Actor, fn: Callable[[], Any]
    ) -> tuple[Actor, Callable[[], Any]]:
        """A new thread actor for ``fn``, and the function the executor should run instead."""
        job = self._add(Actor(creator.child_name(_label(fn)), "thread", creator, self))
        self.on_job_submitted(creator, job)
        loop = self.loop
        assert loop is not None

        def run_job() -> Any:
            _job.actor = job
            try:
                return fn()
            finally:
                _job.actor = None
                loop.call_soon_threadsafe(self.finished, job)

        return job, run_job

    def job_future_done(self, job: Actor, future: Future[Any]) -> None:
        """A job cancelled while still queued never runs (its awaiter was cancelled first)."""
        if future.cancelled():
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._never_ran, job)

    def _never_ran(self, job: Actor) -> None:
        self.note("never ran", job)
        self.finished(job)


def current_tracker() -> Tracker | None:
    controller = current_controller()
    return controller if isinstance(controller, Tracker) else None


def _tracked_creator() -> tuple[Tracker, Actor] | None:
    tracker = current_tracker()
    creator = current_actor.get()
    if tracker is None or creator is None or creator.tracker is not tracker:
        return None
    return tracker, creator


class TrackedExecutor(ThreadPoolExecutor):
    """The loop's default executor: tells the run's tracker about every job a tracked actor
    submits. Untracked callers get a plain thread pool. Many workers, because a thread parked at
    a control point keeps its worker until the scheduler lets it go."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        tracked = _tracked_creator()
        if tracked is not None:
            tracker, creator = tracked
            job, run_job = tracker.job_submitted(creator, functools.partial(fn, *args, **kwargs))
            future = super().submit(run_job)
            future.add_done_callback(functools.partial(tracker.job_future_done, job))
            return future
        return super().submit(fn, *args, **kwargs)


_hooked: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def install_loop_hooks(loop: asyncio.AbstractEventLoop) -> None:
    """Install the tracking task factory and default executor on ``loop`` (once; idempotent).

    Both pass through untouched for code that is not part of a tracked run.
    """
    if loop in _hooked:
        return
    previous = loop.get_task_factory()

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        tracked = _tracked_creator()
        if tracked is not None:
            tracker, creator = tracked
            return tracker.task_created(loop, coro, kwargs.get("context"), creator)
        if previous is not None:
            chained: Callable[..., asyncio.Future[Any]] = previous
            return chained(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(cast("_TaskFactory", factory))
    loop.set_default_executor(TrackedExecutor(max_workers=256, thread_name_prefix="racetape"))
    _hooked.add(loop)
