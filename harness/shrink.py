"""Shrinking a failing controlled run: the fewest deviations from first come, first served that
still strand the same way.

The property Hypothesis searches for is "this run strands with the same kinds, on the same
tasks, as the recorded one". The recorded run is translated into the choices a
:class:`~racetape._engine.drawn.DrawnStrategy` would draw to make it again, and handed to
Hypothesis as the first example of its database; Hypothesis then shrinks it (phases reuse and
shrink only) and replays the smallest failing example last, which is the run kept here. Any
controlled trace can be shrunk, whatever strategy recorded it; a jitter trace records delays,
not decisions, and cannot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.database import ExampleDatabase, InMemoryExampleDatabase

from harness import signals
from harness.adapters import Database
from harness.run import RunResult, execute
from harness.traces import Trace, describe_kinds, kinds_of, trace_document
from racetape._engine.drawn import (
    DrawnStrategy,
    PropertyDatabase,
    deviations,
    drawn_choices,
    seeded,
)
from racetape._engine.strategies import ReplayStrategy
from racetape._target import Controlled
from reftask.stores.base import SqlTaskStore

SHRUNK_STRATEGY = "hypothesis"
"""The strategy a shrunk trace records: its decisions were drawn by Hypothesis."""


class ShrinkError(ValueError):
    """A trace that cannot be shrunk; the message is one line naming the file, field and fix."""


class _SameStrand(Exception):
    """Raised by the property when a run strands exactly as the recorded one did."""


@dataclass
class Shrunk:
    trace: Trace
    adapter: str
    seed: int
    before: RunResult  # the recorded decisions, run again
    after: RunResult  # the smallest run Hypothesis found with the same strands
    runs: int  # runs Hypothesis made, the final replay included

    def document(self) -> dict[str, Any]:
        """The shrunk run as an ordinary trace (``racetape replay`` runs it)."""
        doc = trace_document(
            scenario=self.trace.scenario,
            adapter=self.adapter,
            faults=self.trace.faults,
            strategy=SHRUNK_STRATEGY,
            seed=self.seed,
            run=self.trace.run,
            run_seed=self.trace.run_seed,
            result=self.after,
        )
        doc["shrunk_from"] = {
            "trace": self.trace.source,
            "strategy": self.trace.strategy,
            "decisions": len(self.before.schedule.decisions),
            "deviations": deviations(self.before.schedule.decisions),
            "runs": self.runs,
        }
        return doc


def check_shrinkable(trace: Trace) -> list[tuple[int, str]]:
    """The strands to keep; raises :class:`ShrinkError` for a trace that cannot be shrunk."""
    if not trace.controlled:
        raise ShrinkError(
            f"{trace.source}: strategy: a jitter trace records delays, not decisions, and cannot"
            " be shrunk; shrink a trace from random, pct, exhaustive or hypothesis"
        )
    status = trace.outcome.get("status", "settled")
    wanted = trace.recorded_kinds()
    if status != "settled" or not wanted:
        found = f"the run {status}" if status != "settled" else "no strand"
        raise ShrinkError(
            f"{trace.source}: outcome: {found}; shrink needs a trace whose run stranded"
        )
    return wanted


def shrink_trace(
    trace: Trace,
    *,
    adapter: str | None = None,
    pg_dsn: str | None = None,
    seed: int = 0,
    database: ExampleDatabase | None = None,
    on_run: Callable[[int, RunResult], None] | None = None,
) -> Shrunk:
    """Shrink ``trace`` on ``adapter`` (default: the one it was recorded on), deterministically
    in ``seed``. ``database`` keeps Hypothesis's examples (default: in memory, this call);
    ``on_run`` hears each run (its number from 1, and its result) as it ends: progress."""
    wanted = check_shrinkable(trace)
    adapter = adapter or trace.adapter
    db = Database.fresh(adapter, pg_dsn=pg_dsn)
    with asyncio.Runner() as loop:
        try:
            store = loop.run(db.store(trace.faults))
            return shrink_on(
                loop, store, trace, adapter, wanted, seed=seed, database=database, on_run=on_run
            )
        finally:
            loop.run(db.cleanup())


def shrink_on(
    loop: asyncio.Runner,
    store: SqlTaskStore,
    trace: Trace,
    adapter: str,
    wanted: list[tuple[int, str]],
    *,
    seed: int = 0,
    database: ExampleDatabase | None = None,
    on_run: Callable[[int, RunResult], None] | None = None,
) -> Shrunk:
    """Shrink ``trace`` with an open store whose connections live on ``loop``.

    Hypothesis drives a synchronous test function; each example is one run, driven to its end
    on ``loop`` (which runs beside Hypothesis, not under it), on the same store throughout.
    """
    scenario, faults = trace.scenario, trace.faults
    runs = 0

    def run(strategy: DrawnStrategy | ReplayStrategy) -> RunResult:
        nonlocal runs
        result = signals.run_interruptible(
            loop, execute(store, scenario, faults, Controlled(strategy))
        )
        runs += 1
        if on_run is not None:
            on_run(runs, result)
        return result

    before = run(ReplayStrategy(trace.decisions, details=trace.details))
    if before.unsettled or kinds_of(before) != wanted:
        got = before.schedule.problem if before.unsettled else describe_kinds(kinds_of(before))
        raise ShrinkError(
            f"{trace.source}: decisions: run again on {adapter} they give {got}, not the"
            f" recorded {describe_kinds(wanted)}; shrink it on the adapter it was recorded on"
        )
    kept: list[RunResult] = []

    @given(st.data())
    def strands_the_same_way(data: st.DataObject) -> None:
        result = run(DrawnStrategy(data))
        kept.append(result)
        if not result.unsettled and kinds_of(result) == wanted:
            raise _SameStrand(describe_kinds(wanted))

    namespace = json.dumps(
        ["shrink", scenario.to_toml_dict(), sorted(faults), wanted], sort_keys=True
    )
    examples = PropertyDatabase(
        database if database is not None else InMemoryExampleDatabase(),
        namespace,
        seeds=[drawn_choices(before.schedule.decisions)],
    )
    test = seeded(
        strands_the_same_way, profile="racetape-shrink", seed_value=seed, database=examples
    )
    try:
        test()
    except _SameStrand:
        # Hypothesis ends by running the smallest failing example again: the last run kept.
        return Shrunk(trace, adapter, seed, before, kept[-1], len(kept))
    raise ShrinkError(
        f"{trace.source}: decisions: Hypothesis could not make the recorded run again on"
        f" {adapter}; nothing to shrink"
    )
