"""The reference harness behind racetape's target seam: a scenario on a store is a
:class:`racetape._target.Target`, played by the engine's one :func:`racetape._target.play`."""

from __future__ import annotations

from harness.oracle import StrandKind
from harness.run import RunResult, ScenarioRun, ScenarioTarget
from harness.scenario import resolve_scenario
from harness.traces import trace_document, trace_from_dict
from racetape._engine.strategies import FifoStrategy, RandomStrategy, run_seed
from racetape._target import Controlled, Target, play
from reftask.faults import Fault
from tests.conftest import StoreFactory


async def test_a_scenario_target_is_played_and_judged_by_the_engine(
    store_factory: StoreFactory,
) -> None:
    """late-progress with the terminal guard off strands within a few seeded random runs (the
    bench's median is 1); fault-free, first come first served, it never does. The failures the
    engine hands back are the oracle's violations on the run it built."""
    scenario = resolve_scenario("late-progress")
    faulty = frozenset({Fault.NO_TERMINAL_GUARD})
    target: Target[ScenarioRun] = ScenarioTarget(
        await store_factory(tuple(faulty)), scenario, faulty
    )
    stranded = None
    for index in range(20):
        played = await play(target, Controlled(RandomStrategy(run_seed(0, index))))
        assert played.schedule.outcome == "settled"
        if played.failures:
            stranded = played
            break
    assert stranded is not None
    assert stranded.failures == stranded.run.violations
    assert {v.task_id for v in stranded.run.violations} <= set(stranded.run.task_ids)
    assert StrandKind.FINAL_NOT_LAST in {v.kind for v in stranded.run.violations}

    clean = ScenarioTarget(await store_factory(), scenario, frozenset())
    played_clean = await play(clean, Controlled(FifoStrategy()))
    assert played_clean.schedule.outcome == "settled"
    assert played_clean.failures == []
    assert played_clean.schedule.decisions  # it was scheduled, not just run


async def test_a_trace_records_the_target_as_it_describes_itself(
    store_factory: StoreFactory,
) -> None:
    """describe() is what a trace holds of the target, and enough to build it again."""
    scenario = resolve_scenario("crash-restart")
    faults = frozenset({Fault.RESTART_SKIPS_UNFINALIZED})
    target = ScenarioTarget(await store_factory(tuple(faults)), scenario, faults)
    played = await play(target, Controlled(FifoStrategy()))
    result = RunResult(
        played.run.violations, played.schedule, played.run.task_ids, [], played.elapsed
    )
    doc = trace_document(
        scenario=scenario,
        adapter="sqlite",
        faults=faults,
        strategy="fifo",
        seed=0,
        run=0,
        run_seed=0,
        result=result,
    )
    assert {k: doc[k] for k in target.describe()} == target.describe()
    rebuilt = trace_from_dict(doc, "<doc>")
    assert (rebuilt.scenario, rebuilt.faults) == (scenario, faults)
