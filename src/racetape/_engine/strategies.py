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

:data:`STRATEGIES` is the one list of them: name, help, and how a run's strategy is made; the
CLI, the runner, the pytest fixture and the library's ``check`` calls all read it. A
:class:`Search` hands out the strategy of each next run of a campaign, or says it is done:
seeded strategies never are; the exhaustive search is once the tree is walked.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from racetape._engine.schedule import Candidate, Strategy, StrategyRefused


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


def run_seed(seed: int, index: int) -> int:
    """The seed of run ``index`` of a campaign seeded ``seed``: independent of every other run's
    and of how the runs are split over shards and workers."""
    digest = hashlib.sha256(f"racetape:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class StrategyEntry:
    """One strategy's row in :data:`STRATEGIES`."""

    help: str
    per_run: Callable[[int, int], Strategy] | None
    """(the run's seed, pct depth) -> that run's strategy; None for the exhaustive search
    (:class:`ExhaustiveSearch`) and for jitter, which is a mode, not a strategy."""
    in_cli: bool = True  # offered by ``racetape run --strategy``


STRATEGIES: dict[str, StrategyEntry] = {
    "random": StrategyEntry(
        "controlled; uniform among the actors that may go, seeded",
        lambda seed, depth: RandomStrategy(seed),
    ),
    "pct": StrategyEntry(
        "controlled; probabilistic concurrency testing (priorities, depth change points)",
        lambda seed, depth: PctStrategy(seed, depth=depth),
    ),
    "exhaustive": StrategyEntry(
        "controlled; every schedule depth first, --runs bounds the count", None
    ),
    "search": StrategyEntry(
        "controlled; fewest deviations from first come, first served first (see"
        " racetape._engine.deviations): a race between two events in the first runs, and a"
        " search that says when it has tried everything",
        None,
        in_cli=False,
    ),
    "jitter": StrategyEntry(
        "uncontrolled; seeded delays at the points, real OS scheduling (statistical)", None
    ),
    "fifo": StrategyEntry(
        "controlled; first come, first served: no deviation, the same schedule every run",
        lambda seed, depth: FifoStrategy(),
        in_cli=False,
    ),
}

CONTROLLED = tuple(name for name in STRATEGIES if name != "jitter")
LOOP_STRATEGIES = ("search", "random", "pct", "exhaustive")
"""What the controlled loop (``pytest --race-strategy``, ``racetape.check`` on a coroutine
factory) offers; ``search`` first, its default."""
"""The strategies of controlled mode (``jitter`` is the uncontrolled mode)."""


def per_run_strategy(name: str, seed: int, *, pct_depth: int = 3) -> Strategy:
    """The strategy of one run seeded ``seed``; ValueError naming the ones that exist."""
    entry = STRATEGIES.get(name)
    if entry is not None and entry.per_run is not None:
        return entry.per_run(seed, pct_depth)
    if entry is not None:
        raise ValueError(f"strategy {name!r} has no per-run strategy (a search or a mode)")
    known = ", ".join(n for n, e in STRATEGIES.items() if e.per_run is not None)
    raise ValueError(f"unknown strategy {name!r}; strategies: {known}")


class Search(Protocol):
    """Hands out the strategy of a campaign's next run, or None once it has none left."""

    name: str

    def next_strategy(self) -> Strategy | None: ...

    def ran(self, strategy: Strategy) -> None:
        """The run ``strategy`` served is over (the exhaustive search learns its tree here)."""

    @property
    def exhausted(self) -> bool:
        """Every schedule the search can reach has been handed out."""
        ...

    def covered(self) -> str:
        """What the runs handed out so far cover, in one clause (for a verdict)."""
        ...


class SeededSearch:
    """Run ``i`` gets the entry's strategy seeded :func:`run_seed` (seed, i); never done."""

    def __init__(self, name: str, seed: int, *, pct_depth: int = 3) -> None:
        per_run_strategy(name, seed, pct_depth=pct_depth)  # an unknown name fails here
        self.name, self._seed, self._depth, self._index = name, seed, pct_depth, 0

    def next_strategy(self) -> Strategy:
        strategy = per_run_strategy(
            self.name, run_seed(self._seed, self._index), pct_depth=self._depth
        )
        self._index += 1
        return strategy

    def ran(self, strategy: Strategy) -> None:
        pass

    exhausted = False

    def covered(self) -> str:
        return f"{self._index} {self.name} schedules (a sample: no bound)"


class ExhaustiveSearch:
    """Depth first over every schedule: each run's :class:`PrefixStrategy` follows the next
    prefix of the tree; done when no choice is left at any level."""

    name = "exhaustive"

    def __init__(self) -> None:
        self._prefix: list[int] | None = []
        self._runs = 0

    def next_strategy(self) -> PrefixStrategy | None:
        if self._prefix is None:
            return None
        self._runs += 1
        return PrefixStrategy(self._prefix)

    def ran(self, strategy: Strategy) -> None:
        assert isinstance(strategy, PrefixStrategy), "the exhaustive search serves its own runs"
        self._prefix = next_prefix(strategy.taken)

    @property
    def exhausted(self) -> bool:
        return self._prefix is None

    def covered(self) -> str:
        if self.exhausted:
            return f"every schedule ({self._runs}): complete"
        return f"the first {self._runs} schedules, depth first (not complete)"


def search_named(name: str, seed: int, *, pct_depth: int = 3) -> Search:
    """The search for ``racetape``'s strategy ``name`` (a controlled one)."""
    if name == "exhaustive":
        return ExhaustiveSearch()
    if name == "search":
        from racetape._engine.deviations import DeviationSearch

        return DeviationSearch(seed)
    return SeededSearch(name, seed, pct_depth=pct_depth)
