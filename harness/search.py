"""``racetape explore``: Hypothesis searches scenario shapes and schedules together.

Each example draws a shape (:func:`harness.shapes.scenario_shapes`) and then the run's
decisions (:class:`racetape._engine.drawn.DrawnStrategy`) from one ``st.data()``, runs it on one
open store, and fails if the run strands or hangs. Each distinct failure (its set of strand
kinds) is a bug of its own for Hypothesis, which shrinks shape and schedule together and replays
the smallest example of each last: those runs become the findings. The catalog files are never
read: what is found is what the search reached.

Failures are kept in Hypothesis's example database, namespaced by adapter and faults, and
tried first by the next search with the same adapter and faults.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.database import ExampleDatabase, InMemoryExampleDatabase

from harness import signals
from harness.adapters import Database
from harness.files import write_json_atomic
from harness.run import RunResult, execute
from harness.scenario import Scenario
from harness.shapes import named, scenario_file, scenario_shapes
from harness.traces import trace_document
from racetape._engine.drawn import DrawnStrategy, PropertyDatabase, deviations, seeded
from racetape._target import Controlled
from reftask.faults import Fault
from reftask.stores.base import SqlTaskStore

EXPLORE_STRATEGY = "hypothesis"
DEFAULT_EXAMPLES = 200


class Stranded(Exception):
    """A drawn run stranded (or hung) in a way this round has not excluded."""


def failure_of(result: RunResult) -> tuple[str, ...]:
    """The failure a run shows: its strand kinds, or how it did not settle (empty if sound)."""
    if result.unsettled:
        return (str(result.schedule.outcome),)
    return tuple(sorted({str(v.kind) for v in result.violations}))


@dataclass
class Finding:
    kinds: tuple[str, ...]
    scenario: Scenario
    result: RunResult
    scenario_path: Path | None = None
    trace_path: Path | None = None


@dataclass
class Exploration:
    adapter: str
    faults: frozenset[Fault]
    seed: int
    examples: int  # the most examples generated, over all rounds
    generated: int = 0  # examples generated (and saved failures replayed)
    runs: int = 0  # runs made: generated, shrinking and final replays
    findings: list[Finding] = field(default_factory=list)


def explore_shapes(
    adapter: str,
    faults: frozenset[Fault],
    *,
    examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    database: ExampleDatabase | None = None,
    pg_dsn: str | None = None,
    settle_timeout: float = 10.0,
    max_failures: int | None = None,
    on_run: Callable[[Exploration, RunResult], None] | None = None,
) -> Exploration:
    """Search up to ``examples`` generated (shape, schedule) pairs on a fresh database of
    ``adapter`` with ``faults``, for at most ``max_failures`` failures (default: no limit);
    deterministic in ``seed`` and what ``database`` holds. ``on_run`` hears each run as it
    ends (progress)."""
    db = Database.fresh(adapter, pg_dsn=pg_dsn)
    with asyncio.Runner() as loop:
        try:
            store = loop.run(db.store(faults))
            return explore_on(
                loop,
                store,
                adapter,
                faults,
                examples=examples,
                seed=seed,
                database=database,
                settle_timeout=settle_timeout,
                max_failures=max_failures,
                on_run=on_run,
            )
        finally:
            loop.run(db.cleanup())


def explore_on(
    loop: asyncio.Runner,
    store: SqlTaskStore,
    adapter: str,
    faults: frozenset[Fault],
    *,
    examples: int,
    seed: int,
    database: ExampleDatabase | None,
    settle_timeout: float,
    max_failures: int | None = None,
    on_run: Callable[[Exploration, RunResult], None] | None = None,
) -> Exploration:
    """:func:`explore_shapes` with an open store whose connections live on ``loop``.

    The search goes in rounds, each one Hypothesis search that stops at its first failure and
    shrinks it; the next round looks for a failure of another kind (strand kinds that differ
    from every one found so far), until a round finds nothing or ``examples`` runs are spent.
    Rounds, rather than Hypothesis's several-bugs mode, because that mode stops looking for
    more bugs after ten seconds of wall time, which would make the findings depend on the
    machine's speed.
    """
    exploration = Exploration(adapter, faults, seed, examples)
    backing = database if database is not None else InMemoryExampleDatabase()
    found: dict[tuple[str, ...], tuple[Scenario, RunResult]] = {}
    while exploration.generated < examples and len(found) != max_failures:
        failure = _round(
            loop, store, exploration, backing, set(found), examples - exploration.generated,
            settle_timeout, on_run,
        )  # fmt: skip
        if failure is None:
            break
        kinds, scenario, result = failure
        found[kinds] = (scenario, result)
    exploration.findings = [Finding(k, s, r) for k, (s, r) in found.items()]
    return exploration


def _round(
    loop: asyncio.Runner,
    store: SqlTaskStore,
    exploration: Exploration,
    backing: ExampleDatabase,
    excluded: set[tuple[str, ...]],
    examples: int,
    settle_timeout: float,
    on_run: Callable[[Exploration, RunResult], None] | None = None,
) -> tuple[tuple[str, ...], Scenario, RunResult] | None:
    faults = exploration.faults
    last: list[tuple[tuple[str, ...], Scenario, RunResult]] = []
    runs_before = exploration.runs

    @given(st.data())
    def strands_no_new_way(data: st.DataObject) -> None:
        scenario = data.draw(scenario_shapes(), label="scenario")
        mode = Controlled(DrawnStrategy(data), settle_timeout)
        result = signals.run_interruptible(loop, execute(store, scenario, faults, mode))
        exploration.runs += 1
        if on_run is not None:
            on_run(exploration, result)
        kinds = failure_of(result)
        if kinds and kinds not in excluded:
            if not last:  # generation stops at the first failure; shrinking follows
                exploration.generated += exploration.runs - runs_before
            last.append((kinds, scenario, result))
            raise Stranded(", ".join(kinds))

    # Each round keeps its failures apart: replayed in a round that excludes their kinds,
    # they would pass, and Hypothesis would delete them from the database.
    namespace = json.dumps(
        ["explore", exploration.adapter, sorted(faults), sorted(excluded)], sort_keys=True
    )
    test = seeded(
        strands_no_new_way,
        profile="racetape-explore",
        seed_value=exploration.seed,
        max_examples=examples,
        database=PropertyDatabase(backing, namespace),
    )
    try:
        test()
    except Stranded:
        # Hypothesis ends by running the smallest failing example again: the last one kept.
        return last[-1]
    exploration.generated += exploration.runs - runs_before
    return None


def write_findings(exploration: Exploration, folder: Path) -> None:
    """Write each finding as ``folder/<name>.toml`` (a catalog scenario) and
    ``folder/<name>.trace.json`` (its shrunk run, which ``racetape replay`` runs)."""
    for finding in exploration.findings:
        decisions = finding.result.schedule.decisions
        story = (
            f"Hypothesis shrank shape and schedule together: {len(decisions)} decisions,"
            f" {deviations(decisions)} of them away from first come, first served."
        )
        scenario = named(
            finding.scenario, faults=exploration.faults, kinds=finding.kinds, story=story
        )
        finding.scenario = scenario
        finding.scenario_path = scenario_file(scenario, folder)
        finding.trace_path = folder / f"{scenario.name}.trace.json"
        doc = trace_document(
            scenario=replace(scenario, source=str(finding.scenario_path)),
            adapter=exploration.adapter,
            faults=exploration.faults,
            strategy=EXPLORE_STRATEGY,
            seed=exploration.seed,
            run=0,
            run_seed=exploration.seed,
            result=finding.result,
        )
        write_json_atomic(finding.trace_path, doc)
