"""Shrinking a failing controlled schedule: fewer deviations, then smaller ones, failing the same.

A controlled run is named by its schedule, its deviations from first come, first served
(``((step, index), ...)``, see :mod:`racetape._engine.deviations`). A smaller schedule is an
easier story to read: fewer deviations, then lower candidate indices (the event that waited one
turn rather than three), then earlier steps (:func:`size` orders them).

:class:`ScheduleShrinker` proposes the schedules to run and is told what each run did (ask and
tell, so the caller runs each one as it must: the pytest plugin runs the user's test with its
fixtures). It first runs the recorded schedule itself (does the failure reproduce?), then
looks for fewer deviations by delta debugging (chunks of them alone, then all but a chunk, in
finer chunks until single deviations), then lowers each deviation's index towards 1.
A proposal is run leniently (where a step no longer offers the candidate, first come, first
served), because dropping one deviation moves what later steps offer; what the run *took* is
what is kept, so the result replays strictly. It is kept only when it fails the same way and
is smaller. Deterministic: the same answers give the same proposals, in the same order.
"""

from __future__ import annotations

from collections.abc import Generator

from racetape._engine.deviations import Schedule

DEFAULT_MAX_RUNS = 64
"""Runs a shrink makes at most (the recorded schedule's first run included)."""


def size(schedule: Schedule) -> tuple[int, int, tuple[int, ...]]:
    """How big a schedule is: its deviations, their indices summed, then their steps."""
    return (len(schedule), sum(index for _, index in schedule), tuple(s for s, _ in schedule))


Proposals = Generator[Schedule, Schedule | None, None]


class ScheduleShrinker:
    """Proposes schedules to run (:meth:`next_schedule`), learns from each run (:meth:`tell`).

    Invariant: :attr:`best` fails the way the recorded run failed (once :attr:`reproduced`),
    and no schedule is proposed twice.
    """

    def __init__(self, schedule: Schedule, *, max_runs: int = DEFAULT_MAX_RUNS) -> None:
        self.original = schedule
        self.best = schedule
        self.max_runs = max_runs
        self.runs = 0
        self.reproduced: bool | None = None  # None until the recorded schedule has run
        self._tried: set[Schedule] = set()
        self._proposals = self._search()
        self._next: Schedule | None = next(self._proposals)

    def next_schedule(self) -> Schedule | None:
        """The schedule to run next (leniently), or None when the shrink is done."""
        return self._next

    def tell(self, took: Schedule | None) -> None:
        """After running :meth:`next_schedule`: the schedule the run took if it failed the same
        way as the recorded run, else None (it passed, or failed otherwise)."""
        self.runs += 1
        try:
            self._next = self._proposals.send(took)
        except StopIteration:
            self._next = None
        if self.runs >= self.max_runs:
            self._next = None

    def _try(self, schedule: Schedule) -> Generator[Schedule, Schedule | None, bool]:
        """Propose ``schedule`` unless tried; keep what it took if smaller and the same."""
        if schedule in self._tried:
            return False
        self._tried.add(schedule)
        took = yield schedule
        if took is not None and size(took) < size(self.best):
            self.best = took
            return True
        return False

    def _ddmin(self) -> Generator[Schedule, Schedule | None, None]:
        """Delta debugging (Zeller and Hildebrandt, TSE 2002) over the deviations: each of n
        chunks alone, then all but each chunk, n doubling up to one deviation a chunk; after a
        smaller failing run, again from what it took."""
        n = 2
        while self.best:
            current = self.best
            chunks = _split(current, n)
            alone = [chunk for chunk in chunks if chunk != current]
            others = [
                tuple(d for j, other in enumerate(chunks) if j != i for d in other)
                for i in range(len(chunks))
            ]
            for candidate in [*alone, *others]:
                if (yield from self._try(candidate)):
                    break
            if self.best != current:
                n = 2
            elif n >= len(current):
                return
            else:
                n = min(len(current), 2 * n)

    def _search(self) -> Proposals:
        self._tried.add(self.original)
        took = yield self.original
        self.reproduced = took is not None
        if took is None:
            return
        if size(took) < size(self.best):
            self.best = took
        yield from self._ddmin()
        i = 0
        while i < len(self.best):
            step, index = self.best[i]
            for lower in range(1, index):
                candidate = (*self.best[:i], (step, lower), *self.best[i + 1 :])
                if (yield from self._try(candidate)):
                    break
            i += 1


def _split(schedule: Schedule, n: int) -> list[Schedule]:
    """``schedule`` in ``n`` (or fewer, if shorter) contiguous chunks of near-equal length."""
    n = max(1, min(n, len(schedule)))
    size, extra = divmod(len(schedule), n)
    chunks, at = [], 0
    for i in range(n):
        width = size + (i < extra)
        chunks.append(schedule[at : at + width])
        at += width
    return chunks
