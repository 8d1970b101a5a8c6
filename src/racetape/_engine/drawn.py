"""Scheduling decisions drawn from Hypothesis, so that Hypothesis can search and shrink them.

:class:`DrawnStrategy` first draws how many decisions it will take from Hypothesis (the
*budget*); each of those that has a choice (two or more candidates) is then drawn as an index
into the candidates, first come first served: index 0 is what ``fifo`` would pick. Decisions
past the budget go first come, first served; decisions with one candidate are not choices and
draw nothing.

Why a budget: Hypothesis shrinks a choice sequence towards fewer and smaller choices, and
rejects a shrink that would need more choices than it has. Without a budget, taking away a
deviation near the end often lengthens the run (one more decision with a choice) and is
rejected; with it, lowering the budget hands the tail to first come, first served in one step.
So a shrunk run keeps a deviation only where the failure needs it.

The rest of this module is what :mod:`harness.shrink` and :mod:`harness.search` share: the
settings profiles, the example database (namespaced per property, optionally seeded with a
recorded run), the translation of a recorded run into Hypothesis's choices, and the measure of
a schedule, :func:`deviations`.

Determinism: a search is seeded (Hypothesis's ``seed``), and the database it reads is the only
other input. Hypothesis's ``seed`` switches the database off, because saved examples make a
seeded run depend on history; :func:`seeded` puts ours back on purpose (the trace being shrunk,
and failures the user asked to keep), so a search depends on its seed and on what that database
holds. The one wall clock left is Hypothesis's own: it gives up shrinking after five minutes,
far beyond the seconds a racetape shrink takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import Phase, Verbosity, seed, settings
from hypothesis import strategies as st
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    InMemoryExampleDatabase,
    choices_to_bytes,
)

from racetape._engine.schedule import Candidate, Decision

DEFAULT_DB = Path(".hypothesis/racetape")
"""Where ``racetape explore`` keeps the failures it found (Hypothesis's directory format)."""

settings.register_profile(
    "racetape",
    # A run costs about 10 ms on SQLite and more on Postgres, and its time says nothing about
    # correctness: speed is `racetape bench`'s business, so no per-example deadline.
    deadline=None,
    # A search is driven by racetape, which prints its own report; Hypothesis's
    # "Falsifying example" text would only repeat the draws without their meaning.
    verbosity=Verbosity.quiet,
    # One failure per search: racetape asks for the next one itself (see harness.search).
    report_multiple_bugs=False,
    print_blob=False,
    # Every health check stays on. The draws are single integers between the steps of a run
    # (no filters, no assume, no large base example), so none has cause to fire; a run's own
    # time is not drawing time, which is what too_slow measures.
)
settings.register_profile(
    "racetape-shrink",
    settings.get_profile("racetape"),
    # Shrinking starts from the recorded failure (served by the database, see
    # PropertyDatabase): there is nothing to generate.
    phases=(Phase.reuse, Phase.shrink),
)
settings.register_profile(
    "racetape-explore",
    settings.get_profile("racetape"),
    # Saved failures first, then generation, then shrinking the first failure found (see
    # harness.search for why one failure per search). No target phase: nothing to maximise.
    phases=(Phase.reuse, Phase.generate, Phase.shrink),
)


def deviations(decisions: Iterable[Decision]) -> int:
    """Decisions where the chosen actor was not the first candidate (first come, first served)."""
    return sum(1 for d in decisions if d.enabled and d.actor != d.enabled[0])


MAX_DRAWN = 10_000
"""The most decisions a run draws (random generation rarely draws fewer than a run has)."""


class DrawnStrategy:
    """Draws its budget, then each decision with a choice within it, from ``data``
    (Hypothesis's ``st.data()``). ``taken`` records (index chosen, candidates) per decision."""

    name = "hypothesis"

    def __init__(self, data: st.DataObject) -> None:
        self._data = data
        self._budget = data.draw(st.integers(0, MAX_DRAWN), label="decisions drawn")
        self.taken: list[tuple[int, int]] = []

    def choose(self, step: int, enabled: Sequence[Candidate]) -> Candidate:
        index = 0
        if len(enabled) > 1 and self._budget > 0:
            self._budget -= 1
            index = self._data.draw(st.integers(0, len(enabled) - 1), label=f"decision {step}")
        self.taken.append((index, len(enabled)))
        return enabled[index]


def drawn_choices(decisions: Sequence[Decision]) -> list[int]:
    """The choices a :class:`DrawnStrategy` draws to make these decisions again.

    The budget, then the index of the chosen actor among the candidates for each decision
    with two or more, up to the last deviation (the budget ends there). Any controlled run
    (random, pct, exhaustive, replay) can be translated: candidates always come in the same
    order.
    """
    indices = [d.enabled.index(d.actor) for d in decisions if len(d.enabled) > 1]
    while indices and indices[-1] == 0:
        indices.pop()
    return [len(indices), *indices]


SECONDARY = b".secondary"
"""How Hypothesis names a test's secondary corpus: its database key, then this."""


class PropertyDatabase(ExampleDatabase):
    """One property's examples inside a shared database, optionally seeded.

    Every key Hypothesis uses is prefixed with ``namespace``, so one directory (or one CI
    artifact) holds the examples of many properties without one property's replay deleting
    another's entries (Hypothesis deletes entries that no longer fail).

    ``seeds`` (choice sequences) are served as Hypothesis's *secondary* corpus: the failing
    examples it has not shrunk yet. Its reuse phase runs them before generating anything and
    shrinks the ones that fail. (An entry of the primary corpus is taken for an example that
    was shrunk already, and would not be shrunk again.)
    """

    def __init__(
        self,
        backing: ExampleDatabase,
        namespace: str,
        seeds: Iterable[Sequence[int]] = (),
    ) -> None:
        super().__init__()
        self.backing = backing
        self.prefix = hashlib.sha256(namespace.encode()).hexdigest()[:16].encode() + b":"
        self.seeds = [choices_to_bytes(list(s)) for s in seeds]

    def save(self, key: bytes, value: bytes) -> None:
        self.backing.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        if key.endswith(SECONDARY):
            yield from self.seeds
        yield from self.backing.fetch(self.prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.backing.delete(self.prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.backing.move(self.prefix + src, self.prefix + dest, value)


def open_database(path: Path | None) -> ExampleDatabase:
    """A directory database at ``path``, or one in memory (kept for this process) if None."""
    if path is None:
        return InMemoryExampleDatabase()
    return DirectoryBasedExampleDatabase(path)


Test = TypeVar("Test", bound=Callable[..., Any])


def seeded(test: Test, *, profile: str, seed_value: int, **overrides: Any) -> Test:
    """Apply ``seed`` and then the profile's settings (with ``overrides``) to a ``@given`` test.

    The order matters: ``seed`` sets ``database=None`` in the settings it finds, and settings
    applied after it replace those (see the module docstring for why the database stays on).
    """
    parent = settings.get_profile(profile)
    return settings(parent, **overrides)(seed(seed_value)(test))
