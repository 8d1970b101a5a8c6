"""Controlled mode: a scheduler that owns every control point and lets one actor go at a time.

The loop of :meth:`Scheduler.run`:

1. *settle*: wait until no actor is RUNNABLE: each is parked at a point, ready, blocked on a
   worker-thread job of its own, or done. An actor that does not settle within ``settle_timeout``
   makes the run ``hung`` (reported with the decisions so far), never a silent wait.
2. *resume* the oldest READY actor, if any (no decision: the order is fixed), and go to 1.
3. *choose*: among the parked actors that may go (see :meth:`Scheduler.enabled`) the strategy
   picks one; the choice is recorded by actor name.
4. *release* that one actor; go to 1.

Invariant: at most one actor runs between points. A point that is not a decision is still where
actors take turns: an actor that reaches it while another actor runs or waits its turn (a task
it just spawned, a task it just cancelled, two worker threads started in one step) waits there,
READY; once nothing runs, READY actors go on oldest first (by spawn order, never by who got to
a point first). Without this, actors would run side by side until their next decisions, and
which of them reached the database first would be left to the operating system.

An actor may go unless: the lock its next step ``acquires`` is held by another actor (it would
block inside the database, out of the scheduler's sight); it is a gated actor whose gate is
closed; or an open gate must fire before this very step. Only points in play, and the points a
gate wants (the edges of its cancel window), are decisions; an actor passes straight through any
other point unless it must wait for a lock there.

What an actor may wait on: a control point, a worker-thread job it submitted itself, or the
database. An actor awaiting anything else that only another actor can finish (another task, an
asyncio.Event) looks busy to the scheduler: the run is reported ``hung`` and names it.

Determinism: the state at each decision is the set of parked actors and their points, which does
not depend on timing, because nothing is decided while anything runs. The candidates are
ordered by (step at which they parked, name), so "the first candidate" is first come, first
served, and a recorded list of names replays the same interleaving on any machine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any

from racetape._control import PointInfo, under_controller
from racetape._engine.actors import (
    Actor,
    ActorState,
    EngineError,
    RunAborted,
    SimulatedCrash,
    Tracker,
    current_actor,
    thread_actor,
)
from racetape._engine.schedule import (
    Candidate,
    Decision,
    Gate,
    Schedule,
    Strategy,
    StrategyRefused,
    describe,
)


class _Stalled(Exception):
    pass


class Scheduler(Tracker):
    def __init__(
        self,
        strategy: Strategy,
        *,
        in_play: Iterable[str] | None = None,
        settle_timeout: float = 10.0,
        detail_keys: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.strategy = strategy
        self.in_play = None if in_play is None else frozenset(in_play)
        self.detail_keys = tuple(detail_keys)
        self.settle_timeout = settle_timeout
        self.gates: list[Gate] = []
        self.step = 0
        self._aborting = False

    def watch(self, gate: Gate) -> None:
        """Let ``gate`` observe every point from the start of the run."""
        self.gates.append(gate)

    def _gate_for(self, actor: str, point: str, info: PointInfo) -> Gate | None:
        return next((g for g in self.gates if g.guards(actor, point, info)), None)

    def _gate_of(self, actor: Actor) -> Gate | None:
        """The gate holding ``actor`` back where it waits, if any."""
        if actor.point is None:
            return None
        return self._gate_for(actor.name, actor.point, actor.info)

    # -- the decision loop -----------------------------------------------------------------------

    async def run(self, main: Coroutine[Any, Any, None]) -> Schedule:
        schedule = Schedule()
        with under_controller(self):
            self.start_root(main)
        try:
            while True:
                await self._settle()
                if not self.live():
                    break
                ready = next((a for a in self.actors if a.state is ActorState.READY), None)
                if ready is not None:  # self.actors is in spawn order
                    self._resume(ready)
                    continue
                candidates = self.enabled() or self._late_gates()
                if not candidates:
                    schedule.outcome, schedule.problem = "deadlock", self._deadlock_report()
                    break
                choice = self.strategy.choose(self.step, candidates)
                schedule.decisions.append(self._release(choice, candidates))
        except _Stalled as stalled:
            schedule.outcome, schedule.problem = "hung", str(stalled)
        except StrategyRefused as refused:
            schedule.outcome, schedule.problem = "diverged", str(refused)
        finally:
            if self.live():
                await self._abort()
            schedule.timeline, schedule.errors = self.timeline, self.errors
        return schedule

    async def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_timeout
        while True:
            self._notice_cancellations()
            runnable = [a for a in self.actors if a.state is ActorState.RUNNABLE]
            if not runnable:
                return
            self.changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self.changed.wait()
            except TimeoutError:
                where = ", ".join(f"{a.name} (last at {a.point or 'its start'})" for a in runnable)
                raise _Stalled(
                    f"no progress for {self.settle_timeout:g}s after step {self.step}: still"
                    f" running {where}"
                ) from None

    def _notice_cancellations(self) -> None:
        """An actor waiting whose task was cancelled will run: it is RUNNABLE again."""
        waiting = (ActorState.PARKED, ActorState.READY, ActorState.BLOCKED)
        for actor in self.actors:
            if actor.task is None or actor.state not in waiting:
                continue
            requested = actor.task.cancelling()
            if requested > actor.cancels_seen:
                actor.cancels_seen = requested
                self.note("cancelled", actor, at=actor.point)
                actor.state, actor.blocked_on, actor.wake = ActorState.RUNNABLE, None, None

    def enabled(self) -> list[Candidate]:
        """The parked actors that may go now, first come first."""
        parked = [a for a in self.actors if a.state is ActorState.PARKED]
        open_gates = [
            (a, gate) for a in parked if (gate := self._gate_of(a)) is not None and gate.is_open
        ]
        candidates = []
        for actor in parked:
            assert actor.point is not None
            wanted = actor.info.get("acquires")
            if wanted and any(o is not actor and o.holding == wanted for o in self.actors):
                continue
            gate = self._gate_of(actor)
            if gate is not None and not gate.is_open:
                continue
            if any(
                owner is not actor and g.must_precede(actor.name, actor.point, actor.info)
                for owner, g in open_gates
            ):
                continue
            candidates.append(self._candidate(actor))
        return sorted(candidates, key=lambda c: (c.waiting_since, c.actor))

    def _late_gates(self) -> list[Candidate]:
        """Nothing else can go: gated actors whose window never opened go now, late."""
        late = [
            a for a in self.actors if a.state is ActorState.PARKED and self._gate_of(a) is not None
        ]
        return sorted((self._candidate(a) for a in late), key=lambda c: (c.waiting_since, c.actor))

    def _candidate(self, actor: Actor) -> Candidate:
        assert actor.point is not None
        return Candidate(
            actor.name, describe(actor.point, actor.info, self.detail_keys), actor.parked_step
        )

    def _release(self, choice: Candidate, candidates: Sequence[Candidate]) -> Decision:
        actor = next(a for a in self.actors if a.name == choice.actor)
        gate = self._gate_of(actor)
        landing = None
        if gate is not None:
            landing = gate.landing({a.name for a in self.live()})
            if not gate.is_open:
                landing = f"late ({landing})"
        decision = Decision(
            self.step, actor.name, choice.detail, tuple(c.actor for c in candidates), landing
        )
        self.step += 1
        actor.state = ActorState.RUNNABLE
        wanted = actor.info.get("acquires")
        if isinstance(wanted, str):
            actor.holding = wanted
        self.note("release", actor, point=actor.point, step=decision.step)
        if actor.wake is not None:
            actor.wake.set_result(None)
        elif actor.wake_thread is not None:
            actor.wake_thread.set()
        actor.wake, actor.wake_thread = None, None
        return decision

    def _deadlock_report(self) -> str:
        held = {a.holding: a.name for a in self.actors if a.holding}
        waiting = []
        for actor in self.live():
            wanted = str(actor.info.get("acquires"))
            why = f" (needs {wanted}, held by {held[wanted]})" if wanted in held else ""
            waiting.append(f"{actor.name} at {actor.point}{why}")
        return f"no actor may go after step {self.step}: " + "; ".join(waiting)

    async def _abort(self) -> None:
        """Abandon the run: raise RunAborted at every point; after a short grace, cancel the
        tasks still going (an actor stuck outside any point), so none outlives its run."""
        self._aborting = True
        for actor in self.live():
            actor.aborted = True
            if actor.wake is not None and not actor.wake.done():
                actor.wake.set_exception(RunAborted())
            if actor.wake_thread is not None:
                actor.wake_thread.set()
        grace = min(1.0, self.settle_timeout)
        pending = {a.task for a in self.live() if a.task is not None and not a.task.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace)

    async def crash_others(self, *, then: str) -> None:
        """Every other actor is parked (nothing runs while an actor runs its step): raise the
        crash at its point, then park at the point ``then`` until the next decision, by which
        time the victims have died (each runs to its end at once: no handler catches the
        crash)."""
        for victim in self._victims():
            if victim.wake is not None and not victim.wake.done():
                victim.wake.set_exception(SimulatedCrash())
                victim.state, victim.wake = ActorState.RUNNABLE, None
            elif victim.wake_thread is not None:
                victim.wake_thread.set()
                victim.state, victim.wake_thread = ActorState.RUNNABLE, None
        # Always a decision, whatever the points in play: the restart must not run beside the
        # victims' last steps (their rollbacks).
        me = current_actor.get()
        assert me is not None
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._park(me, then, {}, wake, None)
        await wake

    # -- the controller side: points reached by actors -----------------------------------------

    def _observe(self, actor: Actor, point: str, info: PointInfo) -> None:
        for gate in self.gates:
            gate.observe(actor.name, point, info)

    def _decides(self, actor: Actor, point: str, info: PointInfo) -> bool:
        if (
            self._gate_for(actor.name, point, info) is not None
            or self.in_play is None
            or point in self.in_play
        ):
            return True
        if any(gate.wants_decision(actor.name, point, info) for gate in self.gates):
            return True
        wanted = info.get("acquires")
        return bool(wanted) and any(o is not actor and o.holding == wanted for o in self.actors)

    def _others_going(self, actor: Actor) -> bool:
        """Another actor runs, or waits its turn to: ``actor`` must wait its own."""
        self._notice_cancellations()  # a cancel just issued makes its target run: see it now
        going = (ActorState.RUNNABLE, ActorState.READY)
        return any(o is not actor and o.state in going for o in self.actors)

    def _park(
        self,
        actor: Actor,
        point: str,
        info: PointInfo,
        wake: asyncio.Future[None] | None,
        wake_thread: threading.Event | None,
    ) -> None:
        actor.parked_step = self.step
        holds = info.get("holds")
        actor.holding = holds if isinstance(holds, str) else None
        self._wait(actor, ActorState.PARKED, point, info, wake, wake_thread)

    def _wait(
        self,
        actor: Actor,
        state: ActorState,
        point: str,
        info: PointInfo,
        wake: asyncio.Future[None] | None,
        wake_thread: threading.Event | None,
    ) -> None:
        """``actor`` waits at ``point``: PARKED for a decision, or READY for its turn."""
        actor.state, actor.point, actor.info = state, point, info
        actor.cancels_seen = actor.task.cancelling() if actor.task is not None else 0
        actor.wake, actor.wake_thread = wake, wake_thread
        event = "park" if state is ActorState.PARKED else "wait turn"
        self.note(event, actor, point=describe(point, info, self.detail_keys))
        self.changed.set()

    def _arrive(
        self,
        actor: Actor,
        point: str,
        info: PointInfo,
        wake: asyncio.Future[None] | None,
        wake_thread: threading.Event | None,
    ) -> bool:
        """An actor reached ``point`` (on the loop's thread, whichever side it is on): park it
        for a decision, make it wait its turn, or let it pass (True: it goes on at once)."""
        if self._decides(actor, point, info):
            self._park(actor, point, info, wake, wake_thread)
            return False
        if self._others_going(actor):
            self._wait(actor, ActorState.READY, point, info, wake, wake_thread)
            return False
        self._pass(actor, point, info)
        return True

    def _pass(self, actor: Actor, point: str, info: PointInfo) -> None:
        acquires, holds = info.get("acquires"), info.get("holds")
        actor.holding = (
            acquires if isinstance(acquires, str) else (holds if isinstance(holds, str) else None)
        )
        self.note("pass", actor, point=describe(point, info, self.detail_keys))

    def _resume(self, actor: Actor) -> None:
        """Nothing runs: a READY actor goes on, unless its point became a decision meanwhile
        (a lock it needs was taken, a window opened), in which case it parks there."""
        assert actor.point is not None
        if self._decides(actor, actor.point, actor.info):
            self._park(actor, actor.point, actor.info, actor.wake, actor.wake_thread)
            return
        actor.state = ActorState.RUNNABLE
        self._pass(actor, actor.point, actor.info)
        if actor.wake is not None:
            actor.wake.set_result(None)
        elif actor.wake_thread is not None:
            actor.wake_thread.set()
        actor.wake, actor.wake_thread = None, None

    async def reach(self, point: str, info: PointInfo) -> None:
        actor = current_actor.get()
        if actor is None or actor.tracker is not self:
            raise EngineError(f"control point {point} reached by a task this run did not spawn")
        if self._aborting or actor.aborted:
            raise RunAborted()
        if actor.crashed:
            raise SimulatedCrash()
        self._observe(actor, point, info)
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._arrive(actor, point, info, wake, None):
            return
        try:
            await wake
        except asyncio.CancelledError:
            if actor.state in (ActorState.PARKED, ActorState.READY):
                actor.state, actor.wake = ActorState.RUNNABLE, None
                self.changed.set()
            raise

    def reach_blocking(self, point: str, info: PointInfo) -> None:
        actor = thread_actor()
        if actor is None or actor.tracker is not self:
            raise EngineError(f"control point {point} reached in a thread this run did not start")
        if "acquires" in info or "holds" in info:
            raise EngineError(f"control point {point}: worker-thread points may not declare locks")
        # Whatever this thread hands to the loop from here on is this actor's continuation.
        current_actor.set(actor)
        if self._aborting or actor.aborted:
            raise RunAborted()
        if actor.crashed:
            raise SimulatedCrash()
        assert self.loop is not None
        released = threading.Event()

        def arrive() -> None:
            # Decided on the loop's thread, where every other actor's state changes.
            self._observe(actor, point, info)
            if self._arrive(actor, point, info, None, released):
                released.set()

        self.loop.call_soon_threadsafe(arrive)
        released.wait()
        if actor.aborted:
            raise RunAborted()
        if actor.crashed:
            raise SimulatedCrash()

    # -- tracker hooks -----------------------------------------------------------------------------

    def on_job_submitted(self, creator: Actor, job: Actor) -> None:
        creator.state, creator.blocked_on = ActorState.BLOCKED, job
        if creator.task is not None:
            creator.cancels_seen = creator.task.cancelling()

    def on_finished(self, actor: Actor) -> None:
        for waiter in self.actors:
            if waiter.state is ActorState.BLOCKED and waiter.blocked_on is actor:
                waiter.state, waiter.blocked_on = ActorState.RUNNABLE, None
