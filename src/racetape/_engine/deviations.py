"""Schedules as deviations from first come, first served, and the search that tries few first.

A controlled loop offers its candidates first come, first served (see :mod:`.loop`): index 0 is
what an unloaded machine does. A schedule is therefore named by the few decisions where it took
another candidate, ``((step, index), ...)``, which is short, exact, and independent of the
strategy that found it: :func:`format_schedule` writes it as ``"3.1"`` or ``"3.1-7.2"`` (``"fifo"``
for none), :func:`parse_schedule` reads it back, and :class:`Deviations` replays it.

:class:`DeviationSearch` serves one run after another (it lives across the runs of one test, as
a shuttle scheduler does): first the schedule with no deviation, then every schedule with one
deviation from it, then schedules with two, each level in an order shuffled by the seed. Most
concurrency bugs need very few deviations (delay-bounded scheduling: Emmi, Qadeer and
Rakamaric, POPL 2011; iterative context bounding: Musuvathi and Qadeer, PLDI 2007), so a race
between two events is found within the first runs of a small test, and a search that runs out
of schedules has tried every interleaving up to its deviation bound and says so.

A search's run may also *hold back* one event (:attr:`Deviations.holds`): the event first come,
first served would take at that step lands only once nothing but it and the clock could go, as
an event that falls behind on a loaded machine (delay-bounded scheduling's delay of a task).
One swap lets one message pass another; a statement is several messages, so another
connection's whole statement getting ahead of a pending request needs that request to fall
behind, and a hold is that at the cost of one deviation. What a run took is still a plain
schedule (:func:`schedule_of`): a replay needs no hold.
"""

from __future__ import annotations

import heapq
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from racetape._engine.loop import LOOP, ControlledRunError
from racetape._engine.schedule import Candidate, Decision, Strategy, chose

Schedule = tuple[tuple[int, int], ...]
"""Deviations from first come, first served: (decision step, candidate index), steps ascending."""

MAX_CHILDREN = 512
"""Schedules one run adds to the next level at most (a sample, drawn by the seed)."""

_Plan = tuple[Schedule, tuple[int, ...]]
"""What the search asks of one run: the deviations it takes, and the steps where it holds the
first-come event back (see :class:`Deviations`)."""

_TOKEN = re.compile(r"^\d+\.\d+(-\d+\.\d+)*$")


class ScheduleError(ValueError):
    """A schedule string that does not parse; the message says what is expected."""


class Diverged(ControlledRunError):
    """A replayed schedule asked for a candidate the run did not offer."""


def format_schedule(schedule: Schedule) -> str:
    return "-".join(f"{step}.{index}" for step, index in schedule) or "fifo"


def parse_schedule(text: str) -> Schedule:
    text = text.strip()
    if text == "fifo":
        return ()
    if not _TOKEN.match(text):
        raise ScheduleError(
            f"{text!r} is not a schedule: expected 'fifo' or deviations STEP.INDEX joined by"
            " '-', e.g. '3.1' or '3.1-7.2' (as a failure prints it)"
        )
    pairs = tuple(
        (int(step), int(index)) for step, index in (part.split(".") for part in text.split("-"))
    )
    steps = [step for step, _ in pairs]
    if steps != sorted(set(steps)) or any(index == 0 for _, index in pairs):
        raise ScheduleError(
            f"{text!r}: steps must ascend, each once, and an index must not be 0 (0 is no"
            " deviation)"
        )
    return pairs


def schedule_of(decisions: Sequence[Decision]) -> Schedule:
    """The deviations a run's decisions took: what replays it."""
    return tuple((d.step, d.index) for d in decisions if d.index)


def _is_timer(actor: str) -> bool:
    return actor == "timer" or ">timer@" in actor


def _holdable(enabled: Sequence[Candidate]) -> bool:
    """Whether the first-come candidate can be held back: it is an event (not the loop's own
    work, not the clock) and another event could go instead of it."""
    first = enabled[0]
    return (
        first.actor != LOOP
        and not _is_timer(first.actor)
        and any(c.actor != LOOP and not _is_timer(c.actor) for c in enabled[1:])
    )


@dataclass
class Deviations:
    """A strategy: first come, first served, except at the schedule's steps, and where it
    holds an event back.

    ``holds`` are steps at which the first-come candidate is held back: from there on it is
    taken only when every other candidate is the clock (a timer), and the hold ends when it is
    taken. A step of ``holds`` that offers nothing :func:`_holdable` is noted in ``diverged``
    (holds are a search's, and lenient).

    A replay is strict: a step that offers fewer candidates than the schedule takes is
    :class:`Diverged`. A search's schedule is ``lenient``: it was derived from an earlier run
    that part of the program, out of the loop's control, may not repeat; there it goes first
    come, first served and notes the step in ``diverged``, and the run's own decisions (what a
    replay takes) are what it did.
    """

    schedule: Schedule = ()
    name: str = "replay"
    lenient: bool = False
    holds: tuple[int, ...] = ()
    diverged: list[int] = field(default_factory=list)
    # What a search learns from the run: what it chose, the steps where a hold was possible,
    # and those of them where two requests (to a server, on two connections) were both waiting
    # to be sent.
    taken: list[Decision] = field(default_factory=list)
    holdable: set[int] = field(default_factory=set)
    racing: set[int] = field(default_factory=set)
    _at: dict[int, int] = field(init=False, default_factory=dict)
    _held: tuple[str, str] | None = field(init=False, default=None)  # (actor, detail)

    def __post_init__(self) -> None:
        self._at = dict(self.schedule)

    def choose(self, step: int, enabled: Sequence[Candidate]) -> Candidate:
        # A hold here is new only while no hold is on, and where the first-come event was not
        # just passed by a swap (holding it here would be holding it one step earlier).
        fresh = self._held is None and _holdable(enabled) and not self._just_passed(enabled[0])
        if step in self.holds:
            if fresh:
                self._held = (enabled[0].actor, enabled[0].detail)
            else:
                self.diverged.append(step)
        elif fresh:
            self.holdable.add(step)
            if enabled[0].detail == "request" and any(c.detail == "request" for c in enabled[1:]):
                self.racing.add(step)
        index = self._at[step] if step in self._at else self._first_not_held(enabled)
        if index >= len(enabled) and self.lenient:
            self.diverged.append(step)
            index = 0
        if index >= len(enabled):
            raise Diverged(
                f"schedule {format_schedule(self.schedule)} diverged at decision {step}: it"
                f" takes candidate {index}, but only {len(enabled)} were offered"
                f" ({', '.join(c.actor for c in enabled)})"
            )
        # The loop offers its own next step as "step" between two callbacks of a turn.
        mid_turn = any(c.actor == LOOP and c.detail == "step" for c in enabled)
        self.taken.append(chose(step, enabled, index, mid_turn=mid_turn))
        chosen = enabled[index]
        if (chosen.actor, chosen.detail) == self._held:
            self._held = None
        return chosen

    def _just_passed(self, first: Candidate) -> bool:
        """Whether ``first`` came first at the decision before too, and a swap passed it."""
        if not self.taken:
            return False
        before = self.taken[-1]
        return bool(before.index) and before.enabled[0] == first.actor

    def _first_not_held(self, enabled: Sequence[Candidate]) -> int:
        """First come, first served, past the held event while anything but the clock could
        go instead."""
        if self._held is None:
            return 0
        held = [i for i, c in enumerate(enabled) if (c.actor, c.detail) == self._held]
        if not held:
            return 0
        others = [i for i in range(len(enabled)) if i != held[0]]
        if any(not _is_timer(enabled[i].actor) for i in others):
            return next(i for i in others if not _is_timer(enabled[i].actor))
        return held[0]


_LANDINGS = frozenset({"answer"})
"""Decisions that read a server's answer (a watched socket's): a timer taken right after one
fires in the same turn as that answer's wake-up, the shape of a lost wake-up after a round
trip. (After a worker thread's hand-back the plain order already finds it; giving every
hand-back this priority crowded out what the order finds there.)"""


class DeviationSearch:
    """Hands out the next run's schedule, cheapest first; None when none is left.

    A schedule's cost is its number of deviations, where one between two callbacks of a turn
    counts twice: a thread's event landing at a turn start is the common case of a loaded
    machine, one landing inside a turn the rarer refinement. A hold (an event held back, see
    :class:`Deviations`) costs what a swap at its step costs. Among schedules of one cost, these
    go first: the ones whose last deviation fires a timer right after a server's answer was
    read (a timer landing in the same turn as that answer: the shape of a lost wake-up, see
    :data:`_LANDINGS`), and the ones whose last deviation holds back a request while another
    connection's request waits too (that connection's whole statement gets ahead: the shape of
    two writes racing to a server); then those whose last deviation takes an event after fewer
    refusals (an event that has waited one turn before it lands, before one that waited five: a
    loaded machine delays a little more often than a lot); other holds last, since a swap finds
    what most of them would; ties are broken by the seed.

    Invariant: every plan handed out is new, none of cost c + 1 is handed out while one of cost c
    is still waiting, and a plan without holds whose decisions an earlier run took (a hold
    can take what a swap would) is not handed out. A plan with holds may still repeat an
    earlier run's decisions; its run then adds no children.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(f"racetape.deviations:{seed}")
        # Holds draw their tie-breaks apart (see ran).
        self._hold_rng = random.Random(f"racetape.deviations.holds:{seed}")
        # cost -> heap of ((class: 0 first, 2 last; refusals of the last deviation's event),
        # tie-break, plan)
        self._levels: dict[int, list[tuple[tuple[int, int], float, _Plan]]] = {
            0: [((0, 0), 0.0, ((), ()))]
        }
        self._cost: dict[_Plan, int] = {((), ()): 0}
        self._taken: set[Schedule] = set()  # what each run took (a hold's run is one of these)
        self._repeats = 0  # runs that took what an earlier run took
        self.bound = 0  # the highest cost handed out so far
        self.runs = 0

    name = "search"

    def next_strategy(self) -> Deviations | None:
        for level in sorted(self._levels):
            waiting = self._levels[level]
            while waiting:
                schedule, holds = heapq.heappop(waiting)[2]
                if not holds and schedule in self._taken:
                    continue  # a run that held an event took these very decisions already
                self.bound = max(self.bound, level)
                self.runs += 1
                return Deviations(schedule, name="search", lenient=True, holds=holds)
        return None

    def ran(self, strategy: Strategy) -> None:
        """After a run: one more deviation at any of its later decisions is a child."""
        assert isinstance(strategy, Deviations), "the deviation search serves its own runs"
        schedule, holds, decisions = strategy.schedule, strategy.holds, strategy.taken
        took = schedule_of(decisions)
        if took in self._taken:
            self._repeats += 1
            return  # a run like one before (a hold that took what a swap took): same children
        self._taken.add(took)
        plan = (schedule, holds)
        last = max([step for step, _ in schedule] + list(holds), default=-1)
        cost = self._cost.get(plan, len(schedule) + len(holds))
        refused: dict[str, int] = {}  # how often each actor was offered and not taken
        swaps: list[tuple[_Plan, int, tuple[int, int]]] = []
        held: list[tuple[_Plan, int, tuple[int, int]]] = []
        landed = False  # the decision before read a server's answer
        for d in decisions:
            if d.step > last:
                extra = 2 if d.mid_turn else 1
                for index in range(1, len(d.enabled)):
                    if index == d.index:
                        continue  # what this run took there already (a hold took it)
                    child = ((*schedule, (d.step, index)), holds)
                    waited = refused.get(d.enabled[index], 0)
                    wakes = landed and _is_timer(d.enabled[index])
                    swaps.append((child, cost + extra, (0 if wakes else 1, waited)))
                if d.step in strategy.holdable:
                    child = (schedule, (*holds, d.step))
                    first = d.step in strategy.racing
                    waited = refused.get(d.enabled[0], 0)
                    held.append((child, cost + extra, (0 if first else 2, waited)))
            landed = d.detail in _LANDINGS
            for index, actor in enumerate(d.enabled):
                if index != d.index:
                    refused[actor] = refused.get(actor, 0) + 1
        # Plans that hold draw their tie-breaks and are sampled apart, so that what a search
        # without holds would hand out, it still hands out in the same order.
        rng = self._hold_rng if holds else self._rng
        for children, draw in ((swaps, rng), (held, self._hold_rng)):
            if len(children) > MAX_CHILDREN:
                children = sorted(children, key=lambda c: c[2])[:MAX_CHILDREN]
            for child, child_cost, order in children:
                if child not in self._cost:
                    self._cost[child] = child_cost
                    level = self._levels.setdefault(child_cost, [])
                    heapq.heappush(level, (order, draw.random(), child))

    def covered(self) -> str:
        if self.exhausted:
            distinct = self.runs - self._repeats  # a run that held may repeat another's
            runs = f" in {self.runs} runs" if self._repeats else ""
            return f"every schedule ({distinct}{runs}): complete"
        return (
            f"{self.runs} schedules, fewest deviations first (a hold counts one): all below"
            f" cost {self.bound}"
        )

    @property
    def exhausted(self) -> bool:
        return not any(self._levels.values())
