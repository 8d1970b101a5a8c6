"""Searches: what hands out each run's strategy, across the runs of one test, by name.

A *strategy* serves one run (``choose(step, enabled)``); a *search* lives across runs, as a
shuttle scheduler does: :meth:`Search.next` gives the next run's strategy, or None when the
search has nothing left to try, and :meth:`Search.record` shows it what the run did. Every
search is deterministic in its seed and what it was shown, so run ``i`` of a seed is the same
run on every machine.

:data:`SEARCHES` is the one list of them: a name maps to its help and its factory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from racetape._engine.deviations import DeviationSearch, Schedule
from racetape._engine.loop import Step, Strategy
from racetape._engine.perturb import derive_seed
from racetape._engine.strategies import PctStrategy, PrefixStrategy, RandomStrategy, next_prefix


class Search(Protocol):
    """Hands out one strategy a run; None once there is nothing left to try."""

    def next(self) -> Strategy | None: ...

    def record(self, schedule: Schedule, decisions: Sequence[Step]) -> None: ...

    @property
    def complete(self) -> bool:
        """Every schedule the search can reach has been handed out."""
        ...

    def verdict(self) -> str:
        """What a search that found nothing covered, in one clause."""
        ...


class RandomSearch:
    """Run ``i`` picks uniformly among the candidates, seeded by ``derive_seed(seed, i)``."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._runs = 0

    def run_seed(self, index: int) -> int:
        return derive_seed(self._seed, "random", index)

    def next(self) -> Strategy | None:
        strategy = RandomStrategy(self.run_seed(self._runs))
        self._runs += 1
        return strategy

    def record(self, schedule: Schedule, decisions: Sequence[Step]) -> None:
        pass

    complete = False

    def verdict(self) -> str:
        return f"{self._runs} random schedules (a sample: no bound)"


class PctSearch:
    """Probabilistic concurrency testing, with its step count learned from the runs so far."""

    def __init__(self, seed: int, depth: int = 3) -> None:
        self._seed = seed
        self._depth = depth
        self._steps = 8
        self._runs = 0

    def next(self) -> Strategy | None:
        seed = derive_seed(self._seed, "pct", self._runs)
        self._runs += 1
        return PctStrategy(seed, depth=self._depth, steps=self._steps)

    def record(self, schedule: Schedule, decisions: Sequence[Step]) -> None:
        self._steps = max(self._steps, len(decisions))

    complete = False

    def verdict(self) -> str:
        return f"{self._runs} pct schedules of depth {self._depth} (a sample: no bound)"


class DepthFirstSearch:
    """Every schedule, depth first from first come, first served; done when none is left."""

    def __init__(self, seed: int = 0) -> None:
        self._prefix: list[int] | None = []
        self._current: PrefixStrategy | None = None
        self._runs = 0

    def next(self) -> Strategy | None:
        if self._prefix is None:
            return None
        self._current = PrefixStrategy(self._prefix)
        self._runs += 1
        return self._current

    def record(self, schedule: Schedule, decisions: Sequence[Step]) -> None:
        taken = [(d.index, len(d.enabled)) for d in decisions]
        self._prefix = next_prefix(taken)

    @property
    def complete(self) -> bool:
        return self._prefix is None

    def verdict(self) -> str:
        if self._prefix is None:
            return f"every schedule ({self._runs}): the search is complete"
        return f"the first {self._runs} schedules in depth-first order (not complete)"


class FewestDeviationsSearch:
    """:class:`~racetape._engine.deviations.DeviationSearch` as a search of this registry."""

    def __init__(self, seed: int) -> None:
        self._search = DeviationSearch(seed)
        self._runs = 0

    def next(self) -> Strategy | None:
        strategy = self._search.next()
        if strategy is not None:
            self._runs += 1
        return strategy

    def record(self, schedule: Schedule, decisions: Sequence[Step]) -> None:
        self._search.record(schedule, decisions)

    @property
    def complete(self) -> bool:
        return self._search.exhausted

    def verdict(self) -> str:
        if self._search.exhausted:
            return f"every schedule ({self._runs}): complete"
        return (
            f"{self._runs} schedules, fewest deviations first: all below cost {self._search.bound}"
        )


@dataclass(frozen=True)
class SearchKind:
    name: str
    help: str
    factory: Callable[[int], Search]


SEARCHES: dict[str, SearchKind] = {
    kind.name: kind
    for kind in (
        SearchKind(
            "search",
            "fewest deviations from first come, first served first (the default): finds a race"
            " between two events in the first runs, and says when it has tried everything",
            FewestDeviationsSearch,
        ),
        SearchKind("random", "uniform among the candidates, seeded", RandomSearch),
        SearchKind("pct", "probabilistic concurrency testing, depth 3", PctSearch),
        SearchKind(
            "exhaustive", "every schedule, depth first, up to the runs given", DepthFirstSearch
        ),
    )
}
"""Every controlled search, by name: the CLI, the plugin and the library read this."""


def new_search(name: str, seed: int) -> Search:
    try:
        return SEARCHES[name].factory(seed)
    except KeyError:
        raise ValueError(f"unknown search {name!r}: choose one of {', '.join(SEARCHES)}") from None
