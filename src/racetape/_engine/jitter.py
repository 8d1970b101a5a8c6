"""Jitter mode: seeded random delays at the control points, with real OS scheduling.

Nothing is held; at each point an actor sleeps a delay drawn from its own seeded stream (so the
delays do not depend on which thread got there first), and a planned cancel fires a seeded delay
after its window opens. The seed fixes the delays, not the interleaving: the operating system
still decides who runs when, so a jitter outcome is statistical, and a jitter trace is a
statistical replay, not a reproduction. That is the point of this mode: it does what a loaded CI
machine does, for many runs, quickly.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine
from typing import Any

from racetape._control import PointInfo, under_controller
from racetape._engine.actors import (
    Actor,
    ActorState,
    EngineError,
    SimulatedCrash,
    Tracker,
    current_actor,
    thread_actor,
)
from racetape._engine.schedule import Gate, Schedule

STATISTICAL_NOTE = (
    "jitter mode: the seed fixes the delays, not the interleaving; OS scheduling decides the rest,"
    " so outcomes are statistical and a failing seed may not fail again"
)


JITTER_MAX_DELAY = 0.002
"""The longest delay, in seconds, jitter mode sleeps at a point unless told otherwise."""


class Jitter(Tracker):
    def __init__(
        self, seed: int, *, max_delay: float = JITTER_MAX_DELAY, settle_timeout: float = 30.0
    ):
        super().__init__()
        self.seed = seed
        self.max_delay = max_delay
        self.settle_timeout = settle_timeout
        self.gates: list[Gate] = []
        self._streams: dict[str, random.Random] = {}

    def watch(self, gate: Gate) -> None:
        self.gates.append(gate)

    def _delay(self, actor: Actor, scale: float = 1.0) -> float:
        stream = self._streams.get(actor.name)
        if stream is None:
            stream = self._streams[actor.name] = random.Random(f"{self.seed}:{actor.name}")
        # Half the points go straight through: a delay everywhere would only slow every actor.
        return 0.0 if stream.random() < 0.5 else stream.uniform(0, self.max_delay * scale)

    def _observe(self, actor: Actor, point: str, info: PointInfo) -> None:
        for gate in self.gates:
            gate.observe(actor.name, point, info)

    async def reach(self, point: str, info: PointInfo) -> None:
        actor = current_actor.get()
        if actor is None or actor.tracker is not self:
            raise EngineError(f"control point {point} reached by a task this run did not spawn")
        if actor.crashed:
            raise SimulatedCrash()
        self._observe(actor, point, info)
        gate = next((g for g in self.gates if g.guards(actor.name, point, info)), None)
        if gate is not None:
            actor.point = point  # a crash cancels an actor still waiting for its window
            await gate.wait_open()
            actor.point = None
            await asyncio.sleep(self._delay(actor, scale=4.0))
            self.note("fire", actor, landing=gate.landing({a.name for a in self.live()}))
            return
        delay = self._delay(actor)
        if delay:
            await asyncio.sleep(delay)
        if actor.crashed:
            raise SimulatedCrash()

    def reach_blocking(self, point: str, info: PointInfo) -> None:
        actor = thread_actor()
        if actor is None or actor.tracker is not self:
            raise EngineError(f"control point {point} reached in a thread this run did not start")
        current_actor.set(actor)
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._observe, actor, point, info)
        if actor.crashed:
            raise SimulatedCrash()
        delay = self._delay(actor)
        if delay:
            time.sleep(delay)
        if actor.crashed:
            raise SimulatedCrash()

    async def crash_others(self, *, then: str) -> None:
        """Mark every other actor crashed (``then`` is unused: nothing is held here): each dies
        at its next point (an actor waiting for a window is cancelled instead); return once
        they are all gone."""
        victims = self._victims()
        for victim in victims:
            if victim.point is not None and victim.task is not None:
                victim.task.cancel()
        while any(v.state is not ActorState.DONE for v in victims):
            self.changed.clear()
            await self.changed.wait()

    async def run(self, main: Coroutine[Any, Any, None]) -> Schedule:
        """Run ``main`` and everything it spawns until all of it has ended (or the bound passes)."""
        schedule = Schedule()
        with under_controller(self):
            self.start_root(main)
        try:
            async with asyncio.timeout(self.settle_timeout):
                while self.live():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            stuck = ", ".join(a.name for a in self.live())
            schedule.outcome = "hung"
            schedule.problem = f"not settled after {self.settle_timeout:g}s: {stuck}"
            for actor in self.live():
                if actor.task is not None:
                    actor.task.cancel()
        schedule.timeline, schedule.errors = self.timeline, self.errors
        return schedule
