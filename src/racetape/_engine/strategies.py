"""Strategies: how the scheduler picks among the actors that may go.

Each strategy serves one run, and is deterministic in its seed and the candidates it is shown.
Candidates come first come, first served (see :mod:`racetape._engine.scheduler`), so ``fifo`` is the
order with no deviations; the others deviate from it:

* ``random``: uniform among the candidates, seeded.
* ``pct``: probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte,
  ASPLOS 2010). Every actor gets a random priority when first seen; the highest-priority
  candidate goes; at ``depth - 1`` random steps the running actor's priority drops below all
  others. A bug of depth d is found with probability at least 1/(n k^(d-1)) per run.
* ``replay``: the names recorded by an earlier run, in order; refuses if one is not a candidate.
* ``exhaustive``: depth-first over every choice. :class:`PrefixStrategy` serves one run of it
  (a forced prefix, then the first candidate) and :func:`next_prefix` walks the tree.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from racetape._engine.schedule import Candidate, StrategyRefused

STRATEGIES = ("random", "pct", "exhaustive", "jitter")
"""The strategies ``racetape run --strategy`` accepts (``jitter`` is the uncontrolled mode)."""


class FifoStrategy:
    name = "fifo"

    def choose(self, step: int, enabled: Sequence[Candidate]) -> Candidate:
        return enabled[0]


class RandomStrategy:
    name = "random"

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def choose(self, step: int, enabled: Sequence[Candidate]) -> Candidate:
        return self._rng.choice(enabled)


class PctStrategy:
    name = "pct"

    def __init__(self, seed: int, *, depth: int = 3, steps: int = 48) -> None:
        if depth < 1 or steps < 1:
            raise ValueError("pct needs depth >= 1 and steps >= 1")
        self._rng = random.Random(seed)
        self._depth = depth
        self._priority: dict[str, float] = {}
        points = self._rng.sample(range(1, steps + 1), min(depth - 1, steps))
        # The i-th change point drops the running actor to priority i: below every initial one.
        self._change_at = {step: float(i) for i, step in enumerate(sorted(points), start=1)}

    def _rank(self, actor: str) -> float:
        if actor not in self._priority:
            self._priority[actor] = self._depth + self._rng.random()
        return self._priority[actor]

    def choose(self, step: int, enabled: Sequence[Candidate]) -> Candidate:
        best = max(enabled, key=lambda c: self._rank(c.actor))
        if step in self._change_at:
            self._priority[best.actor] = self._change_at[step]
            best = max(enabled, key=lambda c: self._rank(c.actor))
        return best


class ReplayStrategy:
    """Follows a recorded decision list; past its end it goes first come, first served.

    Where a recorded actor cannot go, or (given the recorded ``details``) is not at the point it
    was recorded at, it refuses (the run is ``diverged``), unless ``lenient``: then it notes
    where (``diverged``) and goes first come, first served from there, so code changed under
    the recording (a fix that took a lock) is still run and judged.
    """

    name = "replay"

    def __init__(
        self,
        decisions: Sequence[str],
        *,
        details: Sequence[str] | None = None,
        lenient: bool = False,
    ) -> None:
        self._decisions = list(decisions)
        self._details = None if details is None else list(details)
        self._lenient = lenient
        self.extended = False
        self.diverged: str | None = None

    def choose(self, step: int, enabled: Sequence[Candidate]) -> Candidate:
        if self.diverged is not None:
            return enabled[0]
        if step >= len(self._decisions):
            self.extended = True
            return enabled[0]
        wanted = self._decisions[step]
        found = next((c for c in enabled if c.actor == wanted), None)
        recorded = None if self._details is None else self._details[step]
        if found is not None and recorded in (None, found.detail):
            return found
        if found is not None:
            problem = (
                f"replay diverged at step {step}: recorded {wanted} at {recorded},"
                f" but it is at {found.detail}"
            )
        else:
            names = ", ".join(c.actor for c in enabled)
            problem = (
                f"replay diverged at step {step}: recorded {wanted}, but only {names} could go"
            )
        if not self._lenient:
            raise StrategyRefused(problem)
        self.diverged = problem
        return enabled[0]


@dataclass
class PrefixStrategy:
    """One run of the exhaustive search: forced choices (by index), then always the first."""

    prefix: Sequence[int]
    name: str = "exhaustive"
    taken: list[tuple[int, int]] = field(default_factory=list)  # (index chosen, candidates)

    def choose(self, step: int, enabled: Sequence[Candidate]) -> Candidate:
        index = self.prefix[step] if step < len(self.prefix) else 0
        if index >= len(enabled):
            raise StrategyRefused(
                f"exhaustive search is not deterministic: step {step} offered {len(enabled)}"
                f" choices where an earlier run offered more than {index}"
            )
        self.taken.append((index, len(enabled)))
        return enabled[index]


def next_prefix(taken: Sequence[tuple[int, int]]) -> list[int] | None:
    """The next schedule in depth-first order after the one ``taken`` describes, or None."""
    for depth in range(len(taken) - 1, -1, -1):
        index, width = taken[depth]
        if index + 1 < width:
            return [i for i, _ in taken[:depth]] + [index + 1]
    return None
